import fsp from 'node:fs/promises';
import path from 'node:path';
import { DamagedBlobError } from '../src/repo/blob.js';
import { type BlobOpener, type Repository } from '../src/repo/repository.js';
import { WorkerPool } from '../src/workers/pool.js';
import { BlobCache, DEFAULT_CACHE_BYTES } from './blob-cache.js';
import { IndexLoader, type MountContext } from './context.js';
import { BlobReadError, OpenFile } from './file.js';
import { type FsOperations, FuseSession, type Statfs, tuneReadahead } from './fuse.js';
import { CachedPackReads } from './cached-pack-reads.js';
import { autoUnmountHelpers, mountAt, recoverStaleMount, waitForHelpers } from './mounts.js';
import { Resolver } from './root.js';
import { type SnapshotFilter, SnapshotSet } from './snapshots-dir.js';
import { TreeCache } from './tree-cache.js';
import { TRACE, traceMemory, tracePhase } from './trace.js';
import { type Attr, EINVAL, EISDIR, ENODATA, ENOENT, ENOSYS, ENOTDIR, EIO, EROFS, FsError, type Listing, type MountNode, S_IFDIR } from './types.js';

/**
 * `createMount(repo, mountpoint, options)`: the read-only snapshot file system
 * (docs/MOUNT.md). It depends on the repository layer and the worker pool only.
 */
export interface MountOptions {
  filter?: SnapshotFilter;
  /** Views besides snapshots/ (restic-style templates; default hosts/%h/%T, tags/%t/%T, ids/%i). */
  templates?: string[];
  /** Chunk cache size in bytes (default 256 MiB). */
  cacheSize?: number;
  /** Decoded tree cache, estimated bytes (default 64 MiB). */
  treeCacheSize?: number;
  allowOther?: boolean;
  /** Kernel permission checks against stored owners and modes (default: on with allowOther). */
  defaultPermissions?: boolean;
  /** Worker pool for decrypting blobs; one is created (and closed on unmount) if not given. */
  pool?: WorkerPool;
  workers?: number;
  /** Error lines (damaged blobs, unreadable snapshots). Default: stderr. */
  log?: (message: string) => void;
  /** Notices (a stale mountpoint recovered). Default: stderr. */
  notice?: (message: string) => void;
  /** Background re-read of the snapshot list while the mount is in use (default 30 s). */
  refreshIntervalMs?: number;
  /** Kernel entry/attribute cache, seconds (default 60). */
  entryTimeout?: number;
  attrTimeout?: number;
  /** Largest read-ahead window per open file, bytes (default 32 MiB, at most a quarter of the cache). */
  readAheadMax?: number;
  /** Kernel read-ahead for the mount, bytes (default 512 KiB). */
  kernelReadahead?: number;
  /** How often to check that the mount is still there (default 250 ms). */
  watchIntervalMs?: number;
  debug?: boolean;
}

export interface MountStats {
  snapshots: number;
  cacheBytes: number;
  blobHits: number;
  blobMisses: number;
  blobsLoaded: number;
  prefetched: number;
  treesLoaded: number;
  openFiles: number;
}

export interface MountHandle {
  readonly mountpoint: string;
  /** Resolves when the file system answers; rejects if it could not be mounted. */
  readonly ready: Promise<void>;
  /** Resolves once unmounted, by `unmount()` or from outside (aegis umount, fusermount -u). */
  readonly closed: Promise<void>;
  /** Whether a stale mount had to be cleared first. */
  readonly recoveredStale: boolean;
  unmount(): Promise<void>;
  stats(): MountStats;
}

const O_ACCMODE = 3;
const O_TRUNC = 0o1000;

export const MIN_CACHE_SIZE = 16 * 1024 * 1024;

const NUL = Buffer.of(0);

class MountFs implements FsOperations {
  /** Open files by handle: being made ready, or ready. */
  private readonly handles = new Map<number, OpenFile | Promise<OpenFile>>();
  private readonly logged = new Set<string>();
  active = false;

  constructor(
    private readonly ctx: MountContext,
    private readonly set: SnapshotSet,
    private readonly resolver: Resolver,
    private readonly blobs: BlobCache,
    private readonly readAheadMax: number,
    readonly initial: Promise<unknown>,
  ) {}

  get openFiles(): number {
    return this.handles.size;
  }

  private async resolve(p: string): Promise<MountNode> {
    this.active = true;
    if (this.set.generation === 0) await this.initial;
    return this.resolver.resolve(p);
  }

  getattr(p: string): Attr | Promise<Attr> {
    this.active = true;
    if (this.set.generation > 0) {
      const now = this.resolver.resolveNow(p);
      if (now) return now.attr();
      if (now === undefined) throw new FsError(ENOENT, `${p} does not exist`);
    }
    return this.resolve(p).then((n) => n.attr());
  }

  async readdir(p: string): Promise<Listing> {
    let node = await this.resolve(p);
    if (node.kind !== 'dir') throw new FsError(ENOTDIR, `${p} is not a directory`);
    if ((node as { refreshOnList?: boolean }).refreshOnList && (await this.set.refreshIfOlder())) {
      this.noteHiddenXattrs();
      node = await this.resolve(p);
      if (node.kind !== 'dir') throw new FsError(ENOTDIR, `${p} is not a directory`);
    }
    const l = await node.list();
    const slash = p.lastIndexOf('/');
    const parent = p === '/' ? node : this.resolver.peek(slash <= 0 ? '/' : p.slice(0, slash));
    return {
      names: ['.', '..', ...l.names],
      modes: [S_IFDIR, S_IFDIR, ...l.modes],
      inos: [node.ino, parent?.ino ?? node.ino, ...l.inos],
      attrs: l.attrs && [undefined, undefined, ...l.attrs],
    };
  }

  /**
   * Whether this mount answers for extended attributes: decided at the first
   * request, from the snapshots then known. If none has any, the answer is
   * ENOSYS, which the kernel keeps for the mount's life and asks no more: an
   * `ls -l` asks for two or three attributes of every entry (an ACL, an SELinux
   * label), and even answered by the binding each costs a round trip to this
   * process, which tripled the time of an `ls -lR` of the bench snapshot.
   */
  private xattrsShown: boolean | undefined;

  private async xattrsAnswered(): Promise<void> {
    if (this.set.generation === 0) await this.initial;
    this.xattrsShown ??= this.set.anyHasXattrs;
    if (!this.xattrsShown) throw new FsError(ENOSYS, 'no snapshot has extended attributes');
  }

  /** Said once, when a snapshot with extended attributes appears after the kernel was told there are none. */
  private noteHiddenXattrs(): void {
    if (this.xattrsShown !== false || this.logged.has('xattrs') || !this.set.anyHasXattrs) return;
    this.logged.add('xattrs');
    this.ctx.log('a snapshot taken since this mount started has extended attributes; mount again to see them');
  }

  async getxattr(p: string, name: Buffer): Promise<Buffer> {
    await this.xattrsAnswered();
    const node = await this.resolve(p);
    const found = node.xattrs?.()?.find((x) => x.name.equals(name));
    if (!found) throw new FsError(ENODATA, `${p} has no extended attribute ${name.toString()}`);
    return found.value;
  }

  async listxattr(p: string): Promise<Buffer> {
    await this.xattrsAnswered();
    const node = await this.resolve(p);
    const list = node.xattrs?.() ?? [];
    return Buffer.concat(list.flatMap((x) => [x.name, NUL]));
  }

  async readlink(p: string): Promise<string> {
    const node = await this.resolve(p);
    if (node.kind !== 'symlink') throw new FsError(EINVAL, `${p} is not a symlink`);
    return node.target();
  }

  /**
   * The binding has given the kernel handle `fd` already (native/aegis_fuse.c,
   * op_open); the file is made ready here, and a failure shows at the first
   * read on the handle. Reads come after this in the binding's queue, so the
   * handle is known by then, if not yet ready.
   */
  open(p: string, flags: number, fd: number): Promise<void> {
    const opening = this.openFile(p, flags);
    this.handles.set(fd, opening);
    return opening.then(
      (file) => {
        if (this.handles.get(fd) === opening) this.handles.set(fd, file);
      },
      () => {},
    );
  }

  private async openFile(p: string, flags: number): Promise<OpenFile> {
    if ((flags & O_ACCMODE) !== 0 || (flags & O_TRUNC) !== 0) throw new FsError(EROFS, 'read-only');
    const node = await this.resolve(p);
    if (node.kind === 'dir') throw new FsError(EISDIR, `${p} is a directory`);
    if (node.kind !== 'file') throw new FsError(EINVAL, `${p} has no data`);
    await this.ctx.index.need();
    const index = this.ctx.repo.index;
    if (node.content.some((id) => !index.has(id))) await this.ctx.index.reload(); // written since the index was read?
    return new OpenFile(node, this.ctx.repo, this.blobs, (m) => this.ctx.log(m), this.readAheadMax);
  }

  read(p: string, fd: number, buf: Buffer, len: number, pos: number): number | Promise<number> {
    const file = this.handles.get(fd);
    if (file instanceof OpenFile) {
      const r = file.read(buf, len, pos);
      return typeof r === 'number' ? r : r.catch((err: unknown) => this.readFailed(p, err));
    }
    if (file) return file.then((f) => f.read(buf, len, pos)).catch((err: unknown) => this.readFailed(p, err));
    return this.readUnopened(p, fd, buf, len, pos);
  }

  /** A read on a handle we do not know (cannot happen with libfuse; handled anyway). */
  private async readUnopened(p: string, fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const node = await this.resolve(p);
    if (node.kind !== 'file') throw new FsError(EISDIR, `${p} is not a file`);
    await this.ctx.index.need();
    const file = new OpenFile(node, this.ctx.repo, this.blobs, (m) => this.ctx.log(m), this.readAheadMax);
    this.handles.set(fd, file);
    try {
      return await file.read(buf, len, pos);
    } catch (err) {
      return this.readFailed(p, err);
    }
  }

  /** Map a failed read to EIO, with one log line per file and blob naming both. */
  private readFailed(p: string, err: unknown): never {
    if (err instanceof BlobReadError) {
      const loc = this.ctx.repo.index.get(err.blobId);
      const key = `${p}\0${err.blobId}`;
      if (!this.logged.has(key)) {
        if (this.logged.size > 10_000) this.logged.clear();
        this.logged.add(key);
        const cause = err.cause;
        // The blob and pack are named here in full: of a damaged blob only the detail is added.
        const why = cause instanceof DamagedBlobError ? `is damaged: ${cause.detail}` : `cannot be read: ${(cause as Error)?.message ?? String(cause)}`;
        this.ctx.log(`cannot read ${p}: blob ${err.blobId}${loc ? ` in pack ${loc.packId}` : ''} ${why}`);
      }
      throw new FsError(EIO, err.message);
    }
    throw err;
  }

  release(_p: string, fd: number): void {
    this.handles.delete(fd);
  }

  statfs(): Statfs {
    return {
      bsize: 128 * 1024,
      frsize: 4096,
      blocks: 0,
      bfree: 0,
      bavail: 0,
      files: 0,
      ffree: 0,
      favail: 0,
      fsid: 0,
      flag: 1, // ST_RDONLY
      namemax: 255,
    };
  }
}

export function createMount(repo: Repository, mountpoint: string, options: MountOptions = {}): MountHandle {
  const mnt = path.resolve(mountpoint);
  const log = options.log ?? ((m: string) => process.stderr.write(`aegis mount: ${m}\n`));
  const notice = options.notice ?? ((m: string) => process.stderr.write(`${m}\n`));
  const cacheSize = Math.max(MIN_CACHE_SIZE, options.cacheSize ?? DEFAULT_CACHE_BYTES);
  const readAheadMax = Math.max(1024 * 1024, Math.min(options.readAheadMax ?? 32 * 1024 * 1024, Math.floor(cacheSize / 4)));

  let session: FuseSession | undefined;
  let pool: WorkerPool | undefined;
  let ownPool = false;
  let savedOpener: BlobOpener | undefined;
  let watch: NodeJS.Timeout | undefined;
  let refreshTimer: NodeJS.Timeout | undefined;
  let recovered = false;
  let finished = false;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));

  const index = new IndexLoader(repo);
  const ctx: MountContext = {
    repo,
    index,
    trees: new TreeCache(repo, { maxBytes: options.treeCacheSize }, index),
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    log,
  };
  // Joining neighbouring blobs into one range read saves requests to a remote store;
  // on a local disk it only costs (a bigger read before the first blob is usable).
  const local = path.isAbsolute(repo.storage.location);
  const cachedReads = local ? new CachedPackReads(repo) : undefined;
  const blobs = new BlobCache(repo, {
    readCached: cachedReads && ((packId, offset, length) => cachedReads.read(packId, offset, length)),
    maxBytes: cacheSize,
    maxRunBytes: local ? 0 : undefined,
    // A small file's blob opens in microseconds here; through a worker thread,
    // reading every file of the bench tree (30,000 files of 0.2-8 KiB) took 22-23 s
    // instead of 17-19 s.
    inlineOpenBytes: 64 * 1024,
    arena: true,
    openRange: (packId, data, list, arena) => {
      if (!pool) return Promise.reject(new Error('the mount is not ready'));
      return pool.openRange(packId, data, list, arena);
    },
    openFileRange: (packId, source, list, arena) => {
      if (!pool) return Promise.reject(new Error('the mount is not ready'));
      return pool.openRangeFromFile(packId, source, list, arena);
    },
  });
  if (TRACE) {
    traceMemory.chunkCache = () => blobs.size;
    traceMemory.treeCache = () => ctx.trees.size;
  }
  // Listing a directory of snapshots re-reads the list. From a local repository
  // that is one directory scan, so every listing does it (`aegis backup && ls`
  // shows the new snapshot); a remote one is asked at most once a second.
  const minRefreshMs = repo.storage.localPath ? 0 : undefined;
  const set = new SnapshotSet(ctx, { filter: options.filter, templates: options.templates, minRefreshMs });
  const resolver = new Resolver(set);
  let fsImpl: MountFs | undefined;
  const reported = new Set<string>();

  const cleanup = async (unmountFirst: boolean): Promise<void> => {
    if (finished) return;
    finished = true;
    if (watch) clearInterval(watch);
    if (refreshTimer) clearInterval(refreshTimer);
    try {
      if (unmountFirst && session) await session.unmount();
    } finally {
      if (savedOpener) repo.opener = savedOpener;
      if (ownPool && pool) await pool.close().catch(() => {});
      cachedReads?.close();
      resolveClosed();
    }
  };

  const ready = (async () => {
    tracePhase('createMount');
    let existing = await mountAt(mnt);
    if (existing && (existing.fstype === 'fuse' || existing.fstype.startsWith('fuse.'))) {
      recovered = await recoverStaleMount(mnt);
      if (recovered) {
        notice(`aegis: ${mnt} was left mounted by a process that is gone ("Transport endpoint is not connected"); unmounted it`);
        existing = await mountAt(mnt);
      }
    }
    if (existing) throw new Error(`${mnt} is already a mount point (${existing.fstype} from ${existing.source}); unmount it first ("aegis umount ${mnt}")`);
    // A helper of an earlier mount here that has not finished would unmount ours.
    const helpers = await autoUnmountHelpers(mnt);
    if (helpers.length > 0 && !(await waitForHelpers(helpers, 5000))) {
      throw new Error(`an earlier mount at ${mnt} is still shutting down (fusermount pid ${helpers.join(', ')}); try again in a moment`);
    }
    const st = await fsp.stat(mnt).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new Error(`mountpoint ${mnt} does not exist (create it with mkdir)`);
      throw err;
    });
    if (!st.isDirectory()) throw new Error(`mountpoint ${mnt} is not a directory`);
    const entries = await fsp.readdir(mnt);
    if (entries.length > 0) throw new Error(`mountpoint ${mnt} is not empty`);

    tracePhase('mountpoint checked');
    pool = options.pool;
    if (!pool) {
      pool = new WorkerPool({ keys: repo.keys, chunker: repo.config.chunker, size: options.workers });
      ownPool = true;
    }
    savedOpener = repo.opener;
    repo.opener = pool.blobOpener();

    // The snapshot list is read while the kernel sets up the mount (the first
    // request that needs it waits for it); the index loads in the background and
    // only what needs a blob's place waits for that.
    const started = pool;
    index.start().then(
      () => {
        tracePhase('index loaded');
        // File reads need the index first, so this is the moment to have the threads started.
        started.start();
      },
      (err: unknown) => log(`loading the repository index failed: ${(err as Error).message}`),
    );
    const initial = set.refresh();
    initial.then(
      () => tracePhase('snapshot list read'),
      () => {},
    );
    fsImpl = new MountFs(ctx, set, resolver, blobs, readAheadMax, initial);
    const entryTimeout = options.entryTimeout ?? 60;
    const attrTimeout = options.attrTimeout ?? 60;
    const kernelReadahead = options.kernelReadahead ?? 512 * 1024;
    try {
      session = await FuseSession.mount(
        mnt,
        fsImpl,
        {
          fsname: `aegis:${repo.storage.location}`,
          allowOther: options.allowOther,
          defaultPermissions: options.defaultPermissions ?? Boolean(options.allowOther),
          entryTimeout,
          attrTimeout,
          maxReadahead: kernelReadahead,
          kernelCache: true,
          autoUnmount: true,
          debug: options.debug,
        },
        (op, p, err) => {
          // One line per distinct failure: a file manager retrying must not flood the log.
          const line = `${op} ${p}: ${(err as Error)?.message ?? String(err)}`;
          if (reported.has(line)) return;
          if (reported.size > 10_000) reported.clear();
          reported.add(line);
          log(line);
        },
      );
      tracePhase('fuse mounted');
      const mounted = session;
      set.onLinksChanged = (paths) => mounted.invalidate(paths);
      await initial;
    } catch (err) {
      if (session) await session.unmount().catch(() => {});
      await cleanup(false);
      throw err;
    }
    await tuneReadahead(mnt, kernelReadahead);
    tracePhase('ready');

    // The binding's loop ends when the kernel lets go (aegis umount, fusermount -u).
    void session.exited.then(() => {
      if (!finished) void cleanup(false);
    });
    const watchMs = options.watchIntervalMs ?? 250;
    let checking = false;
    watch = setInterval(() => {
      if (checking) return;
      checking = true;
      mountAt(mnt)
        .then((m) => {
          if (!m && !finished) void cleanup(false);
        })
        .catch(() => {})
        .finally(() => (checking = false));
    }, watchMs);
    watch.unref();
    const every = options.refreshIntervalMs ?? 30_000;
    refreshTimer = setInterval(() => {
      if (!fsImpl?.active) return;
      fsImpl.active = false;
      set.refreshIfOlder(every).catch((err: unknown) => log(`re-reading the snapshot list failed: ${(err as Error).message}`));
    }, every);
    refreshTimer.unref();
  })();
  ready.catch(() => {});

  return {
    mountpoint: mnt,
    ready,
    closed,
    get recoveredStale() {
      return recovered;
    },
    unmount: async () => {
      await ready.catch(() => {});
      await cleanup(true);
    },
    stats: () => ({
      snapshots: set.snapshots.length,
      cacheBytes: blobs.size,
      blobHits: blobs.stats.hits,
      blobMisses: blobs.stats.misses,
      blobsLoaded: blobs.stats.loaded,
      prefetched: blobs.stats.prefetched,
      treesLoaded: ctx.trees.loads,
      openFiles: fsImpl?.openFiles ?? 0,
    }),
  };
}

export { DEFAULT_CACHE_BYTES } from './blob-cache.js';
export { DEFAULT_TEMPLATES, checkTemplate, timeName, type SnapshotFilter } from './snapshots-dir.js';
export { fusermountUnmount, isStale, mountAt, recoverStaleMount } from './mounts.js';
export { displayName, decodeName } from './names.js';

