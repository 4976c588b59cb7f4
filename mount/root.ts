import { LRUCache } from 'lru-cache';
import { HistoryDir } from './history.js';
import { type SnapshotSet } from './snapshots-dir.js';
import { ENOENT, ENOTDIR, FsError, type MountNode } from './types.js';

/**
 * Path resolution from the root of the mount. libfuse's high-level API (the
 * FUSE binding) names every request by its full path, so resolved nodes are cached by
 * path: `ls -l` of a directory costs one map lookup per entry after the first.
 * The cache is bounded by an estimate of its memory, and forgotten as a whole
 * when the snapshot list changes (the directories made from it are rebuilt).
 */
export interface ResolverOptions {
  /** Estimated bytes of cached nodes (default 32 MiB). */
  maxBytes?: number;
}

const NODE_BYTES = 320;

function nodeSize(path: string, node: MountNode): number {
  let n = NODE_BYTES + path.length * 2;
  if (node instanceof HistoryDir) n += node.weight * 64;
  return n;
}

export class Resolver {
  private readonly cache: LRUCache<string, MountNode>;
  private generation: number;

  constructor(
    private readonly set: SnapshotSet,
    opts: ResolverOptions = {},
  ) {
    this.cache = new LRUCache<string, MountNode>({ maxSize: opts.maxBytes ?? 32 * 1024 * 1024, sizeCalculation: (v, k) => nodeSize(k, v) });
    this.generation = set.generation;
  }

  private fresh(): void {
    if (this.generation !== this.set.generation) {
      this.cache.clear();
      this.generation = this.set.generation;
    }
  }

  /** The node at `path`, if it is cached (no I/O). */
  peek(path: string): MountNode | undefined {
    this.fresh();
    if (path === '/') return this.set.root;
    return this.cache.get(path);
  }

  /**
   * The node at `path` without I/O when its parent is cached and can answer at
   * once (the common case for `ls -l`: the directory was just listed).
   * undefined: not there; null: needs the async path.
   */
  resolveNow(path: string): MountNode | undefined | null {
    const hit = this.peek(path);
    if (hit) return hit;
    const slash = path.lastIndexOf('/');
    if (slash < 0) return null;
    const parent = this.peek(slash === 0 ? '/' : path.slice(0, slash));
    if (!parent || parent.kind !== 'dir' || !parent.lookupNow) return null;
    const child = parent.lookupNow(path.slice(slash + 1));
    if (child && child.kind === 'dir') this.cache.set(path, child);
    return child;
  }

  async resolve(path: string): Promise<MountNode> {
    const hit = this.peek(path);
    if (hit) return hit;
    const slash = path.lastIndexOf('/');
    if (slash < 0) throw new FsError(ENOENT, `bad path ${path}`);
    const parentPath = slash === 0 ? '/' : path.slice(0, slash);
    const name = path.slice(slash + 1);
    const parent = await this.resolve(parentPath);
    if (parent.kind !== 'dir') throw new FsError(ENOTDIR, `${parentPath} is not a directory`);
    const generation = this.generation;
    const child = await parent.lookup(name);
    if (!child) throw new FsError(ENOENT, `${path} does not exist`);
    // Directories are cached; anything else is rebuilt from its (cached) parent's tree on demand.
    if (generation === this.set.generation && child.kind === 'dir') this.cache.set(path, child);
    return child;
  }

  clear(): void {
    this.cache.clear();
  }
}
