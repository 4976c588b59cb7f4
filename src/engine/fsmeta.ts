import { type BigIntStats } from 'node:fs';
import { describeErrno, nativeSyscalls } from '../native/syscalls.js';
import { type Xattr, unpackXattrs } from '../snapshot/xattrs.js';
import { type NodeType, type TreeNode } from '../snapshot/tree.js';
import { ACCOUNT_FILES, accountsDigest, readAccountFile } from '../state/treememo.js';

function parseAccounts(content: Buffer): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of content.toString('utf8').split('\n')) {
    const f = line.split(':');
    if (f.length >= 3 && /^\d+$/.test(f[2]!)) out.set(Number(f[2]), f[0]!);
  }
  return out;
}

/** uid/gid → name, from the local account databases: read on first use, and again by `refresh`. */
class AccountNames {
  private users: Map<number, string> | undefined;
  private groups: Map<number, string> | undefined;

  /**
   * Read the account files again (each backup starts here, so a long-lived
   * process never names owners from an old copy) and return the digest of the
   * very bytes the names now come from, for the tree memo.
   */
  refresh(): Buffer {
    const contents = ACCOUNT_FILES.map(readAccountFile);
    [this.users, this.groups] = contents.map(parseAccounts);
    return accountsDigest(contents);
  }

  user(uid: number): string | undefined {
    if (!this.users) this.refresh();
    return this.users!.get(uid);
  }

  group(gid: number): string | undefined {
    if (!this.groups) this.refresh();
    return this.groups!.get(gid);
  }
}

export const accounts = new AccountNames();

export function nodeType(st: BigIntStats): NodeType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  if (st.isSocket()) return 'socket';
  return undefined;
}

/** A tree node's metadata from lstat; content, subtree and link target are filled in by the caller. */
export function nodeFromStat(name: Buffer, st: BigIntStats, type: NodeType): TreeNode {
  const node: TreeNode = {
    name,
    type,
    mode: Number(st.mode) & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtimeNs: st.mtimeNs,
    atimeNs: st.atimeNs,
    ctimeNs: st.ctimeNs,
    size: type === 'file' ? Number(st.size) : 0,
    dev: st.dev.toString(),
    inode: st.ino.toString(),
    links: Number(st.nlink),
  };
  return withNamesAndDevice(node, Number(st.rdev));
}

/**
 * What a node adds to the lstat fields, wherever they came from (nodeFromStat,
 * or a native scan's record in dirscan.ts): owner names, and a device's number.
 */
export function withNamesAndDevice(node: TreeNode, rdev: number): TreeNode {
  const user = accounts.user(node.uid);
  const group = accounts.group(node.gid);
  if (user !== undefined) node.user = user;
  if (group !== undefined) node.group = group;
  if (node.type === 'chardev' || node.type === 'blockdev') node.rdev = rdev;
  return node;
}

const readPacked = nativeSyscalls()?.readXattrs;

/**
 * The extended attributes at `p` (never through a last symlink), sorted by
 * name; undefined if there are none, or the file system has none, or the
 * native addon is missing. Throws an error with the errno's code otherwise.
 */
export function readXattrs(p: Buffer): Xattr[] | undefined {
  const got = readPacked?.(p);
  if (got === undefined || got === null) return undefined;
  if (typeof got === 'number') {
    // Worded as Node words its own errors ("EACCES: permission denied, …").
    const [code, text] = describeErrno(got);
    throw Object.assign(new Error(`${code}: ${text}, llistxattr '${p.toString()}'`), { code, errno: got });
  }
  return unpackXattrs(got);
}
