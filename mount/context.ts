import { type Repository } from '../src/repo/repository.js';
import { type TreeCache } from './tree-cache.js';
import { type Attr, S_IFDIR } from './types.js';

/**
 * The repository index, loaded in the background: the mount answers (snapshot
 * list, virtual directories) before it is there; anything that needs a blob's
 * place waits for `ready`. `reload` reads index files written since (new
 * snapshots); concurrent calls share one pass.
 */
export class IndexLoader {
  private running: Promise<void> | undefined;
  private rerun = false;
  private resolveReady!: () => void;
  private rejectReady!: (err: unknown) => void;
  /** Resolves once the first full load (started by `start`) is done. */
  readonly ready = new Promise<void>((resolve, reject) => {
    this.resolveReady = resolve;
    this.rejectReady = reject;
  });
  done = false;

  constructor(private readonly repo: Repository) {
    this.ready.catch(() => {});
  }

  start(): Promise<void> {
    this.reload().then(
      () => {
        this.done = true;
        this.resolveReady();
      },
      (err: unknown) => this.rejectReady(err),
    );
    return this.ready;
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
