import { type Repository } from '../src/repo/repository.js';
import { copyBytes } from '../src/native/copy-bytes.js';
import { type BlobCache } from './blob-cache.js';
import { ReadAhead } from './readahead.js';
import { EIO, type FileNode, FsError } from './types.js';

/**
 * Reads of one open file. The file's blob list comes from its tree entry and the
 * blob sizes from the index; prefix sums turn an offset into a blob by binary
 * search. A read fetches exactly the blobs covering the requested range (through
 * the shared chunk cache) and copies the bytes into the kernel's buffer.
 */
export interface ReadLog {
  (message: string): void;
}

export class OpenFile {
  /** starts[i] = offset of blob i; starts[n] = total length of the known blobs. */
  private readonly starts: Float64Array;
  /** Blobs before this index have a known size; a blob missing from the index ends the readable part. */
  private readonly known: number;
  private readonly readAhead: ReadAhead;
  private reportedMissing = false;

  constructor(
    readonly node: FileNode,
    repo: Repository,
    private readonly cache: BlobCache,
    private readonly log: ReadLog,
    readAheadMax: number,
  ) {
    const ids = node.content;
    this.starts = new Float64Array(ids.length + 1);
    let off = 0;
    let i = 0;
    for (; i < ids.length; i++) {
      const loc = repo.index.get(ids[i]!);
      if (!loc) break;
      this.starts[i] = off;
      off += loc.rawLength;
    }
    this.known = i;
    this.starts[i] = off;
    this.readAhead = new ReadAhead({ max: readAheadMax, min: Math.min(4 * 1024 * 1024, readAheadMax) });
  }

  /** The size reads are served up to: the recorded size, or less if blobs are missing. */
  get size(): number {
    return this.node.size;
  }

  /** Index of the blob holding byte `pos` (pos < starts[known]). */
  private blobAt(pos: number): number {
    let lo = 0;
    let hi = this.known - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.starts[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * Copy up to `len` bytes at `pos` into `out` and return how many: at once when
   * every blob needed is in the cache (the common case for sequential reads),
   * otherwise after fetching what is missing.
   */
  read(out: Buffer, len: number, pos: number): number | Promise<number> {
    const size = this.node.size;
    if (pos >= size || len <= 0) return 0;
    const end = Math.min(size, pos + len);
    if (pos >= this.starts[this.known]!) return this.readAsync(out, len, pos);
    const first = this.blobAt(pos);
    const ids = this.node.content;
    // Fast path: one or two cached blobs, no promises.
    let b = first;
    let copied = 0;
    while (b < this.known && this.starts[b]! < end) {
      const buf = this.cache.peek(ids[b]!);
      if (!buf || buf.length !== this.starts[b + 1]! - this.starts[b]!) return this.readAsync(out, len, pos);
      const from = pos + copied - this.starts[b]!;
      const n = Math.min(buf.length - from, end - (pos + copied));
      copyBytes(buf, out, copied, from, from + n);
      copied += n;
      b++;
    }
    if (copied < end - pos) return this.readAsync(out, len, pos);
    this.prefetch(pos, end - pos);
    return copied;
  }

  private async readAsync(out: Buffer, len: number, pos: number): Promise<number> {
    const size = this.node.size;
    if (pos >= size || len <= 0) return 0;
    const end = Math.min(size, pos + len);
    const knownEnd = this.starts[this.known]!;
    if (pos >= knownEnd) throw this.missing();
    this.prefetch(pos, end - pos);
    const first = this.blobAt(pos);
    const wanted: number[] = [];
    for (let b = first; b < this.known && this.starts[b]! < end; b++) wanted.push(b);
    const ids = this.node.content;
    let bufs: Array<Buffer | undefined> = [];
    for (let round = 0; round < 2; round++) {
      const got = await Promise.all(wanted.map((b) => this.fetch(ids[b]!, round > 0)));
      // A blob in the chunk cache's arena is valid only while it is cached (mount/blob-arena.ts):
      // copy from what the cache holds now, and fetch a copy of any that left it meanwhile.
      bufs = got.map((buf, k) => (this.cache.stable(buf) ? buf : this.cache.peek(ids[wanted[k]!]!)));
      if (bufs.every((b) => b !== undefined)) break;
    }
    let copied = 0;
    for (let k = 0; k < wanted.length; k++) {
      const b = wanted[k]!;
      const buf = bufs[k]!;
      const blobStart = this.starts[b]!;
      const expected = this.starts[b + 1]! - blobStart;
      if (buf.length !== expected) {
        throw new FsError(EIO, `blob ${ids[b]} has ${buf.length} bytes, the index says ${expected}`);
      }
      const from = pos + copied - blobStart;
      const n = Math.min(buf.length - from, end - (pos + copied));
      copyBytes(buf, out, copied, from, from + n);
      copied += n;
    }
    if (copied < end - pos && pos + copied < size) {
      // The blobs end before the recorded size: only possible with a missing blob.
      if (copied === 0) throw this.missing();
    }
    return copied;
  }

  private fetch(id: string, stable = false): Promise<Buffer> {
    return (stable ? this.cache.getStable(id) : this.cache.get(id)).catch((err: unknown) => {
      throw annotate(err, id);
    });
  }

  private missing(): FsError {
    const id = this.node.content[this.known];
    if (!this.reportedMissing) {
      this.reportedMissing = true;
      this.log(`cannot read ${this.node.path}: blob ${id ?? '?'} is not in the index (missing from the repository)`);
    }
    return new FsError(EIO, 'blob missing');
  }

  private prefetch(pos: number, len: number): void {
    const range = this.readAhead.onRead(pos, len, Math.min(this.node.size, this.starts[this.known]!));
    if (!range) return;
    const first = this.blobAt(range.from);
    let last = first;
    while (last < this.known && this.starts[last]! < range.to) last++;
    const started = this.cache.prefetch(this.node.content.slice(first, last));
    // Everything before blob first+started is cached or on its way.
    this.readAhead.requestedTo = this.starts[Math.min(this.known, first + started)]!;
  }
}

/** Attach the blob ID to an error so the log line can name it. */
export class BlobReadError extends Error {
  constructor(readonly blobId: string, override readonly cause: unknown) {
    super((cause as Error)?.message ?? String(cause));
    this.name = 'BlobReadError';
  }
}

function annotate(err: unknown, id: string): unknown {
  if (err instanceof FsError || err instanceof BlobReadError) return err;
  return new BlobReadError(id, err);
}
