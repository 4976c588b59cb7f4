/**
 * Read-ahead for one open file. When reads walk forward (the kernel's own
 * read-ahead sends several requests at once, so "forward" allows a little
 * disorder), the window of bytes to fetch before they are asked for doubles from
 * `min` up to `max`, like the kernel's. A read elsewhere resets it: random
 * access (pread at scattered offsets) fetches only what it reads.
 */
export interface ReadAheadOptions {
  /** First window after a sequential start (default 4 MiB). */
  min?: number;
  /** Largest window (default 32 MiB). */
  max?: number;
  /** How far out of order a read may be and still count as sequential (default 2 MiB). */
  slack?: number;
}

export class ReadAhead {
  private readonly min: number;
  private readonly max: number;
  private readonly slack: number;
  private frontier = -1;
  private window = 0;
  /** How far read-ahead has already been asked for (bytes); callers keep it up to date. */
  requestedTo = 0;

  constructor(opts: ReadAheadOptions = {}) {
    this.min = Math.max(1, opts.min ?? 4 * 1024 * 1024);
    this.max = Math.max(this.min, opts.max ?? 32 * 1024 * 1024);
    this.slack = opts.slack ?? 2 * 1024 * 1024;
  }

  /**
   * Record a read of [pos, pos+len) and return the byte range that should be in
   * the cache ahead of the reader, or undefined when the access is not sequential.
   */
  onRead(pos: number, len: number, fileSize: number): { from: number; to: number } | undefined {
    const end = pos + len;
    const sequential = this.frontier < 0 ? pos === 0 : pos >= this.frontier - this.slack && pos <= this.frontier + this.slack;
    if (!sequential) {
      this.window = 0;
      this.frontier = end;
      this.requestedTo = 0;
      return undefined;
    }
    this.frontier = Math.max(this.frontier, end);
    const ahead = this.requestedTo - this.frontier;
    // Like the kernel's async read-ahead: ask for more only when less than half
    // a window is left ahead of the reader, then a whole batch at once (so that
    // neighbouring blobs can share one range read).
    if (this.window > 0 && ahead >= this.window / 2) return undefined;
    this.window = this.window === 0 ? this.min : Math.min(this.max, this.window * 2);
    const from = Math.max(this.frontier, this.requestedTo);
    const to = Math.min(fileSize, this.frontier + this.window);
    if (from >= to) return undefined;
    return { from, to };
  }
}
