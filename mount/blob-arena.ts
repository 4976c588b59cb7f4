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
 *
 * Freed regions stay resident for the next blobs (streaming a file through a
 * full cache frees and reuses regions as it goes: no page faults), up to a
 * sixteenth of the arena (at least 16 MiB); beyond that, a freed region's pages go
 * back to the system (`discard`). Without that, memory once used by the arena
 * stayed resident after small blobs, kept in buffers of their own, had pushed
 * its blobs out: RSS after reading every file of the bench tree was 517 MiB
 * against 462 MiB before the arena.
 */
import { nativeSyscalls } from '../src/native/syscalls.js';

export const ARENA_UNIT = 64 * 1024;
/** Free arena memory kept resident for the next blobs: at least this, or a sixteenth of the arena. */
const KEEP_RESIDENT_MIN = 16 * 1024 * 1024;

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
  /** Per unit: 1 if its pages may be resident (used since the last discard). */
  private readonly resident: Uint8Array;
  /** Free units that may be resident. */
  private residentFree = 0;
  private readonly keepResidentUnits: number;

  /**
   * `discard` hands pages back to the system (the native addon's); without it
   * freed memory stays resident. `keepResident`: free bytes kept resident.
   */
  constructor(
    bytes: number,
    private readonly discard: ((bytes: Uint8Array) => unknown) | undefined = nativeSyscalls()?.discard,
    keepResident?: number,
  ) {
    this.units = Math.max(1, Math.ceil(bytes / ARENA_UNIT));
    this.memory = new SharedArrayBuffer(this.units * ARENA_UNIT);
    this.free = [{ at: 0, size: this.units }];
    this.freeUnits = this.units;
    this.resident = new Uint8Array(this.units);
    this.keepResidentUnits = keepResident !== undefined ? Math.floor(keepResident / ARENA_UNIT) : Math.max(Math.ceil(KEEP_RESIDENT_MIN / ARENA_UNIT), this.units >> 4);
  }

  /** Bytes of free regions that may still be resident (for tests and the debug log). */
  get residentFreeBytes(): number {
    return this.residentFree * ARENA_UNIT;
  }

  get capacity(): number {
    return this.units * ARENA_UNIT;
  }

  get freeBytes(): number {
    return this.freeUnits * ARENA_UNIT;
  }

  /**
   * The byte offset of a region of at least `bytes` (first fit), or undefined if
   * no free extent is that large; and whether any of its pages was never used
   * or has been discarded since: its writer faults those in with one system
   * call (the addon's `prefault`) instead of one fault per page, about half the
   * cost (src/native/own-buffer.ts).
   */
  allocRegion(bytes: number): { offset: number; fresh: boolean } | undefined {
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
      let fresh = false;
      for (let u = at; u < at + need; u++) {
        if (this.resident[u]) this.residentFree--;
        else {
          this.resident[u] = 1;
          fresh = true;
        }
      }
      return { offset: at * ARENA_UNIT, fresh };
    }
    return undefined;
  }

  /** Give back the region `allocRegion` returned at `offset` for `bytes`. */
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
    if (this.discard && this.residentFree + size > this.keepResidentUnits) {
      this.discard(new Uint8Array(this.memory, at * ARENA_UNIT, size * ARENA_UNIT));
      this.resident.fill(0, at, at + size);
    } else {
      this.residentFree += size;
    }
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
