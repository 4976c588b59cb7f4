/**
 * Inode numbers, 52 bits (exact in a JavaScript number). The mount sets
 * `use_ino` so the kernel reports ours (libfuse's own numbers would give two
 * hardlinks of one file different inodes, which rsync -H and cp -a notice).
 *
 * A node's number is a hash of its parent's number and its name, so it is the
 * same every time the path is looked up, without a table that grows with every
 * path a file manager ever touched. Files that were hardlinked when backed up
 * (links > 1) hash their snapshot's root number with the recorded device and
 * inode instead, so all their names share one number, exactly as on the source.
 * With 52 bits, two unrelated paths share a number with probability about
 * n²/2⁵³ for n nodes visited (about 10⁻⁴ for a million); a collision would only
 * matter to tools that compare inode numbers of files with more than one link
 * (docs/MOUNT.md). (fuse-native, the binding used before, carried 32 bits.)
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

function fmix(h: number): number {
  // Final avalanche (murmur3 fmix32) so that similar names spread over the whole range.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const HIGH_SEED = 0x27d4eb2f;
const HIGH_BITS = 2 ** 20;

/**
 * 52 bits from two 32-bit FNV-1a runs with different seeds over the same input
 * (exact in a double, so it survives JavaScript and the binding unchanged).
 */
function number52(seed: number, parent: number, text: string): number {
  const lo = Math.floor(parent / 2 ** 32) >>> 0;
  const low = fmix(fnvString(fnvUint32(fnvUint32(seed, parent >>> 0), lo), text));
  const high = fmix(fnvString(fnvUint32(fnvUint32(seed ^ HIGH_SEED, parent >>> 0), lo), text)) % HIGH_BITS;
  const n = high * 2 ** 32 + low;
  // 0 means "unknown" to the kernel and 1 is the root.
  return n < 2 ? n + 2 : n;
}

/** Number of the entry `name` inside the directory numbered `parent`. */
export function childIno(parent: number, name: string): number {
  return number52(FNV_OFFSET, parent, name);
}

/** Shared number of every name of a file that had several links in one snapshot. */
export function hardlinkIno(snapshotRoot: number, devInode: string): number {
  return number52(FNV_OFFSET ^ 0x5bd1e995, snapshotRoot, devInode);
}
