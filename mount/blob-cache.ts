import { LRUCache } from 'lru-cache';
import { nativeSyscalls } from '../src/native/syscalls.js';
import { hexToId } from '../src/crypto/ids.js';
import { BlobType, DamagedBlobError, openBlob, openBlobOwned } from '../src/repo/blob.js';
import { type BlobLocation } from '../src/repo/index.js';
import { type Repository, packReadFailure } from '../src/repo/repository.js';
import { type OpenedBlob, type RangeBlob } from '../src/workers/pool.js';
import { copyToOwnBuffer } from '../src/workers/transfer.js';
import { type ArenaRegion, type PackFileRange } from '../src/workers/protocol.js';
import { BlobArena } from './blob-arena.js';

/**
 * The chunk cache: decrypted, verified data blobs in an LRU cache bounded in
 * bytes, shared by every open file. A blob asked for while it is being fetched
 * joins that fetch.
 *
 * A fetch is one byte-range read of a pack. A reader waiting for a blob fetches
 * just that blob; read-ahead may fetch a run of blobs that sit next to each
 * other in one pack (a file's blobs usually do) with a single range read (on
 * remote storage, where requests are what costs), then opens (decrypts,
 * decompresses, verifies) the blobs on the worker pool. Range reads
 * run under one limit with two lanes: a waiting reader always gets the next free
 * slot; read-ahead only starts when one of its own, smaller, share is free and
 * never queues, so it cannot delay a reader.
 */
export interface BlobCacheOptions {
  /** Bytes of plaintext to keep (default 256 MiB). */
  maxBytes?: number;
  /** Range reads in flight at once. */
  maxLoads?: number;
  /** Of those, at most this many for read-ahead. */
  maxPrefetch?: number;
  /** Largest read-ahead range read in bytes (default 8 MiB; 0: one blob per read). */
  maxRunBytes?: number;
  /**
   * Blobs of at most this many sealed bytes are opened on this thread instead of
   * the worker pool (default 0: never). Set by the mount (docs/MOUNT.md).
   */
  inlineOpenBytes?: number;
  /**
   * Opens all blobs of one range read on one worker (WorkerPool.openRange): the
   * range is moved there whole, with no copy per blob on this thread. Without it
   * a run's blobs are cut apart here and opened one by one through repo.opener.
   */
  openRange?: (packId: string, data: Buffer, blobs: RangeBlob[], arena?: SharedArrayBuffer) => Promise<OpenedBlob[]>;
  /**
   * Opens the blobs of a range of a local pack on a worker thread that reads the
   * range itself, into a buffer it reuses (WorkerPool.openRangeFromFile): no
   * fresh buffer per read to fault in and zero, nothing read on this thread or
   * libuv's. Null if it could not read it all; the range is then read through
   * the storage, which retries and reports.
   */
  openFileRange?: (packId: string, source: PackFileRange, blobs: RangeBlob[], arena?: SharedArrayBuffer) => Promise<OpenedBlob[] | null>;
  /**
   * Keep the blobs that worker threads open in one arena the size of the cache
   * (mount/blob-arena.ts) instead of a buffer each; the threads open them into it.
   */
  arena?: boolean;
  /**
   * Reads a small blob of a local pack on this thread when its bytes are in the
   * page cache (CachedPackReads); undefined sends the read the usual way.
   */
  readCached?: (packId: string, offset: number, length: number) => Buffer | undefined;
}

export const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024;
/** After this much has left the cache, freed heap memory is handed back (see trimSoon). */
const TRIM_AFTER_BYTES = 32 * 1024 * 1024;
const MAX_GAP = 256 * 1024;

/**
 * A blob in a buffer of its own: a small blob may come back as a slice of Node's
 * shared 8 KiB pool (Buffer.allocUnsafe below 4 KiB), which would keep the whole
 * pool, and whatever else is in it, alive for as long as the blob is cached. A
 * view that leaves a few bytes unused (the sealed blob's nonce, codec and tag,
 * when a worker decrypted in place) is its own already.
 */
const OWN_SLACK = 64;

function own(b: Buffer): Buffer {
  return b.buffer.byteLength - b.length <= OWN_SLACK ? b : copyToOwnBuffer(b);
}

export class BlobCache {
  private readonly lru: LRUCache<string, Buffer>;
  private readonly inflight = new Map<string, Promise<Buffer>>();
  private readonly waiting: Array<() => void> = [];
  private active = 0;
  private prefetching = 0;
  readonly maxBytes: number;
  private readonly maxLoads: number;
  private readonly maxPrefetch: number;
  private readonly maxRunBytes: number;
  private readonly openRange: BlobCacheOptions['openRange'];
  private readonly openFileRange: BlobCacheOptions['openFileRange'];
  private readonly readCached: BlobCacheOptions['readCached'];
  private readonly inlineOpenBytes: number;
  private readonly arena: BlobArena | undefined;
  /** Counters for tests and the debug log. */
  readonly stats = { hits: 0, misses: 0, joined: 0, prefetched: 0, loaded: 0, loadedBytes: 0, rangeReads: 0 };

  constructor(
    private readonly repo: Repository,
    opts: BlobCacheOptions = {},
  ) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_CACHE_BYTES;
    this.maxLoads = Math.max(2, opts.maxLoads ?? 12);
    this.maxPrefetch = Math.max(1, Math.min(this.maxLoads - 1, opts.maxPrefetch ?? 6));
    this.maxRunBytes = Math.max(0, opts.maxRunBytes ?? 8 * 1024 * 1024);
    this.openRange = opts.openRange;
    this.openFileRange = opts.openFileRange;
    this.readCached = opts.readCached;
    this.inlineOpenBytes = opts.inlineOpenBytes ?? 0;
    this.arena = opts.arena ? new BlobArena(this.maxBytes) : undefined;
    this.lru = new LRUCache<string, Buffer>({
      maxSize: Math.max(1, this.maxBytes),
      sizeCalculation: (b) => Math.max(1, b.length),
      dispose: (b) => {
        if (this.arena?.holds(b)) {
          this.arena.release(b.byteOffset, b.length);
          return;
        }
        this.leftBytes += b.length;
        if (this.leftBytes >= TRIM_AFTER_BYTES) this.trimSoon();
        this.trimWhenIdle();
      },
    });
  }

  private leftBytes = 0;
  private trimScheduled = false;

  private idleTimer: NodeJS.Timeout | undefined;

  /**
   * One more trim when blobs stop leaving the cache for a second (reads paused):
   * what the last garbage collections freed since the last trim, up to 32 MiB
   * of departures plus whatever the worker threads freed, goes back too. Bench
   * tree, RSS 3 s after reading every file: 451-464 MiB, 475-506 without.
   */
  private trimWhenIdle(): void {
    if (this.idleTimer) {
      this.idleTimer.refresh();
      return;
    }
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      this.trimSoon();
    }, 1000).unref();
  }

  /**
   * Blobs that leave the cache are freed by the garbage collector, into glibc's
   * heap, which does not shrink by itself when blobs of every size come and go:
   * reading every file of the bench tree left RSS 100+ MiB above what the cache
   * held. Once per TRIM_AFTER_BYTES of departures, free pages go back
   * (malloc_trim, a few milliseconds), on a later turn of the event loop.
   */
  private trimSoon(): void {
    const trim = nativeSyscalls()?.mallocTrim;
    if (!trim || this.trimScheduled) return;
    this.leftBytes = 0;
    this.trimScheduled = true;
    setTimeout(() => {
      this.trimScheduled = false;
      trim();
    }, 100).unref();
  }

  has(id: string): boolean {
    return this.lru.has(id) || this.inflight.has(id);
  }

  /** The plaintext of `id` if it is cached (counts as a hit). */
  peek(id: string): Buffer | undefined {
    const hit = this.lru.get(id);
    if (hit) this.stats.hits++;
    return hit;
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
    return this.fetch([id], false)[0]!;
  }

  /**
   * Whether `b`, from `get`, stays as it is after an await: a buffer of its own
   * does; a view of the arena only while its blob is cached (then `peek` it).
   */
  stable(b: Buffer): boolean {
    return !this.arena?.holds(b);
  }

  /** `get`, but always a buffer that stays as it is (a copy of an arena region, made while the blob is cached). */
  async getStable(id: string): Promise<Buffer> {
    for (let tries = 0; ; tries++) {
      const hit = this.lru.get(id);
      if (hit) return this.stable(hit) ? hit : copyToOwnBuffer(hit);
      const got = await this.get(id);
      if (this.stable(got)) return got;
      // Evicted again before this continuation ran: only with a cache far too small for the reads in flight.
      if (tries >= 3) throw new Error(`blob ${id} keeps leaving the chunk cache before it can be read (cache too small for the reads in flight?)`);
    }
  }

  /** Read-ahead slots free right now. */
  prefetchRoom(): number {
    return Math.max(0, Math.min(this.maxPrefetch - this.prefetching, this.maxLoads - this.active));
  }

  /**
   * Start fetching blobs in the background, in order, as far as read-ahead slots
   * allow. Returns how many of `ids` are now cached or on their way (a prefix).
   */
  prefetch(ids: readonly string[]): number {
    let i = 0;
    while (i < ids.length) {
      const id = ids[i]!;
      if (this.lru.has(id) || this.inflight.has(id)) {
        i++;
        continue;
      }
      if (this.prefetchRoom() <= 0) break;
      // A run: blobs stored one after another in the same pack, not yet cached.
      const first = this.repo.index.get(id);
      const run = [id];
      if (first && this.maxRunBytes > 0) {
        let end = first.offset + first.length;
        for (let j = i + 1; j < ids.length; j++) {
          const next = this.repo.index.get(ids[j]!);
          // Small gaps (other files' blobs packed in between) are read and skipped.
          if (!next || next.packId !== first.packId || next.offset < end || next.offset - end > MAX_GAP || this.has(ids[j]!)) break;
          if (next.offset + next.length - first.offset > this.maxRunBytes) break;
          run.push(ids[j]!);
          end = next.offset + next.length;
        }
      }
      this.stats.prefetched += run.length;
      for (const p of this.fetch(run, true)) p.catch(() => {});
      i += run.length;
    }
    return i;
  }

  /** One range read for `ids` (consecutive in one pack), then each blob opened. */
  private fetch(ids: string[], prefetch: boolean): Promise<Buffer>[] {
    const locs: BlobLocation[] = [];
    for (const id of ids) {
      const loc = this.repo.index.get(id);
      if (!loc) {
        const p = Promise.reject(new DamagedBlobError(id, 'not in the index (missing from the repository)'));
        p.catch(() => {});
        return [p];
      }
      locs.push(loc);
    }
    const first = locs[0]!;
    const last = locs[locs.length - 1]!;
    const length = last.offset + last.length - first.offset;
    const { openRange, openFileRange } = this;
    // A blob small enough to open on this thread is read the usual way: a worker's round trip costs more.
    const file = openFileRange && (ids.length > 1 || length > this.inlineOpenBytes) ? this.repo.packFile(first.packId) : undefined;
    // Blobs a worker thread opens go straight into regions of the arena, where there is room.
    const places = file || (ids.length > 1 && openRange) ? this.reserve(locs) : undefined;
    const arena = places?.some((p) => p !== null) ? this.arena?.memory : undefined;
    const blobs = (): RangeBlob[] =>
      ids.map((id, k) => ({ type: BlobType.Data, id: hexToId(id), offset: locs[k]!.offset - first.offset, length: locs[k]!.length, ...(places?.[k] ? { into: places[k]! } : {}) }));
    let read: Promise<Buffer> | undefined;
    const readOnce = (): Promise<Buffer> => {
      if (!read) {
        read = this.readRange(ids[0]!, first.packId, first.offset, length, prefetch);
        read.catch(() => {});
      }
      return read;
    };
    const viaRange = ids.length > 1 && openRange ? () => readOnce().then((buf) => openRange(first.packId, buf, blobs(), arena)) : undefined;
    let opened: Promise<OpenedBlob[] | null> | undefined;
    if (file) {
      opened = this.withLoadSlot(prefetch, () => openFileRange!(first.packId, { file, offset: first.offset, length }, blobs(), arena)).then((r) => r ?? viaRange?.() ?? null);
    } else opened = viaRange?.();
    opened?.catch(() => {});
    return ids.map((id, k) => {
      const loc = locs[k]!;
      // The blob's arena region until the cache takes it; given back if it does not.
      let place = places?.[k] ?? undefined;
      const open = async (): Promise<Buffer> => {
        const results = opened && (await opened);
        if (results) {
          const r = results[k]!;
          if (r.placed && place) {
            const plain = this.arena!.view(place.offset, place.length);
            place = undefined;
            return plain;
          }
          if (!r.plain) throw new DamagedBlobError(id, r.error ?? 'cannot be opened', loc.packId);
          return own(r.plain);
        } else {
          // Small enough to open here: read here too if it is cached (no await before this: it runs at once).
          const cached = locs.length === 1 && loc.length <= this.inlineOpenBytes ? this.readCached?.(loc.packId, loc.offset, loc.length) : undefined;
          const buf = cached ?? (await readOnce());
          let sealed = buf;
          if (locs.length > 1) {
            // A piece of its own: the worker pool moves whole ArrayBuffers, but would
            // copy all of a shared one for every view into it.
            sealed = copyToOwnBuffer(buf.subarray(loc.offset - first.offset, loc.offset - first.offset + loc.length));
          }
          // Bytes read here for this blob alone, or copied out of a range, are this thread's
          // to decrypt in place; a range from the storage may be a buffer its cache keeps.
          const openHere = cached || sealed !== buf ? openBlobOwned : openBlob;
          const plain =
            sealed.length <= this.inlineOpenBytes
              ? openHere(this.repo.keys, BlobType.Data, hexToId(id), sealed, loc.packId)
              : await this.repo.opener.open(BlobType.Data, hexToId(id), sealed, loc.packId);
          return own(plain);
        }
      };
      // Runs at once up to its first await (see `cached` above).
      const p = (async () => {
        try {
          return this.keep(id, await open());
        } finally {
          if (place) this.arena!.release(place.offset, place.length);
        }
      })();
      this.inflight.set(id, p);
      const done = () => {
        if (this.inflight.get(id) === p) this.inflight.delete(id);
      };
      p.then(done, done);
      return p;
    });
  }

  /** Put an opened blob in the cache; an arena region the cache did not take is given back. */
  private keep(id: string, plain: Buffer): Buffer {
    this.stats.loaded++;
    this.stats.loadedBytes += plain.length;
    this.lru.set(id, plain);
    if (this.arena?.holds(plain) && this.lru.peek(id) !== plain) this.arena.release(plain.byteOffset, plain.length);
    return plain;
  }

  /**
   * A region of the arena for each blob (its raw length), or null for one that
   * gets a buffer of its own. Room is made by evicting the least recently used
   * blobs, whose regions are free at once.
   */
  private reserve(locs: BlobLocation[]): Array<ArenaRegion | null> | undefined {
    const arena = this.arena;
    if (!arena) return undefined;
    return locs.map((loc) => {
      if (loc.rawLength > this.maxBytes) return null;
      let at = arena.allocRegion(loc.rawLength);
      while (at === undefined && this.lru.size > 0) {
        this.lru.pop();
        at = arena.allocRegion(loc.rawLength);
      }
      return at === undefined ? null : { offset: at.offset, length: loc.rawLength, ...(at.fresh ? { fresh: true } : {}) };
    });
  }

  private readRange(firstId: string, packId: string, offset: number, length: number, prefetch: boolean): Promise<Buffer> {
    return this.withLoadSlot(prefetch, async () => {
      this.stats.rangeReads++;
      try {
        return await this.repo.readPackRange(packId, offset, length, { kind: 'data' });
      } catch (err) {
        throw packReadFailure(err, firstId, packId);
      }
    });
  }

  /** Run one load (a range read, and with a local pack its opening too) in a slot of its lane. */
  private async withLoadSlot<T>(prefetch: boolean, load: () => Promise<T>): Promise<T> {
    if (prefetch) {
      this.prefetching++;
      this.active++;
    } else await this.acquire();
    try {
      return await load();
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
    if (next) next(); // the slot passes straight to a waiting reader
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
