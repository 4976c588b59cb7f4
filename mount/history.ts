import { mapLimit } from '../src/util/concurrency.js';
import { type MountContext, virtualDirAttr } from './context.js';
import { childIno } from './inodes.js';
import { VirtualLink } from './link.js';
import { type MountedSnapshot } from './snapshots-dir.js';
import { type Entry, type LoadedTree } from './tree-cache.js';
import { type Attr, type DirNode, type Listing, type MountNode, S_IFDIR, S_IFLNK } from './types.js';

/**
 * history/<path…>: every snapshot's tree merged by path, built lazily one path
 * at a time. A history directory knows, for each snapshot that has something at
 * its path, what is there ("occurrences", oldest snapshot first). Looking up a
 * child loads one tree per distinct directory version along that path only —
 * snapshots whose directory did not change share a tree ID and cost one load —
 * never a walk of whole snapshots.
 *
 * Where a path is a file (or link, or device…) in some snapshots, its history
 * directory also holds one symlink per distinct version: named after the oldest
 * snapshot holding that content, pointing into snapshots/. Files are compared by
 * content (their blob list), links by target, other kinds by type and device.
 */
export interface Occurrence {
  snap: MountedSnapshot;
  /** Tree of this path when it is a directory in `snap`. */
  tree?: string;
  /** The node at this path (absent for the snapshot roots). */
  entry?: Entry;
}

const TREE_LOADS = 4;

function versionKey(e: Entry): string {
  switch (e.type) {
    case 'file':
      return `f:${(e.content ?? []).join(',')}`;
    case 'symlink':
      return `l:${e.linkTarget ?? ''}`;
    default:
      return `${e.type}:${e.rdev ?? 0}`;
  }
}

export class HistoryDir implements DirNode {
  readonly kind = 'dir' as const;
  private versionLinks: Map<string, VirtualLink> | undefined;
  private names: Promise<string[]> | undefined;
  /** Only history/ itself re-reads the snapshot list when listed. */
  readonly refreshOnList: boolean;

  constructor(
    private readonly ctx: MountContext,
    /** Path below history/, as shown. */
    readonly components: string[],
    readonly ino: number,
    private readonly occurrences: Occurrence[],
    private readonly timeMs: number,
  ) {
    this.refreshOnList = components.length === 0;
  }

  attr(): Attr {
    return virtualDirAttr(this.ctx, this.ino, this.timeMs);
  }

  /** How many snapshots have something here (for cache accounting). */
  get weight(): number {
    return this.occurrences.length;
  }

  /** Version links, by name. */
  versions(): Map<string, VirtualLink> {
    if (this.versionLinks) return this.versionLinks;
    const out = new Map<string, VirtualLink>();
    if (this.components.length > 0) {
      const seen = new Set<string>();
      const up = '../'.repeat(this.components.length + 1);
      const rel = this.components.join('/');
      for (const o of this.occurrences) {
        if (!o.entry || o.entry.type === 'dir') continue;
        const key = versionKey(o.entry);
        if (seen.has(key)) continue;
        seen.add(key);
        const name = o.snap.name;
        out.set(name, new VirtualLink(this.ctx, childIno(this.ino, name), `${up}snapshots/${name}/${rel}`, o.entry.mtimeMs));
      }
    }
    this.versionLinks = out;
    return out;
  }

  /** Distinct directory trees at this path, each with the snapshots that have it. */
  private groups(): Map<string, Occurrence[]> {
    const g = new Map<string, Occurrence[]>();
    for (const o of this.occurrences) {
      if (o.tree === undefined) continue;
      const list = g.get(o.tree);
      if (list) list.push(o);
      else g.set(o.tree, [o]);
    }
    return g;
  }

  private async trees(): Promise<Map<string, LoadedTree>> {
    const ids = [...this.groups().keys()];
    const loaded = await mapLimit(ids, TREE_LOADS, (id) => this.ctx.trees.get(id));
    return new Map(ids.map((id, i) => [id, loaded[i]!]));
  }

  async lookup(name: string): Promise<MountNode | undefined> {
    const v = this.versions().get(name);
    if (v) return v;
    const trees = await this.trees();
    const found: Occurrence[] = [];
    let newest = 0;
    for (const o of this.occurrences) {
      if (o.tree === undefined) continue;
      const e = trees.get(o.tree)!.get(name);
      if (!e) continue;
      found.push({ snap: o.snap, entry: e, tree: e.type === 'dir' ? (e.subtree ?? '') : undefined });
      newest = Math.max(newest, o.snap.timeMs);
    }
    if (found.length === 0) return undefined;
    return new HistoryDir(this.ctx, [...this.components, name], childIno(this.ino, name), found, newest);
  }

  async list(): Promise<Listing> {
    this.names ??= (async () => {
      const set = new Set<string>();
      for (const t of (await this.trees()).values()) for (const e of t.entries) set.add(e.name);
      for (const n of this.versions().keys()) set.add(n);
      return [...set].sort();
    })();
    let names: string[];
    try {
      names = await this.names;
    } catch (err) {
      this.names = undefined;
      throw err;
    }
    const versions = this.versions();
    return {
      names,
      modes: names.map((n) => (versions.has(n) ? S_IFLNK : S_IFDIR)),
      inos: names.map((n) => childIno(this.ino, n)),
    };
  }
}
