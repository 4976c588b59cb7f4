import { type Repository } from '../src/repo/repository.js';
import { type Snapshot, type SnapshotEntry, sortByTime } from '../src/snapshot/snapshot.js';
import { type MountContext, joinPath, virtualDirAttr } from './context.js';
import { TreeDir } from './dir.js';
import { HistoryDir } from './history.js';
import { ROOT_INO, childIno } from './inodes.js';
import { VirtualLink } from './link.js';
import { safeVirtualName } from './names.js';
import { type Attr, type DirNode, type Listing, type MountNode, S_IFDIR, S_IFLNK } from './types.js';

const SNAPSHOTS_DIR = '/snapshots';

/**
 * The snapshot list and the directories made from it: snapshots/, the views
 * given by path templates (hosts/, tags/, ids/ by default), and history/.
 *
 * The list is read incrementally (only snapshot objects not seen before are
 * fetched) and rebuilt into a new, immutable set of directories whenever it
 * changes; `generation` counts those rebuilds so path caches know to forget.
 */

export interface SnapshotFilter {
  /** Only these snapshots (full IDs or unique prefixes). */
  ids?: string[];
  host?: string;
  /** restic semantics: each value is "a,b" (all of them); any value may match. */
  tags?: string[];
  /** Only snapshots that include all these paths. */
  paths?: string[];
}

export interface MountedSnapshot {
  id: string;
  snapshot: Snapshot;
  /** Its directory name under snapshots/: local time, with -1, -2… for equal seconds. */
  name: string;
  timeMs: number;
}

/** restic's default views, besides snapshots/ which is always there. */
export const DEFAULT_TEMPLATES = ['hosts/%h/%T', 'tags/%t/%T', 'ids/%i'];

/** Local time as 2026-11-23T20-14-51 (colons are awkward in file names). */
export function timeName(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return 'unknown-time';
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}-${p(d.getMinutes())}-${p(d.getSeconds())}`;
}

export function matches(e: SnapshotEntry, f: SnapshotFilter): boolean {
  const s = e.snapshot;
  if (f.ids?.length && !f.ids.some((p) => e.id.startsWith(p))) return false;
  if (f.host && s.hostname !== f.host) return false;
  if (f.tags?.length && !f.tags.some((t) => t.split(',').every((x) => s.tags.includes(x)))) return false;
  if (f.paths?.length && !f.paths.every((p) => s.paths.includes(p))) return false;
  return true;
}

/**
 * Check path templates: components separated by "/", placeholders %T (time name),
 * %i (short ID), %I (full ID), %h (host), %u (user), %t (one directory per tag),
 * %% (a percent sign). Throws on anything else.
 */
export function checkTemplate(t: string): string[] {
  const parts = t.split('/').filter((p) => p !== '');
  if (parts.length === 0) throw new Error(`path template "${t}" is empty`);
  for (const p of parts) {
    if (p === '.' || p === '..') throw new Error(`path template "${t}": "${p}" is not allowed`);
    const bad = /%[^TiIhut%]|%$/.exec(p);
    if (bad) throw new Error(`path template "${t}": unknown placeholder "${bad[0]}" (known: %T %i %I %h %u %t %%)`);
  }
  if (parts[0] === 'snapshots' || parts[0] === 'history') throw new Error(`path template "${t}": "${parts[0]}/" is reserved`);
  if (!/%[TiI]/.test(parts[parts.length - 1]!)) throw new Error(`path template "${t}": the last component must contain %T, %i or %I`);
  return parts;
}

function expand(parts: string[], s: MountedSnapshot): string[][] {
  const tagged = parts.some((p) => p.includes('%t'));
  const tags = tagged ? s.snapshot.tags : [''];
  const out: string[][] = [];
  for (const tag of tags) {
    out.push(
      parts.map((p) =>
        safeVirtualName(
          p.replace(/%([TiIhut%])/g, (_, c: string) => {
            switch (c) {
              case 'T':
                return s.name;
              case 'i':
                return s.id.slice(0, 8);
              case 'I':
                return s.id;
              case 'h':
                return s.snapshot.hostname;
              case 'u':
                return s.snapshot.username;
              case 't':
                return tag;
              default:
                return '%';
            }
          }),
        ),
      ),
    );
  }
  return out;
}

/** A directory the mount makes up from the snapshot list. Immutable once built. */
export class VirtualDir implements DirNode {
  readonly kind = 'dir' as const;
  readonly children = new Map<string, MountNode>();
  /** Set when this directory holds snapshots named by %T: the target of its `latest` link. */
  latest?: string;
  /** Listing it re-reads the snapshot list first (see MountFs.readdir). */
  readonly refreshOnList = true;

  constructor(
    private readonly ctx: MountContext,
    readonly path: string,
    readonly ino: number,
    public timeMs: number,
  ) {}

  attr(): Attr {
    let subdirs = 0;
    for (const c of this.children.values()) if (c.kind === 'dir') subdirs++;
    return virtualDirAttr(this.ctx, this.ino, this.timeMs, 2 + subdirs);
  }

  async lookup(name: string): Promise<MountNode | undefined> {
    return this.children.get(name);
  }

  lookupNow(name: string): MountNode | undefined {
    return this.children.get(name);
  }

  async list(): Promise<Listing> {
    const names = [...this.children.keys()].sort();
    return {
      names,
      modes: names.map((n) => {
        const c = this.children.get(n)!;
        return c.kind === 'dir' ? S_IFDIR : c.kind === 'symlink' ? S_IFLNK : c.attr().mode;
      }),
      inos: names.map((n) => this.children.get(n)!.ino),
    };
  }

  subdir(name: string, timeMs: number): VirtualDir | undefined {
    const have = this.children.get(name);
    if (have) return have instanceof VirtualDir ? have : undefined;
    const d = new VirtualDir(this.ctx, joinPath(this.path, name), childIno(this.ino, name), timeMs);
    this.children.set(name, d);
    return d;
  }
}

/** The root directory of one snapshot, shown at `path`. */
export function snapshotRoot(ctx: MountContext, s: MountedSnapshot, path: string, ino: number): TreeDir {
  const attr: Attr = {
    mode: S_IFDIR | 0o755,
    uid: s.snapshot.uid ?? ctx.uid,
    gid: s.snapshot.gid ?? ctx.gid,
    size: 0,
    nlink: 2,
    ino,
    rdev: 0,
    blocks: 0,
    atimeMs: s.timeMs,
    mtimeMs: s.timeMs,
    ctimeMs: s.timeMs,
  };
  return new TreeDir(ctx, path, ino, s.snapshot.tree, ino, () => attr);
}

export interface SnapshotSetOptions {
  filter?: SnapshotFilter;
  /** Views besides snapshots/ (default: DEFAULT_TEMPLATES). */
  templates?: string[];
  /** On-demand re-reads (listing a view) happen at most this often (default 1 s). */
  minRefreshMs?: number;
}

export class SnapshotSet {
  private readonly all = new Map<string, SnapshotEntry>();

  /** Whether a snapshot of the repository (in this mount's view or not) has extended attributes. */
  get anyHasXattrs(): boolean {
    for (const e of this.all.values()) if (e.snapshot.has_xattrs) return true;
    return false;
  }
  private refreshing: Promise<boolean> | undefined;
  private lastRefresh = 0;
  private readonly templates: string[][];
  private readonly minRefreshMs: number;
  generation = 0;
  snapshots: MountedSnapshot[] = [];
  root: VirtualDir;
  /** Each `latest` link by its path, with its target (see onLinksChanged). */
  private links = new Map<string, string>();
  /** Per directory (by path): the name each snapshot was given there, and every name given there (leafFor). */
  private readonly leaves = new Map<string, { byId: Map<string, string>; given: Set<string> }>();
  /**
   * Told the paths of `latest` links whose target changed or that are gone; a
   * refresh waits for it. The kernel keeps symlink targets (fuse.ts), so the
   * mount has it forget these.
   */
  onLinksChanged?: (paths: string[]) => Promise<void>;

  constructor(
    private readonly ctx: MountContext,
    private readonly opts: SnapshotSetOptions = {},
  ) {
    this.templates = (opts.templates ?? DEFAULT_TEMPLATES).map(checkTemplate);
    this.minRefreshMs = opts.minRefreshMs ?? 1000;
    this.root = this.build();
  }

  get lastRefreshAt(): number {
    return this.lastRefresh;
  }

  /** Re-read the list unless that happened less than `maxAgeMs` ago. Resolves to whether anything changed. */
  refreshIfOlder(maxAgeMs = this.minRefreshMs): Promise<boolean> {
    if (this.refreshing) return this.refreshing;
    if (Date.now() - this.lastRefresh < maxAgeMs) return Promise.resolve(false);
    return this.refresh();
  }

  refresh(): Promise<boolean> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = undefined;
        this.lastRefresh = Date.now();
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<boolean> {
    const repo: Repository = this.ctx.repo;
    // A remote repository's local cache trusts its listings for a while; ask the backend.
    const cached = repo.storage as { refresh?: () => Promise<void> };
    if (this.generation > 0 && typeof cached.refresh === 'function') await cached.refresh();
    // Snapshots this machine decoded before come from the repository's memo, not the storage.
    const listed = await repo.listSnapshots((id, err) =>
      this.ctx.log(`snapshot ${id.slice(0, 8)} cannot be read and is not shown: ${(err as Error).message}`),
    );
    const seen = new Set(listed.map((e) => e.id));
    let changed = false;
    for (const id of [...this.all.keys()]) {
      if (!seen.has(id)) {
        this.all.delete(id);
        changed = true;
      }
    }
    const added = listed.filter((e) => !this.all.has(e.id));
    if (added.length > 0) {
      // New snapshots refer to blobs in index files written before them: read
      // those first (the first list is read while the index loads anyway).
      if (this.generation > 0) await this.ctx.index.reload();
      for (const e of added) this.all.set(e.id, e);
      changed = true;
    }
    if (changed) {
      const before = this.links;
      this.root = this.build();
      this.generation++;
      const stale = [...before].filter(([p, target]) => this.links.get(p) !== target).map(([p]) => p);
      if (stale.length > 0 && this.onLinksChanged) await this.onLinksChanged(stale);
    }
    return changed;
  }

  /**
   * The name of snapshot `id` in directory `dirPath`: the one it got there
   * before in this mount, else `base`, or `base-1`, `base-2`… if that was ever
   * given to another (or `inUse`). A name never passes to another snapshot while
   * mounted: when two snapshots share a second and the first is forgotten, the
   * second keeps its "-1". Otherwise what the kernel cached under the name
   * (file pages with kernel_cache, attributes, link targets) would show the
   * forgotten snapshot's files as the other's.
   */
  private leafFor(dirPath: string, id: string, base: string, inUse: (leaf: string) => boolean): string {
    let dir = this.leaves.get(dirPath);
    if (!dir) this.leaves.set(dirPath, (dir = { byId: new Map(), given: new Set() }));
    const known = dir.byId.get(id);
    if (known !== undefined) return known;
    let leaf = base;
    for (let k = 1; dir.given.has(leaf) || inUse(leaf) || leaf === 'latest'; k++) leaf = `${base}-${k}`;
    dir.byId.set(id, leaf);
    dir.given.add(leaf);
    return leaf;
  }

  private build(): VirtualDir {
    const ctx = this.ctx;
    const filter = this.opts.filter ?? {};
    const list = sortByTime([...this.all.values()].filter((e) => matches(e, filter)));
    this.snapshots = list.map((e) => {
      const t = Date.parse(e.snapshot.time);
      return { id: e.id, snapshot: e.snapshot, name: this.leafFor(SNAPSHOTS_DIR, e.id, timeName(e.snapshot.time), () => false), timeMs: Number.isNaN(t) ? 0 : t };
    });
    const newest = this.snapshots.length ? this.snapshots[this.snapshots.length - 1]!.timeMs : 0;
    const root = new VirtualDir(ctx, '/', ROOT_INO, newest);

    const snapDir = root.subdir(SNAPSHOTS_DIR.slice(1), newest)!;
    for (const s of this.snapshots) {
      snapDir.children.set(s.name, snapshotRoot(ctx, s, joinPath(snapDir.path, s.name), childIno(snapDir.ino, s.name)));
      snapDir.latest = s.name;
    }

    for (const parts of this.templates) {
      const byTime = parts[parts.length - 1] === '%T';
      for (const s of this.snapshots) {
        for (const comps of expand(parts, s)) {
          let dir: VirtualDir | undefined = root;
          for (const c of comps.slice(0, -1)) {
            dir = dir.subdir(c, s.timeMs);
            if (!dir) break;
          }
          if (!dir) continue; // a template leaf is in the way of another template's directory
          dir.timeMs = Math.max(dir.timeMs, s.timeMs);
          const here = dir;
          const leaf = this.leafFor(dir.path, s.id, comps[comps.length - 1]!, (l) => here.children.has(l));
          dir.children.set(leaf, snapshotRoot(ctx, s, joinPath(dir.path, leaf), childIno(dir.ino, leaf)));
          if (byTime) dir.latest = leaf;
        }
      }
    }

    const links = new Map<string, string>();
    const addLatest = (d: VirtualDir) => {
      for (const c of d.children.values()) if (c instanceof VirtualDir) addLatest(c);
      if (d.latest !== undefined) {
        d.children.set('latest', new VirtualLink(ctx, childIno(d.ino, 'latest'), d.latest, d.timeMs));
        links.set(joinPath(d.path, 'latest'), d.latest);
      }
    };
    addLatest(root);
    this.links = links;

    const history = new HistoryDir(
      ctx,
      [],
      childIno(ROOT_INO, 'history'),
      this.snapshots.map((s) => ({ snap: s, tree: s.snapshot.tree })),
      newest,
    );
    root.children.set('history', history);
    return root;
  }
}
