import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type ChunkerParams } from '../chunker/fastcdc.js';
import { type MasterKeys } from '../crypto/keys.js';
import { type BlobType, DamagedBlobError } from '../repo/blob.js';
import { type CompressionMode } from '../repo/compression.js';
import { type BlobOpener } from '../repo/repository.js';
import type { ChunkFileResult, WorkerError, WorkerInit, WorkerRequest, WorkerResponse } from './protocol.js';
import { transferList } from './transfer.js';

/** A sealed data blob produced while chunking a file. */
export interface ProducedBlob {
  id: Buffer;
  sealed: Buffer;
  rawLength: number;
}

export class FileReadError extends Error {
  constructor(readonly code: string | undefined, message: string) {
    super(message);
    this.name = 'FileReadError';
  }
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  onBlob?: (blob: ProducedBlob) => Promise<void>;
  worker: Slot;
}

interface Slot {
  worker: Worker;
  active: number;
}

export interface PoolOptions {
  keys: MasterKeys;
  chunker: ChunkerParams;
  /** Threads; defaults to the number of cores. */
  size?: number;
  /** Blob IDs already stored, so workers skip sealing them. */
  knownIds?: Iterable<string>;
  /** Tasks given to one thread at once (overlaps its file reads with its hashing). */
  tasksPerWorker?: number;
}

/**
 * Threads that do the CPU work: chunking, hashing, compressing and sealing file
 * data for backup, and opening (decrypt, decompress, verify) blobs for restore and
 * mount. The main thread keeps the event loop free for I/O and FUSE requests.
 * At most `size × tasksPerWorker` tasks run; the rest wait in a queue, and callers
 * see back-pressure by awaiting.
 */
export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly queue: Array<{ req: WorkerRequest; transfer: ArrayBuffer[]; pending: Omit<Pending, 'worker'> }> = [];
  private nextTask = 1;
  private closed = false;
  private readonly perWorker: number;
  private fatal: Error | undefined;

  constructor(opts: PoolOptions) {
    const size = Math.max(1, opts.size ?? os.availableParallelism());
    this.perWorker = opts.tasksPerWorker ?? 3;
    const { buffer, count } = packKnownIds(opts.knownIds);
    const init: WorkerInit = {
      encryptionKey: opts.keys.encryption,
      idKey: opts.keys.id,
      chunkerSecret: opts.keys.chunker,
      chunker: opts.chunker,
      known: buffer,
      knownCount: count,
    };
    for (let i = 0; i < size; i++) {
      const worker = new Worker(workerScript(), { workerData: init });
      const slot: Slot = { worker, active: 0 };
      worker.on('message', (msg: WorkerResponse) => this.onMessage(slot, msg));
      worker.on('error', (err) => this.failAll(err));
      worker.on('exit', (code) => {
        if (!this.closed) this.failAll(new Error(`worker thread exited unexpectedly (code ${code})`));
      });
      worker.unref();
      this.slots.push(slot);
    }
  }

  get size(): number {
    return this.slots.length;
  }

  /** Chunk, hash and seal one file. New blobs are passed to `onBlob` as they are made. */
  chunkFile(path: Buffer, compression: CompressionMode, onBlob: (blob: ProducedBlob) => Promise<void>): Promise<ChunkFileResult> {
    const req: WorkerRequest = { op: 'chunk', task: 0, path: new Uint8Array(path), compression };
    return this.submit(req, [], onBlob) as Promise<ChunkFileResult>;
  }

  /** Decrypt, decompress and verify a blob on a worker thread. `sealed` is moved, not copied, when possible. */
  openBlob(type: BlobType, id: Buffer, sealed: Buffer, packId: string): Promise<Buffer> {
    const req: WorkerRequest = { op: 'open', task: 0, type, id: new Uint8Array(id), sealed, packId };
    return (this.submit(req, transferList(sealed)) as Promise<Uint8Array>).then((u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength));
  }

  blobOpener(): BlobOpener {
    return { open: (type, id, sealed, packId) => this.openBlob(type, id, sealed, packId) };
  }

  private submit(req: WorkerRequest, transfer: ArrayBuffer[], onBlob?: Pending['onBlob']): Promise<unknown> {
    if (this.fatal) return Promise.reject(this.fatal);
    if (this.closed) return Promise.reject(new Error('worker pool is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ req, transfer, pending: { resolve, reject, onBlob } });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let best: Slot | undefined;
      for (const s of this.slots) if (s.active < this.perWorker && (!best || s.active < best.active)) best = s;
      if (!best) return;
      const item = this.queue.shift()!;
      const task = this.nextTask++;
      (item.req as { task: number }).task = task;
      best.active++;
      this.pending.set(task, { ...item.pending, worker: best });
      best.worker.ref();
      best.worker.postMessage(item.req, item.transfer);
    }
  }

  private onMessage(slot: Slot, msg: WorkerResponse): void {
    const p = this.pending.get(msg.task);
    if (!p) return;
    if (msg.kind === 'blob') {
      const blob: ProducedBlob = {
        id: Buffer.from(msg.id.buffer, msg.id.byteOffset, msg.id.byteLength),
        sealed: Buffer.from(msg.sealed.buffer, msg.sealed.byteOffset, msg.sealed.byteLength),
        rawLength: msg.rawLength,
      };
      const bytes = blob.sealed.length;
      const ack = () => slot.worker.postMessage({ op: 'ack', bytes } satisfies WorkerRequest);
      (p.onBlob ? p.onBlob(blob) : Promise.resolve()).then(ack, (err) => {
        ack();
        p.reject(err);
      });
      return;
    }
    this.pending.delete(msg.task);
    slot.active--;
    if (slot.active === 0) slot.worker.unref();
    if (msg.kind === 'done') p.resolve(msg.result);
    else p.reject(rebuildError(msg.error));
    this.dispatch();
  }

  private failAll(err: Error): void {
    this.fatal ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const q of this.queue.splice(0)) q.pending.reject(err);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // An unref'd worker would not keep the event loop alive while we wait for it
    // to exit, and the process could end mid-await (exit code 13).
    await Promise.all(
      this.slots.map((s) => {
        s.worker.ref();
        return s.worker.terminate();
      }),
    );
  }
}

function rebuildError(e: WorkerError): Error {
  if (e.name === 'DamagedBlobError') {
    const err = new Error(e.message);
    err.name = 'DamagedBlobError';
    Object.setPrototypeOf(err, DamagedBlobError.prototype);
    return err;
  }
  if (e.code) return new FileReadError(e.code, e.message);
  return new Error(e.message);
}

/** Sort known IDs into a shared buffer the workers binary-search. */
function packKnownIds(ids: Iterable<string> | undefined): { buffer: SharedArrayBuffer | null; count: number } {
  if (!ids) return { buffer: null, count: 0 };
  const list = Array.from(ids).sort();
  if (list.length === 0) return { buffer: null, count: 0 };
  const buffer = new SharedArrayBuffer(list.length * 32);
  const view = Buffer.from(buffer);
  list.forEach((hex, i) => view.write(hex, i * 32, 'hex'));
  return { buffer, count: list.length };
}

/**
 * The compiled worker script. Under vitest this module runs from src/*.ts, but a
 * worker thread needs JavaScript, so it points at the build in dist/.
 */
function workerScript(): URL {
  const here = new URL('./worker.js', import.meta.url);
  if (import.meta.url.endsWith('.ts')) {
    const srcPath = fileURLToPath(new URL('./worker.ts', import.meta.url));
    const marker = `${'/src/workers/'}`;
    const i = srcPath.lastIndexOf(marker);
    return new URL(`file://${srcPath.slice(0, i)}/dist/src/workers/worker.js`);
  }
  return here;
}
