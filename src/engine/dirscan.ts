import { type NodeType, type TreeNode } from '../snapshot/tree.js';
import { REC, S_IFMT, u64 } from '../native/dir-records.js';
import { withNamesAndDevice } from './fsmeta.js';

export { REC, type ScanDir, identityAt, nativeScanDir, setNativeScanDir, u64 } from '../native/dir-records.js';

const TYPES = new Map<number, NodeType>([
  [0o100000, 'file'],
  [0o040000, 'dir'],
  [0o120000, 'symlink'],
  [0o010000, 'fifo'],
  [0o020000, 'chardev'],
  [0o060000, 'blockdev'],
  [0o140000, 'socket'],
]);

export function recordType(buf: Buffer, r: number): NodeType | undefined {
  return TYPES.get(buf.readUInt32LE(r + REC.MODE) & S_IFMT);
}

const TWO32 = 2 ** 32;

/** An unsigned 64-bit field in decimal, as `BigInt.toString()` writes it. */
export function u64String(buf: Buffer, at: number): string {
  const hi = buf.readUInt32LE(at + 4);
  return hi < 0x200000 ? String(buf.readUInt32LE(at) + hi * TWO32) : buf.readBigUInt64LE(at).toString();
}

/**
 * The same node as `nodeFromStat` makes from Node's lstat (test/dirscan.test.ts
 * compares them field by field); content, subtree and link target are filled in
 * by the caller.
 */
export function nodeFromRecord(name: Buffer, buf: Buffer, r: number, type: NodeType, devString: string): TreeNode {
  const node: TreeNode = {
    name,
    type,
    mode: buf.readUInt32LE(r + REC.MODE) & 0o7777,
    uid: buf.readUInt32LE(r + REC.UID),
    gid: buf.readUInt32LE(r + REC.GID),
    mtimeNs: buf.readBigInt64LE(r + REC.MTIME),
    atimeNs: buf.readBigInt64LE(r + REC.ATIME),
    ctimeNs: buf.readBigInt64LE(r + REC.CTIME),
    size: type === 'file' ? u64(buf, r + REC.SIZE) : 0,
    dev: devString,
    inode: u64String(buf, r + REC.INO),
    links: u64(buf, r + REC.NLINK),
  };
  return withNamesAndDevice(node, type === 'chardev' || type === 'blockdev' ? u64(buf, r + REC.RDEV) : 0);
}

/** Decimal device numbers of a scan's records: a directory's entries nearly always share one. */
export class DevStrings {
  private lo = -1;
  private hi = -1;
  private last = '';

  of(buf: Buffer, r: number): string {
    const lo = buf.readUInt32LE(r + REC.DEV);
    const hi = buf.readUInt32LE(r + REC.DEV + 4);
    if (lo !== this.lo || hi !== this.hi) {
      this.lo = lo;
      this.hi = hi;
      this.last = u64String(buf, r + REC.DEV);
    }
    return this.last;
  }
}
