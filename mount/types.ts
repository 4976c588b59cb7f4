import { type Xattr } from '../src/snapshot/xattrs.js';

/** What every node of the mounted tree offers to mount/fuse.ts. */

/** Attributes of a node; times in milliseconds since the epoch. */
export interface Attr {
  /** st_mode including the file-type bits. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  ino: number;
  rdev: number;
  blocks: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  /** Whether the entry has extended attributes (the binding answers getxattr itself for those that have none). */
  hasXattrs?: boolean;
}

/** A directory listing: parallel arrays (cheap for 100,000 entries). */
export interface Listing {
  names: string[];
  /** st_mode of each entry (only the type bits matter to the kernel here). */
  modes: number[];
  inos: number[];
  /**
   * Optional: what getattr would answer for each entry (undefined where unknown).
   * They go to the kernel with the names (READDIRPLUS), so `ls -l` after a
   * listing costs no lookup request per entry.
   */
  attrs?: (Attr | undefined)[];
}

export interface BaseNode {
  readonly ino: number;
  attr(): Attr;
  /** The stored extended attributes, sorted by name; undefined if none. */
  xattrs?(): readonly Xattr[] | undefined;
}

export interface DirNode extends BaseNode {
  readonly kind: 'dir';
  /** The child called `name`, or undefined. May load a tree blob. */
  lookup(name: string): Promise<MountNode | undefined>;
  /** Optional fast path: the child without waiting (undefined: absent; null: needs I/O, use lookup). */
  lookupNow?(name: string): MountNode | undefined | null;
  list(): Promise<Listing>;
}

export interface FileNode extends BaseNode {
  readonly kind: 'file';
  /** Where the node is shown, for log lines. */
  readonly path: string;
  readonly size: number;
  /** Data blob IDs in order. */
  readonly content: readonly string[];
}

export interface LinkNode extends BaseNode {
  readonly kind: 'symlink';
  /** The target as shown (see mount/names.ts). */
  target(): Promise<string>;
}

/** FIFOs, sockets and device nodes: they can be listed and stat'ed, not opened for data. */
export interface SpecialNode extends BaseNode {
  readonly kind: 'special';
}

export type MountNode = DirNode | FileNode | LinkNode | SpecialNode;

export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFSOCK = 0o140000;

/** An error carrying the errno to report to the kernel. */
export class FsError extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
    this.name = 'FsError';
  }
}

export const ENOENT = 2;
export const EIO = 5;
export const EBADF = 9;
export const EACCES = 13;
export const ENOTDIR = 20;
export const EISDIR = 21;
export const EINVAL = 22;
export const EROFS = 30;
export const ENOSYS = 38;
export const ENODATA = 61;
export const ENOTCONN = 107;
