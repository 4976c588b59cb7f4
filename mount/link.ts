import { type MountContext, blocksFor } from './context.js';
import { type Xattr } from '../src/snapshot/xattrs.js';
import { type Entry } from './tree-cache.js';
import { type Attr, type LinkNode, S_IFLNK } from './types.js';

/**
 * Symbolic links. A link stored in a snapshot answers readlink with its stored
 * target (as shown, mount/names.ts); the mount itself never resolves it, so a
 * link to /etc/shadow in a backup is just text to us. The kernel resolves it for
 * the program that follows it, exactly as for the original file.
 */
export class EntryLink implements LinkNode {
  readonly kind = 'symlink' as const;

  constructor(
    readonly entry: Entry,
    readonly ino: number,
  ) {}

  attr(): Attr {
    const e = this.entry;
    return {
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      size: e.linkBytes ?? 0,
      nlink: e.links,
      ino: this.ino,
      rdev: 0,
      blocks: blocksFor(e.linkBytes ?? 0),
      atimeMs: e.atimeMs,
      mtimeMs: e.mtimeMs,
      ctimeMs: e.ctimeMs,
      hasXattrs: e.xattrs !== undefined,
    };
  }

  xattrs(): readonly Xattr[] | undefined {
    return this.entry.xattrs;
  }

  async target(): Promise<string> {
    return this.entry.linkTarget ?? '';
  }
}

/** A link the mount makes up: `latest`, and the versions under history/. */
export class VirtualLink implements LinkNode {
  readonly kind = 'symlink' as const;
  private readonly bytes: number;

  constructor(
    private readonly ctx: MountContext,
    readonly ino: number,
    private readonly to: string,
    private readonly timeMs: number,
  ) {
    this.bytes = Buffer.byteLength(to, 'utf8');
  }

  attr(): Attr {
    return {
      mode: S_IFLNK | 0o777,
      uid: this.ctx.uid,
      gid: this.ctx.gid,
      size: this.bytes,
      nlink: 1,
      ino: this.ino,
      rdev: 0,
      blocks: 0,
      atimeMs: this.timeMs,
      mtimeMs: this.timeMs,
      ctimeMs: this.timeMs,
    };
  }

  async target(): Promise<string> {
    return this.to;
  }
}
