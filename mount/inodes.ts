/**
 * Inode numbers, 32 bits (all fuse-native could carry when this was written; the
 * binding now passes more). The mount sets `use_ino` so the kernel reports ours (libfuse's own numbers would give two
 * hardlinks of one file different inodes, which rsync -H and cp -a notice).
 *
 * A node's number is a hash of its parent's number and its name, so it is the
 * same every time the path is looked up, without a table that grows with every
 * path a file manager ever touched. Files that were hardlinked when backed up
 * (links > 1) hash their snapshot's root number with the recorded device and
 * inode instead, so all their names share one number, exactly as on the source.
 * With 32 bits, two unrelated paths collide with probability about n²/2³³ for n
 * nodes visited; a collision only matters to tools that compare inode numbers of
 * files that have more than one link (docs/MOUNT.md).
 */

export const ROOT_INO = 1;

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function fnvString(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return h;
}

function fnvUint32(h: number, v: number): number {
  for (let k = 0; k < 4; k++) {
    h ^= (v >>> (k * 8)) & 0xff;
    h = Math.imul(h, FNV_PRIME);
  }
  return h;
}

function finish(h: number): number {
  // Final avalanche (murmur3 fmix32) so that similar names spread over the whole range.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  h >>>= 0;
  // 0 means "unknown" to the kernel and 1 is the root.
  return h < 2 ? h + 2 : h;
}

/** Number of the entry `name` inside the directory numbered `parent`. */
export function childIno(parent: number, name: string): number {
  return finish(fnvString(fnvUint32(FNV_OFFSET, parent), name));
}

/** Shared number of every name of a file that had several links in one snapshot. */
export function hardlinkIno(snapshotRoot: number, devInode: string): number {
  return finish(fnvString(fnvUint32(FNV_OFFSET ^ 0x5bd1e995, snapshotRoot), devInode));
}
