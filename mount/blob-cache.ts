import { LRUCache } from 'lru-cache';
import { BlobType } from '../src/repo/blob.js';
import { type Repository } from '../src/repo/repository.js';

/**
 * The chunk cache: decrypted, verified data blobs in an LRU cache bounded in
 * bytes, shared by every open file. A blob asked for while it is being fetched
 * joins that fetch. Fetches run through two lanes of one limit: demand reads
 * (a program waiting) always get a slot; read-ahead only takes slots up to its
 * own smaller limit and never queues, so it cannot delay a waiting reader.
 */
export interface BlobCacheOptions {
  /** Bytes of plaintext to keep (default 256 MiB). */
  maxBytes?: number;
  /** Blob loads in flight at once (range read + decrypt on the worker pool). */
  maxLoads?: number;
  /** Of those, at most this many for read-ahead. */
  maxPrefetch?: number;
}

export const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024;

export class BlobCache {
  private readonly lru: LRUCache<string, Buffer>;
  private readonly inflight = new Map<string, Promise<Buffer>>();
  private readonly waiting: Array<() => void> = [];
  private active = 0;
  private prefetching = 0;
  readonly maxBytes: number;
  private readonly maxLoads: number;
  private readonly maxPrefetch: number;
  /** Counters for tests and the debug log. */
  readonly stats = { hits: 0, misses: 0, joined: 0, prefetched: 0, loaded: 0, loadedBytes: 0 };

  constructor(private readonly repo: Repository, opts: BlobCacheOptions = {}) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_CACHE_BYTES;
    this.maxLoads = Math.max(1, opts.maxLoads ?? 12);
    this.maxPrefetch = Math.max(0, Math.min(this.maxLoads - 1, opts.maxPrefetch ?? 8));
    this.lru = new LRUCache<string, Buffer>({ maxSize: Math.max(1, this.maxBytes), sizeCalculation: (b) => Math.max(1, b.length) });
  }

  has(id: string): boolean {
    return this.lru.has(id) || this.inflight.has(id);
  }

  /** The plaintext of data blob `id`: from the cache, a fetch already running, or a new one. */
  get(id: string): Promise<Buffer> {
    const hit = this.lru.get(id);
    if (hit) {
      this.stats.hits++;
      return Promise.resolve(hit);
    }
    const running = this.inflight.get(id);
    if (running) {
      this.stats.joined++;
      return running;
    }
    this.stats.misses++;
    return this.start(id, false);
  }

  /** Start fetching `id` in the background if a read-ahead slot is free. Returns whether it is (or was) underway. */
  prefetch(id: string): boolean {
    if (this.lru.has(id) || this.inflight.has(id)) return true;
    if (this.prefetching >= this.maxPrefetch || this.active >= this.maxLoads) return false;
    this.stats.prefetched++;
    this.start(id, true).catch(() => {
      /* a reader that needs it will fetch again and report the error */
    });
    return true;
  }

  /** Read-ahead slots free right now. */
  prefetchRoom(): number {
    return Math.max(0, Math.min(this.maxPrefetch - this.prefetching, this.maxLoads - this.active));
  }

  private start(id: string, prefetch: boolean): Promise<Buffer> {
    const p = this.load(id, prefetch);
    this.inflight.set(id, p);
    const done = () => {
      if (this.inflight.get(id) === p) this.inflight.delete(id);
    };
    p.then(done, done);
    return p;
  }

  private async load(id: string, prefetch: boolean): Promise<Buffer> {
    if (prefetch) {
      this.prefetching++;
      this.active++;
    } else await this.acquire();
    try {
      const buf = await this.repo.loadBlob(BlobType.Data, id);
      this.stats.loaded++;
      this.stats.loadedBytes += buf.length;
      this.lru.set(id, buf);
      return buf;
    } finally {
      if (prefetch) this.prefetching--;
      this.release();
    }
  }

  private acquire(): Promise<void> {
    if (this.active < this.maxLoads) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next(); // the slot passes straight to a waiting demand read
    else this.active--;
  }

  /** Bytes held now. */
  get size(): number {
    return this.lru.calculatedSize;
  }

  clear(): void {
    this.lru.clear();
  }
}
