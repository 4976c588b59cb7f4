/**
 * The chunk cache's memory: one SharedArrayBuffer the size of the cache, carved
 * into regions, one per cached blob, that the worker threads decompress into.
 *
 * Why not a fresh buffer per blob: V8 counts every new ArrayBuffer as external
 * memory and starts a full garbage collection for each ~64 MiB of it. The first
 * `cat` of a 256 MiB file through a fresh mount set off seven of them, whose
 * marking of the ~21 MB heap was about a quarter of all CPU samples of the read
 * (docs/MOUNT.md, "Chunk cache memory: the arena"). The arena is one allocation, made
 * once; a region is used again once its blob has left the cache.
 *
 * A region freed here may be handed to a worker thread at once, which writes
 * into it while this thread goes on: a view of a region is only valid while its
 * blob is in the cache, and readers copy out of a view they got from the cache
 * synchronously (BlobCache.peek), never one kept across an await.
 */
export const ARENA_UNIT = 64 * 1024;

interface Extent {
  /** In units. */
  at: number;
  size: number;
}

export class BlobArena {
  readonly memory: SharedArrayBuffer;
  private readonly units: number;
  /** Free extents, sorted by `at`, never adjacent (merged when freed). */
  private readonly free: Extent[];
  private freeUnits: number;

  constructor(bytes: number) {
    this.units = Math.max(1, Math.ceil(bytes / ARENA_UNIT));
    this.memory = new SharedArrayBuffer(this.units * ARENA_UNIT);
    this.free = [{ at: 0, size: this.units }];
    this.freeUnits = this.units;
  }

  get capacity(): number {
    return this.units * ARENA_UNIT;
  }

  get freeBytes(): number {
    return this.freeUnits * ARENA_UNIT;
  }

  /** The byte offset of a region of at least `bytes`, or undefined if no free extent is that large. First fit. */
  alloc(bytes: number): number | undefined {
    const need = Math.max(1, Math.ceil(bytes / ARENA_UNIT));
    for (let i = 0; i < this.free.length; i++) {
      const e = this.free[i]!;
      if (e.size < need) continue;
      const at = e.at;
      if (e.size === need) this.free.splice(i, 1);
      else {
        e.at += need;
        e.size -= need;
      }
      this.freeUnits -= need;
      return at * ARENA_UNIT;
    }
    return undefined;
  }

  /** Give back the region `alloc` returned at `offset` for `bytes`. */
  release(offset: number, bytes: number): void {
    const at = offset / ARENA_UNIT;
    const size = Math.max(1, Math.ceil(bytes / ARENA_UNIT));
    if (!Number.isInteger(at) || at < 0 || at + size > this.units) throw new Error(`arena: no region at ${offset} of ${bytes} bytes`);
    // The first free extent after the region.
    let lo = 0;
    let hi = this.free.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.free[mid]!.at < at) lo = mid + 1;
      else hi = mid;
    }
    const before = this.free[lo - 1];
    const after = this.free[lo];
    if ((before && before.at + before.size > at) || (after && at + size > after.at)) throw new Error(`arena: region at ${offset} released twice`);
    this.freeUnits += size;
    const joinsBefore = before !== undefined && before.at + before.size === at;
    const joinsAfter = after !== undefined && at + size === after.at;
    if (joinsBefore && joinsAfter) {
      before.size += size + after.size;
      this.free.splice(lo, 1);
    } else if (joinsBefore) {
      before.size += size;
    } else if (joinsAfter) {
      after.at = at;
      after.size += size;
    } else {
      this.free.splice(lo, 0, { at, size });
    }
  }

  /** A Buffer over `length` bytes of the region at `offset`. */
  view(offset: number, length: number): Buffer {
    return Buffer.from(this.memory, offset, length);
  }

  /** Whether `b` is a view of this arena. */
  holds(b: Buffer): boolean {
    return b.buffer === this.memory;
  }
}
