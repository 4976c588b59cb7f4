/**
 * A tree blob is one directory: its entries sorted by the bytes of their names.
 * It is stored as JSON (docs/FORMAT.md, "Tree blobs"). Names and symlink targets
 * are bytes: valid UTF-8 is written as a JSON string (`name`), anything else as
 * base64 (`name_b64`), so every name round-trips exactly. Times are integer
 * nanoseconds since the epoch written as decimal strings.
 */
import { isUtf8 } from 'node:buffer';
import { type Xattr } from './xattrs.js';

export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket';

export interface TreeNode {
  name: Buffer;
  type: NodeType;
  /** Permission bits including setuid, setgid and sticky (st_mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  user?: string;
  group?: string;
  mtimeNs: bigint;
  atimeNs: bigint;
  ctimeNs: bigint;
  /** Bytes of content (apparent size for sparse files); 0 for non-files. */
  size: number;
  /** Device and inode identify hardlinks within one snapshot. */
  dev: string;
  inode: string;
  links: number;
  /** Regular files: data blob IDs in order. */
  content?: string[];
  /** Directories: the tree blob ID of the directory's entries. */
  subtree?: string;
  /** Symlinks: the target bytes. */
  linkTarget?: Buffer;
  /** Device nodes: the device number. */
  rdev?: number;
  /** Extended attributes (ACLs among them), sorted by name; absent when there are none. */
  xattrs?: Xattr[];
}

export interface Tree {
  nodes: TreeNode[];
}

/** The bytes as a string if they are valid UTF-8 (then toString gives them back exactly). */
function isUtf8Exact(b: Buffer): string | undefined {
  return isUtf8(b) ? b.toString('utf8') : undefined;
}

function bytesField(out: Record<string, unknown>, key: string, b: Buffer): void {
  const s = isUtf8Exact(b);
  if (s !== undefined) out[key] = s;
  else out[`${key}_b64`] = b.toString('base64');
}

function readBytesField(obj: Record<string, unknown>, key: string): Buffer | undefined {
  if (typeof obj[key] === 'string') return Buffer.from(obj[key] as string, 'utf8');
  if (typeof obj[`${key}_b64`] === 'string') return Buffer.from(obj[`${key}_b64`] as string, 'base64');
  return undefined;
}

export function compareNames(a: TreeNode, b: TreeNode): number {
  return Buffer.compare(a.name, b.name);
}

export function encodeTree(tree: Tree): Buffer {
  const nodes = tree.nodes.map((n) => {
    const o: Record<string, unknown> = {};
    bytesField(o, 'name', n.name);
    o.type = n.type;
    o.mode = n.mode;
    o.uid = n.uid;
    o.gid = n.gid;
    if (n.user !== undefined) o.user = n.user;
    if (n.group !== undefined) o.group = n.group;
    o.mtime = n.mtimeNs.toString();
    o.atime = n.atimeNs.toString();
    o.ctime = n.ctimeNs.toString();
    o.size = n.size;
    o.dev = n.dev;
    o.inode = n.inode;
    o.links = n.links;
    if (n.content) o.content = n.content;
    if (n.subtree) o.subtree = n.subtree;
    if (n.linkTarget) bytesField(o, 'link_target', n.linkTarget);
    if (n.rdev !== undefined) o.rdev = n.rdev;
    if (n.xattrs?.length) {
      o.xattrs = n.xattrs.map((x) => {
        const e: Record<string, unknown> = {};
        bytesField(e, 'name', x.name);
        e.value = x.value.toString('base64');
        return e;
      });
    }
    return o;
  });
  return Buffer.from(JSON.stringify({ nodes }), 'utf8');
}

const NODE_TYPES = new Set<NodeType>(['file', 'dir', 'symlink', 'fifo', 'chardev', 'blockdev', 'socket']);

export function decodeTree(buf: Buffer): Tree {
  const parsed = JSON.parse(buf.toString('utf8')) as { nodes?: Record<string, unknown>[] };
  if (!parsed || !Array.isArray(parsed.nodes)) throw new Error('tree blob has no node list');
  return {
    nodes: parsed.nodes.map((o) => {
      const name = readBytesField(o, 'name');
      const type = o.type as NodeType;
      if (!name || !NODE_TYPES.has(type)) throw new Error('tree blob has a malformed node');
      const node: TreeNode = {
        name,
        type,
        mode: Number(o.mode),
        uid: Number(o.uid),
        gid: Number(o.gid),
        mtimeNs: BigInt(o.mtime as string),
        atimeNs: BigInt(o.atime as string),
        ctimeNs: BigInt(o.ctime as string),
        size: Number(o.size ?? 0),
        dev: String(o.dev ?? '0'),
        inode: String(o.inode ?? '0'),
        links: Number(o.links ?? 1),
      };
      if (typeof o.user === 'string') node.user = o.user;
      if (typeof o.group === 'string') node.group = o.group;
      if (Array.isArray(o.content)) node.content = o.content as string[];
      if (typeof o.subtree === 'string') node.subtree = o.subtree;
      const target = readBytesField(o, 'link_target');
      if (target) node.linkTarget = target;
      if (o.rdev !== undefined) node.rdev = Number(o.rdev);
      if (Array.isArray(o.xattrs) && o.xattrs.length > 0) node.xattrs = (o.xattrs as Record<string, unknown>[]).map(decodeXattr);
      return node;
    }),
  };
}

function decodeXattr(e: Record<string, unknown>): Xattr {
  const name = readBytesField(e, 'name');
  if (!name || name.length === 0 || name.includes(0) || typeof e.value !== 'string') throw new Error('tree blob has a malformed extended attribute');
  return { name, value: Buffer.from(e.value, 'base64') };
}

/**
 * A name from a tree that is safe to join to a local path: not empty, not `.` or
 * `..`, no `/` and no NUL. A hostile repository must never make us write outside
 * the restore target.
 */
export function isSafeName(name: Buffer): boolean {
  if (name.length === 0 || name.includes(0x2f) || name.includes(0)) return false;
  const s = name.toString('latin1');
  return s !== '.' && s !== '..';
}

export function nsToDate(ns: bigint): Date {
  return new Date(Number(ns / 1_000_000n));
}

/** RFC 3339 with nanoseconds, e.g. 2026-11-23T20:14:51.123456789Z. */
export function nsToIso(ns: bigint): string {
  const ms = ns / 1_000_000n;
  let rem = ns % 1_000_000_000n;
  if (rem < 0n) rem += 1_000_000_000n;
  const base = new Date(Number(ms - (ms % 1000n) - (ms % 1000n < 0n ? 1000n : 0n))).toISOString().slice(0, 19);
  return `${base}.${rem.toString().padStart(9, '0')}Z`;
}
