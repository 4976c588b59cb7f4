import { type Repository } from '../src/repo/repository.js';
import { type TreeCache } from './tree-cache.js';
import { type Attr, S_IFDIR } from './types.js';

/** What the nodes of one mount share. */
export interface MountContext {
  readonly repo: Repository;
  readonly trees: TreeCache;
  /** Owner shown for directories the mount makes up (the mounting user). */
  readonly uid: number;
  readonly gid: number;
  /** One line on stderr (or wherever the caller wants it). */
  readonly log: (message: string) => void;
}

/** st_blocks for `size` bytes (512-byte units). */
export function blocksFor(size: number): number {
  return Math.ceil(size / 512);
}

/** Attributes of a directory the mount makes up: read-only for everyone, owned by the mounting user. */
export function virtualDirAttr(ctx: MountContext, ino: number, timeMs: number, nlink = 2): Attr {
  return {
    mode: S_IFDIR | 0o555,
    uid: ctx.uid,
    gid: ctx.gid,
    size: 0,
    nlink,
    ino,
    rdev: 0,
    blocks: 0,
    atimeMs: timeMs,
    mtimeMs: timeMs,
    ctimeMs: timeMs,
  };
}

/** Join a mount path and a child name ("/" is the root). */
export function joinPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}
