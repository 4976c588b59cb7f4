import { promises as fsp, writeFileSync } from 'node:fs';
import { type ByteRange, type GetOptions, type ObjectInfo, type PutFileOptions, type PutOptions, type Staging, type Storage } from './storage.js';

/**
 * Counts the calls that reach the storage below it. openStorage() puts it right on
 * top of the backend, so for S3 every count is one HTTP request, except a listing:
 * it is counted once (`list`) but costs one request per 1000 names. Tests and
 * `npm run bench` use it to prove that cached reads make no network request.
 *
 * In-process: pass a RequestCounter as `countRequests` to openStorage().
 * From outside a process: set AEGIS_COUNT_REQUESTS=/path/file.json; the process
 * writes its totals there as JSON when its storage is closed (and at exit).
 */
export type CountedOp = 'get' | 'put' | 'stat' | 'list' | 'delete';

export interface RequestCounts {
  get: number;
  put: number;
  stat: number;
  list: number;
  delete: number;
  /** Names the listings returned. */
  listed: number;
  bytesRead: number;
  bytesWritten: number;
  total: number;
}

export class RequestCounter {
  private counts: RequestCounts = emptyCounts();

  add(op: CountedOp, n = 1): void {
    this.counts[op] += n;
    this.counts.total += n;
  }

  addBytes(read: number, written: number): void {
    this.counts.bytesRead += read;
    this.counts.bytesWritten += written;
  }

  addListed(n: number): void {
    this.counts.listed += n;
  }

  /** A copy of the counts so far. */
  snapshot(): RequestCounts {
    return { ...this.counts };
  }

  get total(): number {
    return this.counts.total;
  }

  reset(): void {
    this.counts = emptyCounts();
  }
}

function emptyCounts(): RequestCounts {
  return { get: 0, put: 0, stat: 0, list: 0, delete: 0, listed: 0, bytesRead: 0, bytesWritten: 0, total: 0 };
}

export class CountingStorage implements Storage {
  readonly location: string;

  constructor(
    readonly inner: Storage,
    readonly counter: RequestCounter,
    private readonly onClose?: () => void,
  ) {
    this.location = inner.location;
  }

  async put(name: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    this.counter.add('put');
    this.counter.addBytes(0, data.byteLength);
    await this.inner.put(name, data, options);
  }

  async putFile(name: string, file: string, options?: PutFileOptions): Promise<void> {
    this.counter.add('put');
    this.counter.addBytes(0, (await fsp.stat(file).catch(() => ({ size: 0 }))).size);
    await this.inner.putFile(name, file, options);
  }

  staging(): Promise<Staging> {
    return this.inner.staging();
  }

  async get(name: string, range?: ByteRange, options?: GetOptions): Promise<Buffer> {
    this.counter.add('get');
    const data = await this.inner.get(name, range, options);
    this.counter.addBytes(data.length, 0);
    return data;
  }

  stat(name: string): Promise<ObjectInfo> {
    this.counter.add('stat');
    return this.inner.stat(name);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.counter.add('list');
    for await (const info of this.inner.list(prefix)) {
      this.counter.addListed(1);
      yield info;
    }
  }

  delete(name: string): Promise<void> {
    this.counter.add('delete');
    return this.inner.delete(name);
  }

  async close(): Promise<void> {
    try {
      await this.inner.close();
    } finally {
      this.onClose?.();
    }
  }
}

/** The process-wide counter behind AEGIS_COUNT_REQUESTS, created on first use. */
let envCounter: { counter: RequestCounter; file: string } | undefined;

export function counterFromEnv(env: NodeJS.ProcessEnv = process.env): { counter: RequestCounter; flush: () => void } | undefined {
  const file = env.AEGIS_COUNT_REQUESTS;
  if (!file) return undefined;
  if (!envCounter || envCounter.file !== file) {
    const state = { counter: new RequestCounter(), file };
    envCounter = state;
    process.once('exit', () => flushTo(state.file, state.counter));
  }
  const state = envCounter;
  return { counter: state.counter, flush: () => flushTo(state.file, state.counter) };
}

function flushTo(file: string, counter: RequestCounter): void {
  try {
    writeFileSync(file, JSON.stringify(counter.snapshot()) + '\n');
  } catch {
    // Diagnostics only: never fail the operation over it.
  }
}
