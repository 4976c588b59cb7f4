import { LRUCache } from 'lru-cache';
import { hexToId } from '../src/crypto/ids.js';
import { BlobType, DamagedBlobError, openBlob } from '../src/repo/blob.js';
import { type BlobLocation } from '../src/repo/index.js';
import { type Repository, packReadFailure } from '../src/repo/repository.js';
import { type NodeType, type TreeNode, decodeTree } from '../src/snapshot/tree.js';
import { type Xattr } from '../src/snapshot/xattrs.js';
import { displayName } from './names.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK } from './types.js';

/**
 * Decoded directory listings (tree blobs), kept in an LRU cache bounded by an
 * estimate of their memory. A small tree is decrypted and verified right here:
 * that takes microseconds, less than handing it to a worker thread and back, and
 * a directory lookup then never waits for the worker threads to start (about
 * 50–130 ms after mounting, measured). A big tree is opened on a worker thread
 * (repo.opener) and then parsed here in slices of about 256 KiB with a turn of
 * the event loop between slices, so a directory of 100,000 entries never stalls
 * other readers for more than a few milliseconds.
 */

/** One entry of a directory as the mount needs it: compact, no Buffers or bigints. */
export interface Entry {
  /** The name as shown (mount/names.ts). */
  readonly name: string;
  readonly type: NodeType;
  /** st_mode with the file-type bits. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly links: number;
  readonly atimeMs: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  /** `dev:inode` of a non-directory that had several links when backed up. */
  readonly hardlink?: string;
  readonly subtree?: string;
  readonly content?: readonly string[];
  /** Symlink target as shown, and its length in original bytes. */
  readonly linkTarget?: string;
  readonly linkBytes?: number;
  readonly rdev?: number;
  readonly xattrs?: readonly Xattr[];
}

const TYPE_BITS: Record<NodeType, number> = {
  file: S_IFREG,
  dir: S_IFDIR,
  symlink: S_IFLNK,
  fifo: S_IFIFO,
  chardev: S_IFCHR,
  blockdev: S_IFBLK,
  socket: S_IFSOCK,
};

function nsToMs(ns: bigint): number {
  return Number(ns / 1_000_000n);
}

export function toEntry(n: TreeNode): Entry {
  const e: {
    -readonly [K in keyof Entry]: Entry[K];
  } = {
    name: displayName(n.name),
    type: n.type,
    mode: TYPE_BITS[n.type] | (n.mode & 0o7777),
    uid: n.uid,
    gid: n.gid,
    size: n.type === 'file' ? n.size : 0,
    links: n.links > 0 ? n.links : 1,
    atimeMs: nsToMs(n.atimeNs),
    mtimeMs: nsToMs(n.mtimeNs),
    ctimeMs: nsToMs(n.ctimeNs),
  };
  if (n.type !== 'dir' && n.links > 1) e.hardlink = `${n.dev}:${n.inode}`;
  if (n.subtree !== undefined) e.subtree = n.subtree;
  if (n.content !== undefined) e.content = n.content;
  if (n.linkTarget !== undefined) {
    e.linkTarget = displayName(n.linkTarget);
    e.linkBytes = Buffer.byteLength(e.linkTarget, 'utf8');
    e.size = e.linkBytes;
  }
  if (n.rdev !== undefined) e.rdev = n.rdev;
  if (n.xattrs !== undefined) e.xattrs = n.xattrs;
  return e;
}

/** A decoded directory: its entries in stored order and a name index. */
export class LoadedTree {
  private readonly byName: Map<string, Entry>;

  constructor(
    readonly id: string,
    readonly entries: Entry[],
    /** Estimated memory in bytes, for the cache bound. */
    readonly bytes: number,
    byName?: Map<string, Entry>,
  ) {
    if (byName) this.byName = byName;
    else {
      this.byName = new Map();
      for (const e of entries) if (!this.byName.has(e.name)) this.byName.set(e.name, e);
    }
  }

  get(name: string): Entry | undefined {
    return this.byName.get(name);
  }
}

/** Trees smaller than this are parsed in one go (about a millisecond). */
const SYNC_LIMIT = 256 * 1024;
const SLICE = 256 * 1024;
/** Rough heap cost of one decoded entry beyond its strings. */
const ENTRY_OVERHEAD = 240;

/** Background tree loads: range reads in flight, the gap they may skip, their largest size. */
const MAX_PREFETCH_RUNS = 4;
const PREFETCH_GAP = 64 * 1024;
const PREFETCH_RUN = 4 * 1024 * 1024;
const PREFETCH_QUEUE = 4096;
/** The trees of the first `max` subdirectories of `tree`. */
export function subdirTrees(tree: LoadedTree, max = 1024): string[] {
  const out: string[] = [];
  for (const e of tree.entries) {
    if (out.length >= max) break;
    if (e.subtree) out.push(e.subtree);
  }
  return out;
}

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

function estimate(plainBytes: number, entries: number): number {
  return plainBytes + entries * ENTRY_OVERHEAD;
}

/**
 * Decode a tree blob without blocking the event loop for long. The blob is the
 * JSON `{"nodes":[…]}` written by src/snapshot/tree.ts; it is cut between
 * top-level node objects and each slice is parsed by the format's own decoder.
 * Anything unexpected falls back to decoding it in one piece.
 */
export async function decodeTreeSliced(id: string, plain: Buffer): Promise<LoadedTree> {
  const prefix = Buffer.from('{"nodes":[');
  const parse = (b: Buffer): TreeNode[] => {
    try {
      return decodeTree(b).nodes;
    } catch (err) {
      throw new DamagedBlobError(id, `tree does not parse: ${(err as Error).message}`);
    }
  };
  if (plain.length <= SYNC_LIMIT || !plain.subarray(0, prefix.length).equals(prefix)) {
    const entries = parse(plain).map(toEntry);
    return new LoadedTree(id, entries, estimate(plain.length, entries.length));
  }
  const entries: Entry[] = [];
  const byName = new Map<string, Entry>();
  const suffix = Buffer.from(']}');
  let depth = 0;
  let inString = false;
  let escaped = false;
  let sliceStart = prefix.length;
  let end = -1;
  for (let i = prefix.length; i < plain.length; i++) {
    const c = plain[i]!;
    if (inString) {
      if (escaped) escaped = false;
      else if (c === 0x5c) escaped = true;
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d) depth--;
    else if (c === 0x5d) {
      if (depth === 0) {
        end = i;
        break;
      }
      depth--;
    } else if (c === 0x2c && depth === 0 && i - sliceStart >= SLICE) {
      for (const n of parse(Buffer.concat([prefix, plain.subarray(sliceStart, i), suffix]))) {
        const e = toEntry(n);
        entries.push(e);
        if (!byName.has(e.name)) byName.set(e.name, e);
      }
      sliceStart = i + 1;
      await yieldToLoop();
    }
  }
  if (end < 0 || plain.subarray(end).toString('utf8').trim() !== ']}') {
    const all = parse(plain).map(toEntry);
    return new LoadedTree(id, all, estimate(plain.length, all.length));
  }
  if (end > sliceStart) {
    for (const n of parse(Buffer.concat([prefix, plain.subarray(sliceStart, end), suffix]))) {
      const e = toEntry(n);
      entries.push(e);
      if (!byName.has(e.name)) byName.set(e.name, e);
    }
  }
  return new LoadedTree(id, entries, estimate(plain.length, entries.length), byName);
}

const EMPTY = new LoadedTree('', [], 0);

/** A failed read of a tree's pack, as Repository.loadBlob reports it. */
/** A directory listing that cannot be read: the whole directory answers EIO. */
export class TreeDamagedError extends Error {
  constructor(
    readonly blobId: string,
    readonly packId: string | undefined,
    detail: string,
  ) {
    super(`tree blob ${blobId}${packId ? ` in pack ${packId}` : ''} is damaged: ${detail}`);
    this.name = 'TreeDamagedError';
  }
}

/** Where tree blobs are (IndexLoader: before the full index is loaded, too). */
export interface TreeLocator {
  /** The place of a tree if it is known now, without waiting. */
  peek(id: string): BlobLocation | undefined;
  /** The place of a tree; undefined if the repository's index does not have it. */
  locate(id: string): Promise<BlobLocation | undefined>;
}

export interface TreeCacheOptions {
  /** Estimated bytes of decoded trees to keep (default 64 MiB). */
  maxBytes?: number;
  /** Trees of at most this many sealed bytes are opened on this thread (default 256 KiB). */
  inlineOpenBytes?: number;
}

/** Opening 256 KiB (decrypt, decompress, hash) takes well under a millisecond. */
const INLINE_OPEN_BYTES = 256 * 1024;

export class TreeCache {
  private readonly lru: LRUCache<string, LoadedTree>;
  private readonly loading = new Map<string, Promise<LoadedTree>>();
  /**
   * The few trees used last, held even when one is larger than the whole cache,
   * so that `ls -l` of a huge directory does not decode it once per entry.
   */
  private readonly recent: LoadedTree[] = [];
  loads = 0;
  private prefetchRuns = 0;
  private queue: Array<{ id: string; depth: number }> = [];
  private readonly inlineOpenBytes: number;

  constructor(
    private readonly repo: Repository,
    opts: TreeCacheOptions = {},
    /** Default: the repository's index as it is (already loaded). */
    private readonly locator: TreeLocator = { peek: (id) => repo.index.get(id), locate: async (id) => repo.index.get(id) },
  ) {
    const maxSize = Math.max(1, opts.maxBytes ?? 64 * 1024 * 1024);
    this.inlineOpenBytes = opts.inlineOpenBytes ?? INLINE_OPEN_BYTES;
    this.lru = new LRUCache<string, LoadedTree>({ maxSize, sizeCalculation: (t) => Math.max(1, t.bytes) });
  }

  /** Estimated bytes held by the cache (without the few recent trees kept beyond it). */
  get size(): number {
    return this.lru.calculatedSize;
  }

  /** A tree if it is in memory now, without waiting. */
  peek(id: string): LoadedTree | undefined {
    if (id === '') return EMPTY;
    const t = this.lru.get(id) ?? this.recent.find((r) => r.id === id);
    if (t) this.touch(t);
    return t;
  }

  async get(id: string): Promise<LoadedTree> {
    if (id === '') return EMPTY;
    const have = this.peek(id);
    if (have) return have;
    let p = this.loading.get(id);
    if (!p) {
      p = this.load(id);
      this.loading.set(id, p);
      p.then(
        () => this.loading.delete(id),
        () => this.loading.delete(id),
      );
    }
    return p;
  }

  private load(id: string): Promise<LoadedTree> {
    this.loads++;
    return this.finish(
      id,
      this.locator.locate(id).then(async (loc) => {
        if (!loc) throw new DamagedBlobError(id, 'not in the index (missing from the repository)');
        const sealed = await this.repo.readPackRange(loc.packId, loc.offset, loc.length, { kind: 'tree' }).catch((err: unknown) => {
          throw packReadFailure(err, id, loc.packId);
        });
        return this.open(id, sealed, loc.packId);
      }),
    );
  }

  /** Decrypt and verify a sealed tree: here when small, on the worker pool when big. */
  private open(id: string, sealed: Buffer, packId: string): Promise<Buffer> {
    if (sealed.length > this.inlineOpenBytes) return this.repo.opener.open(BlobType.Tree, hexToId(id), sealed, packId);
    try {
      return Promise.resolve(openBlob(this.repo.keys, BlobType.Tree, hexToId(id), sealed, packId));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Decode a tree being fetched, keep it, and name it in full if it is damaged. */
  private async finish(id: string, plain: Promise<Buffer>): Promise<LoadedTree> {
    let tree: LoadedTree;
    try {
      tree = await decodeTreeSliced(id, await plain);
    } catch (err) {
      if (err instanceof DamagedBlobError) {
        // Name the blob and pack in full for the log line (the error's own message abbreviates them).
        const detail = err.message.replace(/^blob \S+( in pack \S+)? is damaged: /, '');
        throw new TreeDamagedError(id, this.locator.peek(id)?.packId, detail);
      }
      throw err;
    }
    this.lru.set(id, tree);
    this.touch(tree);
    return tree;
  }

  /**
   * Load trees in the background: the subdirectories of a directory just
   * listed, which `ls -R`, `find` and file managers open next, and (for
   * `depth` > 1) their subdirectories in turn. Newly asked-for trees go first.
   * Trees stored next to each other in a pack (siblings usually are) share one
   * range read; a few reads run at once, and the queue is bounded.
   */
  prefetch(ids: readonly string[], depth = 2): void {
    if (ids.length === 0) return;
    const items: Array<{ id: string; depth: number }> = [];
    for (const id of ids) if (id && !this.lru.has(id) && !this.loading.has(id)) items.push({ id, depth });
    if (items.length === 0) return;
    this.queue.unshift(...items);
    if (this.queue.length > PREFETCH_QUEUE) this.queue.length = PREFETCH_QUEUE;
    this.pump();
  }

  private pump(): void {
    while (this.prefetchRuns < MAX_PREFETCH_RUNS && this.queue.length > 0) {
      const head = this.queue.shift()!;
      if (this.lru.has(head.id) || this.loading.has(head.id)) continue;
      const headLoc = this.locator.peek(head.id);
      if (!headLoc) continue;
      // Others of the next few queued trees stored near it in the same pack join its read.
      const run = [{ ...head, loc: headLoc }];
      const window = this.queue.slice(0, 64);
      for (const q of window) {
        if (run.some((r) => r.id === q.id) || this.lru.has(q.id) || this.loading.has(q.id)) continue;
        const l = this.locator.peek(q.id);
        if (l && l.packId === headLoc.packId && Math.abs(l.offset - headLoc.offset) <= PREFETCH_RUN) run.push({ ...q, loc: l });
      }
      run.sort((a, b) => a.loc.offset - b.loc.offset);
      // Keep only a contiguous stretch (small gaps allowed) that contains the head, within the size limit.
      const at = run.findIndex((r) => r.id === head.id);
      let lo = at;
      let hi = at;
      while (lo > 0 && run[lo]!.loc.offset - (run[lo - 1]!.loc.offset + run[lo - 1]!.loc.length) <= PREFETCH_GAP && run[hi]!.loc.offset + run[hi]!.loc.length - run[lo - 1]!.loc.offset <= PREFETCH_RUN) lo--;
      while (hi < run.length - 1 && run[hi + 1]!.loc.offset - (run[hi]!.loc.offset + run[hi]!.loc.length) <= PREFETCH_GAP && run[hi + 1]!.loc.offset + run[hi + 1]!.loc.length - run[lo]!.loc.offset <= PREFETCH_RUN) hi++;
      const chosen = run.slice(lo, hi + 1).filter((r, i, a) => i === 0 || r.loc.offset >= a[i - 1]!.loc.offset + a[i - 1]!.loc.length);
      const taken = new Set(chosen.map((r) => r.id));
      this.queue = this.queue.filter((q) => !taken.has(q.id));
      this.prefetchRun(chosen);
    }
  }

  private prefetchRun(run: Array<{ id: string; depth: number; loc: BlobLocation }>): void {
    const first = run[0]!.loc;
    const last = run[run.length - 1]!.loc;
    const end = last.offset + last.length;
    this.prefetchRuns++;
    const read = this.repo.readPackRange(first.packId, first.offset, end - first.offset, { kind: 'tree' }).catch((err: unknown) => {
      throw packReadFailure(err, run[0]!.id, first.packId);
    });
    const all = run.map(({ id, depth, loc }) => {
      this.loads++;
      const sealed = read.then((buf) => {
        if (run.length === 1 && buf.length === loc.length) return buf;
        if (loc.length <= this.inlineOpenBytes) return buf.subarray(loc.offset - first.offset, loc.offset - first.offset + loc.length);
        // A worker thread gets a buffer of its own (see BlobCache.fetch).
        const own = Buffer.allocUnsafeSlow(loc.length);
        buf.copy(own, 0, loc.offset - first.offset, loc.offset - first.offset + loc.length);
        return own;
      });
      const p = this.finish(id, sealed.then((b) => this.open(id, b, loc.packId)));
      this.loading.set(id, p);
      const done = () => {
        if (this.loading.get(id) === p) this.loading.delete(id);
      };
      p.then((tree) => {
        done();
        if (depth > 1) this.prefetch(subdirTrees(tree, 64), depth - 1);
      }, done);
      return p;
    });
    void Promise.allSettled(all).then(() => {
      this.prefetchRuns--;
      this.pump();
    });
  }

  private touch(t: LoadedTree): void {
    if (this.recent[0] === t) return;
    const i = this.recent.indexOf(t);
    if (i >= 0) this.recent.splice(i, 1);
    this.recent.unshift(t);
    if (this.recent.length > 2) this.recent.length = 2;
  }

  clear(): void {
    this.lru.clear();
    this.recent.length = 0;
  }
}
