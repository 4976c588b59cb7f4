import { type ByteRange, type GetOptions, type ObjectInfo, type PutFileOptions, type PutOptions, type Staging, type Storage, StorageError } from './storage.js';

/**
 * Retries what may succeed later. A call that fails with StorageError('transient')
 * is repeated after an exponentially growing, fully jittered pause (a random time
 * between 0 and min(maxDelay, baseDelay·2^n)), until it succeeds, a permanent error
 * comes back, or the attempts or the time budget run out. The final error keeps the
 * last error's kind and says how many attempts were made over how long.
 *
 * Everything else ('not-found', 'exists', 'permanent', or errors that are not
 * StorageErrors) goes straight to the caller.
 *
 * Two details keep retries honest:
 * - A listing that fails halfway is started again and the names already handed
 *   out are skipped, so a caller never sees a name twice.
 * - A create-if-absent put whose earlier attempt failed in transit may have
 *   landed anyway; when a later attempt then answers 'exists', the stored bytes
 *   are compared with ours and an identical object counts as our success.
 */
export interface RetryOptions {
  /** Most attempts per call, the first included (default 12). */
  maxAttempts?: number;
  /** Time budget per call in ms, from the first attempt: no retry starts after it (default 180 000). */
  maxElapsedMs?: number;
  /** Scale of the first pause in ms (default 200). */
  baseDelayMs?: number;
  /** Cap of any single pause in ms (default 20 000). */
  maxDelayMs?: number;
  /** Told about every retry (progress display, logs). */
  onRetry?: (event: RetryEvent) => void;
  /** For tests: a deterministic source of [0,1) numbers and a clock. */
  random?: () => number;
  now?: () => number;
}

export interface RetryEvent {
  op: string;
  name: string;
  attempt: number;
  delayMs: number;
  error: StorageError;
}

export const RETRY_DEFAULTS = {
  maxAttempts: 12,
  maxElapsedMs: 180_000,
  baseDelayMs: 200,
  maxDelayMs: 20_000,
} as const;

export class RetryingStorage implements Storage {
  readonly location: string;
  private readonly maxAttempts: number;
  private readonly maxElapsedMs: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly random: () => number;
  private readonly now: () => number;

  constructor(
    readonly inner: Storage,
    private readonly options: RetryOptions = {},
  ) {
    this.location = inner.location;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? RETRY_DEFAULTS.maxAttempts);
    this.maxElapsedMs = Math.max(0, options.maxElapsedMs ?? RETRY_DEFAULTS.maxElapsedMs);
    this.baseDelayMs = Math.max(0, options.baseDelayMs ?? RETRY_DEFAULTS.baseDelayMs);
    this.maxDelayMs = Math.max(this.baseDelayMs, options.maxDelayMs ?? RETRY_DEFAULTS.maxDelayMs);
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
  }

  /** Run fn until it succeeds or retrying is pointless. */
  private async run<T>(op: string, name: string, fn: () => Promise<T>): Promise<T> {
    const start = this.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        await this.backoff(err, op, name, attempt, start);
      }
    }
  }

  /**
   * After a failed attempt: rethrow a permanent error, give up when the attempts or
   * the time are spent, otherwise report and wait before the next attempt.
   */
  private async backoff(err: unknown, op: string, name: string, attempt: number, start: number): Promise<void> {
    if (!(err instanceof StorageError) || err.kind !== 'transient') throw err;
    const delay = this.delayFor(attempt);
    if (attempt >= this.maxAttempts || this.now() - start + delay > this.maxElapsedMs) {
      throw gaveUp(err, attempt, this.now() - start);
    }
    this.options.onRetry?.({ op, name, attempt, delayMs: delay, error: err });
    await sleep(delay);
  }

  private delayFor(attempt: number): number {
    const ceiling = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(attempt - 1, 30));
    return Math.floor(this.random() * ceiling);
  }

  async put(name: string, data: Uint8Array, options: PutOptions = {}): Promise<void> {
    let failedInTransit = false;
    await this.run('write', name, async () => {
      try {
        await this.inner.put(name, data, options);
      } catch (err) {
        if (err instanceof StorageError && err.kind === 'transient') failedInTransit = true;
        if (options.ifNotExists && failedInTransit && err instanceof StorageError && err.kind === 'exists') {
          // Did our own earlier attempt land? Then this is success, not a lost race.
          if (await this.holds(name, data)) return;
        }
        throw err;
      }
    });
  }

  /** The file stays in place until a put succeeds, so every attempt sends it whole. */
  async putFile(name: string, file: string, options?: PutFileOptions): Promise<void> {
    await this.run('write', name, () => this.inner.putFile(name, file, options));
  }

  staging(): Promise<Staging> {
    return this.inner.staging();
  }

  private async holds(name: string, data: Uint8Array): Promise<boolean> {
    try {
      const stored = await this.run('read', name, () => this.inner.get(name, undefined, { fresh: true }));
      return Buffer.compare(stored, Buffer.from(data.buffer, data.byteOffset, data.byteLength)) === 0;
    } catch {
      return false;
    }
  }

  get(name: string, range?: ByteRange, options?: GetOptions): Promise<Buffer> {
    return this.run('read', name, () => this.inner.get(name, range, options));
  }

  /** A failed read of the file falls back to `get`, so the retries still apply. */
  localPath(name: string): string | undefined {
    return this.inner.localPath?.(name);
  }

  stat(name: string): Promise<ObjectInfo> {
    return this.run('stat', name, () => this.inner.stat(name));
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const seen = new Set<string>();
    const start = this.now();
    for (let attempt = 1; ; attempt++) {
      try {
        for await (const info of this.inner.list(prefix)) {
          if (seen.has(info.name)) continue;
          seen.add(info.name);
          yield info;
        }
        return;
      } catch (err) {
        await this.backoff(err, 'list', prefix, attempt, start);
      }
    }
  }

  delete(name: string): Promise<void> {
    return this.run('delete', name, () => this.inner.delete(name));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function gaveUp(err: StorageError, attempts: number, elapsedMs: number): StorageError {
  if (attempts === 1) return err;
  const secs = elapsedMs < 10_000 ? (elapsedMs / 1000).toFixed(1) : String(Math.round(elapsedMs / 1000));
  return new StorageError(
    err.kind,
    err.objectName,
    `gave up after ${attempts} attempts over ${secs} s: ${err.message}`,
    { cause: err },
  );
}

function sleep(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}
