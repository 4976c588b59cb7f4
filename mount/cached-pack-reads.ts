import fs from 'node:fs';
import { LRUCache } from 'lru-cache';
import { nativeSyscalls } from '../src/native/syscalls.js';
import { type Repository } from '../src/repo/repository.js';

/**
 * Reads of small ranges of a local repository's packs on the JavaScript
 * thread, of bytes already in the page cache only (readCached: RWF_NOWAIT), so
 * the thread never waits for a disk. Reading a directory of small files through
 * the mount waited for each file's blob on three hand-offs to libuv's pool (open,
 * read, close of the pack); a page-cache hit here is one system call. Packs stay
 * open in a small LRU (they never change); a pack seen for the first time is
 * opened in the background and read the usual way meanwhile.
 */
export class CachedPackReads {
  private readonly fds: LRUCache<string, number>;
  private readonly opening = new Map<string, Promise<void>>();
  private closed = false;
  private readonly readCached = nativeSyscalls()?.readCached;
  /** Reads served here, and those left to the storage (not cached, or the pack not open yet). */
  readonly stats = { served: 0, passed: 0 };

  constructor(
    private readonly repo: Repository,
    maxOpen = 64,
  ) {
    this.fds = new LRUCache<string, number>({ max: maxOpen, dispose: (fd) => fs.close(fd, () => {}) });
  }

  /** The bytes, or undefined: then read them through the storage, which also says what is wrong. */
  read(packId: string, offset: number, length: number): Buffer | undefined {
    const file = this.readCached && !this.closed ? this.repo.packFile(packId) : undefined;
    if (!file) return undefined;
    const fd = this.fds.get(file);
    if (fd === undefined) {
      this.openSoon(file);
      this.stats.passed++;
      return undefined;
    }
    const buf = Buffer.allocUnsafeSlow(length);
    if (this.readCached!(fd, buf, offset) !== length) {
      this.stats.passed++;
      return undefined;
    }
    this.stats.served++;
    return buf;
  }

  private openSoon(file: string): void {
    if (this.opening.has(file)) return;
    const opened = new Promise<void>((resolve) =>
      fs.open(file, fs.constants.O_RDONLY, (err, fd) => {
        this.opening.delete(file);
        if (!err) {
          if (this.closed) fs.close(fd, () => {});
          else this.fds.set(file, fd);
        }
        resolve();
      }),
    );
    this.opening.set(file, opened);
  }

  /** Resolves once the packs being opened now are open (or failed to open). */
  async settled(): Promise<void> {
    await Promise.all(this.opening.values());
  }

  close(): void {
    this.closed = true;
    this.fds.clear();
  }
}
