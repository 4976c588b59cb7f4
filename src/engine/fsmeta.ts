import { readFileSync, type BigIntStats } from 'node:fs';
import { type NodeType, type TreeNode } from '../snapshot/tree.js';

/** uid/gid → name, read once from the local account databases. */
class AccountNames {
  private users: Map<number, string> | undefined;
  private groups: Map<number, string> | undefined;

  private load(file: string): Map<number, string> {
    const out = new Map<number, string>();
    try {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const f = line.split(':');
        if (f.length >= 3 && /^\d+$/.test(f[2]!)) out.set(Number(f[2]), f[0]!);
      }
    } catch {
      /* no account database: names stay unknown */
    }
    return out;
  }

  user(uid: number): string | undefined {
    this.users ??= this.load('/etc/passwd');
    return this.users.get(uid);
  }

  group(gid: number): string | undefined {
    this.groups ??= this.load('/etc/group');
    return this.groups.get(gid);
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
  const uid = Number(st.uid);
  const gid = Number(st.gid);
  const node: TreeNode = {
    name,
    type,
    mode: Number(st.mode) & 0o7777,
    uid,
    gid,
    mtimeNs: st.mtimeNs,
    atimeNs: st.atimeNs,
    ctimeNs: st.ctimeNs,
    size: type === 'file' ? Number(st.size) : 0,
    dev: st.dev.toString(),
    inode: st.ino.toString(),
    links: Number(st.nlink),
  };
  const user = accounts.user(uid);
  const group = accounts.group(gid);
  if (user !== undefined) node.user = user;
  if (group !== undefined) node.group = group;
  if (type === 'chardev' || type === 'blockdev') node.rdev = Number(st.rdev);
  return node;
}
