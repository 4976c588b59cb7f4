import { type BlobLocation } from '../src/repo/index.js';
import { type Repository } from '../src/repo/repository.js';
import { type TreeCache, type TreeLocator } from './tree-cache.js';
import { tracePhase } from './trace.js';
import { type Attr, S_IFDIR } from './types.js';

/**
 * The repository index, loaded in the background: the mount answers (snapshot
 * list, virtual directories) before it is there. `start` first reads just the
 * places of the tree blobs (Repository.loadTreeLocations, a few ms), which is all directory
 * lookups need; the full index, whose decoding holds the main thread for
 * 60-110 ms, follows `fullDelayMs` later or as soon as something needs it
 * (`need`: opening a file), so it does not stall the first lookups after
 * mounting. `reload` reads index files written since (new snapshots);
 * concurrent calls share one pass.
 */
export class IndexLoader implements TreeLocator {
  private running: Promise<void> | undefined;
  private rerun = false;
  private fullStarted = false;
  private treeMap: Map<string, BlobLocation> | undefined;
  private trees: Promise<Map<string, BlobLocation> | undefined> = Promise.resolve(undefined);
  private resolveReady!: () => void;
  private rejectReady!: (err: unknown) => void;
  /** Resolves once the first full load (started by `need`, or by `start` after its delay) is done. */
  readonly ready = new Promise<void>((resolve, reject) => {
    this.resolveReady = resolve;
    this.rejectReady = reject;
  });
  done = false;

  constructor(
    private readonly repo: Repository,
    private readonly fullDelayMs = 250,
  ) {
    this.ready.catch(() => {});
  }

  /** Read the tree places now and the full index soon; resolves when the full index is loaded. */
  start(): Promise<void> {
    // Without the tree places (an unreadable index object) lookups wait for the full index.
    this.trees = this.repo.loadTreeLocations().then(
      (m) => {
        tracePhase(`tree places read (${m.size})`);
        return (this.treeMap = m);
      },
      () => undefined,
    );
    void this.trees.then(() => {
      if (!this.fullStarted) setTimeout(() => void this.need().catch(() => {}), this.fullDelayMs).unref();
    });
    return this.ready;
  }

  /** The full index: starts loading it now if it has not started yet. */
  need(): Promise<void> {
    if (!this.fullStarted) {
      this.fullStarted = true;
      this.reload().then(
        () => {
          this.done = true;
          // The full index answers from now on: let the tree places go.
          this.treeMap = undefined;
          this.trees = Promise.resolve(undefined);
          this.resolveReady();
        },
        (err: unknown) => this.rejectReady(err),
      );
    }
    return this.ready;
  }

  peek(id: string): BlobLocation | undefined {
    return this.done ? this.repo.index.get(id) : this.treeMap?.get(id);
  }

  async locate(id: string): Promise<BlobLocation | undefined> {
    if (!this.done) {
      const hit = (await this.trees)?.get(id);
      if (hit && !this.done) return hit;
      await this.need();
    }
    // Written after the index was read (a snapshot that appeared meanwhile): read the new index files.
    if (!this.repo.index.has(id)) await this.reload();
    return this.repo.index.get(id);
  }

  reload(): Promise<void> {
    if (this.running) {
      // A pass is under way; it may have listed the index files before the newest one.
      this.rerun = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.rerun = false;
          await this.repo.loadIndex();
        } while (this.rerun);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }
}

/** What the nodes of one mount share. */
export interface MountContext {
  readonly repo: Repository;
  readonly index: IndexLoader;
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
