import { type MountContext, blocksFor, joinPath } from './context.js';
import { childIno, hardlinkIno } from './inodes.js';
import { EntryLink } from './link.js';
import { type Entry, subdirTrees } from './tree-cache.js';
import { type Xattr } from '../src/snapshot/xattrs.js';
import { type Attr, type DirNode, type FileNode, type Listing, type MountNode, type SpecialNode } from './types.js';

/**
 * A directory inside a snapshot: its listing is one tree blob, loaded when the
 * directory is first looked into and kept in the tree cache. Nothing else is read:
 * listing a directory of 100,000 entries loads exactly that directory's tree.
 */
export class TreeDir implements DirNode {
  readonly kind = 'dir' as const;

  constructor(
    private readonly ctx: MountContext,
    /** Path inside the mount, for log lines. */
    readonly path: string,
    readonly ino: number,
    /** Tree blob of the entries. */
    readonly treeId: string,
    /** Inode of the snapshot's root directory (hardlink numbers are per snapshot). */
    readonly snapshotIno: number,
    private readonly attrs: () => Attr,
    private readonly stored?: readonly Xattr[],
  ) {}

  attr(): Attr {
    return this.attrs();
  }

  xattrs(): readonly Xattr[] | undefined {
    return this.stored;
  }

  async lookup(name: string): Promise<MountNode | undefined> {
    const tree = this.ctx.trees.peek(this.treeId) ?? (await this.ctx.trees.get(this.treeId));
    const e = tree.get(name);
    return e ? nodeForEntry(this.ctx, this, e) : undefined;
  }

  /** The child if this directory's tree is in memory now: undefined if absent, null if unknown without I/O. */
  lookupNow(name: string): MountNode | undefined | null {
    const tree = this.ctx.trees.peek(this.treeId);
    if (!tree) return null;
    const e = tree.get(name);
    return e ? nodeForEntry(this.ctx, this, e) : undefined;
  }

  async list(): Promise<Listing> {
    const tree = await this.ctx.trees.get(this.treeId);
    const n = tree.entries.length;
    const names = new Array<string>(n);
    const modes = new Array<number>(n);
    const inos = new Array<number>(n);
    const attrs = new Array<Attr>(n);
    for (let i = 0; i < n; i++) {
      const e = tree.entries[i]!;
      names[i] = e.name;
      modes[i] = e.mode;
      inos[i] = entryIno(this, e);
      attrs[i] = entryAttr(e, inos[i]!);
    }
    // Whoever lists a directory usually looks into its subdirectories next.
    this.ctx.trees.prefetch(subdirTrees(tree));
    return { names, modes, inos, attrs };
  }
}

function entryIno(dir: TreeDir, e: Entry): number {
  return e.hardlink !== undefined ? hardlinkIno(dir.snapshotIno, e.hardlink) : childIno(dir.ino, e.name);
}

export function entryAttr(e: Entry, ino: number): Attr {
  return {
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: e.size,
    nlink: e.links,
    ino,
    rdev: e.rdev ?? 0,
    blocks: blocksFor(e.size),
    atimeMs: e.atimeMs,
    mtimeMs: e.mtimeMs,
    ctimeMs: e.ctimeMs,
    hasXattrs: e.xattrs !== undefined,
  };
}

/** A regular file of a snapshot. */
export class EntryFile implements FileNode {
  readonly kind = 'file' as const;

  constructor(
    readonly entry: Entry,
    readonly ino: number,
    readonly path: string,
  ) {}

  get size(): number {
    return this.entry.size;
  }

  get content(): readonly string[] {
    return this.entry.content ?? [];
  }

  attr(): Attr {
    return entryAttr(this.entry, this.ino);
  }

  xattrs(): readonly Xattr[] | undefined {
    return this.entry.xattrs;
  }
}

/** A FIFO, socket or device node: metadata only (the kernel never asks us for its data). */
export class EntrySpecial implements SpecialNode {
  readonly kind = 'special' as const;

  constructor(
    readonly entry: Entry,
    readonly ino: number,
  ) {}

  attr(): Attr {
    return entryAttr(this.entry, this.ino);
  }

  xattrs(): readonly Xattr[] | undefined {
    return this.entry.xattrs;
  }
}

export function nodeForEntry(ctx: MountContext, dir: TreeDir, e: Entry): MountNode {
  const ino = entryIno(dir, e);
  switch (e.type) {
    case 'dir': {
      const path = joinPath(dir.path, e.name);
      // A directory without a subtree (never written by Aegis) shows as empty.
      return new TreeDir(ctx, path, ino, e.subtree ?? EMPTY_TREE, dir.snapshotIno, () => entryAttr(e, ino), e.xattrs);
    }
    case 'file':
      return new EntryFile(e, ino, joinPath(dir.path, e.name));
    case 'symlink':
      return new EntryLink(e, ino);
    default:
      return new EntrySpecial(e, ino);
  }
}

/** Stand-in tree ID for a directory node without a subtree; the tree cache answers it with no entries. */
export const EMPTY_TREE = '';
