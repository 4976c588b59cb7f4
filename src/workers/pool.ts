import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type ChunkerParams } from '../chunker/fastcdc.js';
import { type MasterKeys } from '../crypto/keys.js';
import { type BlobType, DamagedBlobError } from '../repo/blob.js';
import { type CompressionMode } from '../repo/compression.js';
import { type FileIdentity } from './source-file.js';
import { PackEntries } from '../repo/pack-entries.js';
import { type Staging, StorageError } from '../storage/storage.js';
import { type BlobOpener } from '../repo/repository.js';
import { newClaimTable } from './claims.js';
import { peerStateLength } from './protocol.js';
import type { ArenaRegion, ChunkFileResult, ChunkFilesResult, OpenRangeResult, PackFileRange, WirePack, WorkerError, WorkerInit, WorkerRequest, WorkerResponse } from './protocol.js';
import { transferList } from './transfer.js';
import { type RangeBlobWrites, type RangeWriteResult, type RestoreRoot, encodeRangeWrites } from './restored-file.js';

/**
 * A complete pack a worker thread wrote into a staged file, ready to be stored
 * with Storage.putFile, or assembled in memory, for Storage.put (one or the
 * other, never both). The pool removes the file if it is still there once
 * onPack settles (a failed store, a dry run), and hands the memory back to the
 * thread.
 */
export type FinishedPack = {
  packId: string;
  length: number;
  sha256?: string;
  entries: PackEntries;
} & ({ file: string; data?: undefined } | { /** The pack's bytes; valid until onPack settles. */ data: Buffer; file?: undefined });

export class FileReadError extends Error {
  constructor(readonly code: string | undefined, message: string) {
    super(message);
    this.name = 'FileReadError';
  }
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  slot: Slot;
}

interface Slot {
  worker: Worker;
  active: number;
  /** The thread's in-memory pack buffers, by slot number, as it sent them (PackSlots). */
  packMemory: SharedArrayBuffer[];
}

/** A file waiting to join a batch for a worker thread. */
interface QueuedFile {
  path: Uint8Array;
  identity: FileIdentity | undefined;
  size: number;
  compression: CompressionMode;
  resolve(r: ChunkFileResult): void;
  reject(e: unknown): void;
}

type QueuedRequest = { req: WorkerRequest; transfer: ArrayBuffer[]; pending: Omit<Pending, 'slot'> };

// A batch closes at whichever comes first. 64 small files make one message
// instead of 64; a large file travels alone, so batches never hold up big work.
const BATCH_FILES = 64;
const BATCH_BYTES = 4 * 1024 * 1024;

/**
 * A worker's JavaScript makes little garbage (its big buffers are reused or
 * native), but V8 grows each young generation to 48 MiB under load anyway:
 * 8 MiB keeps two threads ~40-80 MiB smaller at no measurable cost.
 */
const WORKER_YOUNG_GENERATION_MB = 8;

export interface PoolOptions {
  keys: MasterKeys;
  chunker: ChunkerParams;
  /** Threads; defaults to the number of cores. */
  size?: number;
  /** Blob IDs already stored, so workers skip sealing them. */
  knownIds?: Iterable<string>;
  /** Tasks given to one thread at once, so it never waits for the next. */
  tasksPerWorker?: number;
  /** Target size of the packs workers assemble (backup). */
  packSize?: number;
  /** Where workers write the packs they assemble (Storage.staging); needed with onPack. */
  staging?: Staging;
  /** Stores a finished pack. */
  onPack?: (pack: FinishedPack) => Promise<void>;
  /** Capacity of the shared table of new chunk IDs (see claims.ts). */
  claimSlots?: number;
}

/** A blob in a range of a pack: where it starts in the range, and its sealed length. */
export interface RangeBlob {
  type: BlobType;
  id: Buffer;
  offset: number;
  length: number;
  /** Open it into this region of the arena the request names, instead of a buffer of its own. */
  into?: ArenaRegion;
}

/** A blob of a range, opened: its plaintext, in the arena region it named (`placed`), or why it could not be opened. */
export interface OpenedBlob {
  plain?: Buffer;
  placed?: true;
  error?: string;
}

/**
 * Threads that do the CPU work: chunking, hashing, compressing, sealing and
 * packing file data for backup, and opening (decrypt, decompress, verify) blobs
 * for restore and mount. The main thread keeps the event loop free for I/O and
 * FUSE requests, and receives whole packs (one transfer each, no copy).
 * At most `size × tasksPerWorker` tasks run; the rest wait in a queue.
 */
export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly queue: QueuedRequest[] = [];
  private readonly packJobs = new Set<Promise<void>>();
  private readonly files: QueuedFile[] = [];
  private filesHead = 0;
  private dispatchScheduled = false;
  private nextTask = 1;
  private closed = false;
  private readonly perWorker: number;
  private fatal: Error | undefined;
  private readonly threads: number;
  private readonly stagingPrefix = `pool-${crypto.randomBytes(6).toString('hex')}-`;
  /** The first error storing a pack; backup stops on it. */
  packFailure: unknown;
  /** Chunks one thread handed to another to seal (see forwardSeal). */
  handedOver = 0;
  /** Of those, chunks the thread took back before the other started on them. */
  takenBack = 0;

  constructor(private readonly opts: PoolOptions) {
    const size = Math.max(1, opts.size ?? os.availableParallelism());
    this.perWorker = opts.tasksPerWorker ?? 2;
    this.threads = size;
  }

  /** Built when the threads start: sorting every known ID is wasted on a backup that reads nothing. */
  private workerInit(): Omit<WorkerInit, 'index'> {
    const { keys, chunker, knownIds, claimSlots, packSize, staging } = this.opts;
    const windowBytes = 2 * chunker.max;
    const { buffer, count } = packKnownIds(knownIds);
    return {
      encryptionKey: keys.encryption,
      idKey: keys.id,
      chunkerSecret: keys.chunker,
      chunker,
      known: buffer,
      knownCount: count,
      claims: newClaimTable(claimSlots ?? 256 * 1024),
      packSize: packSize ?? 16 * 1024 * 1024,
      staging: staging ?? null,
      stagingPrefix: this.stagingPrefix,
      peers: new SharedArrayBuffer(peerStateLength(this.threads) * Int32Array.BYTES_PER_ELEMENT),
      handover: staging ? Array.from({ length: this.threads }, () => new SharedArrayBuffer(windowBytes)) : null,
    };
  }

  /**
   * Threads start on first use: an unchanged backup, which reads no file, never
   * pays for them (each loads the crypto, zstd and chunker modules).
   */
  private ensureWorkers(): void {
    if (this.slots.length > 0 || this.closed) return;
    const init = this.workerInit();
    for (let i = 0; i < this.threads; i++) {
      const worker = new Worker(workerScript(), {
        workerData: { ...init, index: i } satisfies WorkerInit,
        resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
      });
      const slot: Slot = { worker, active: 0, packMemory: [] };
      worker.on('message', (msg: WorkerResponse) => this.onMessage(slot, msg));
      worker.on('error', (err) => this.failAll(err));
      worker.on('exit', (code) => {
        if (!this.closed) this.failAll(new Error(`worker thread exited unexpectedly (code ${code})`));
      });
      worker.unref();
      this.slots.push(slot);
    }
  }

  /** Start the threads now (they load in 50-130 ms) rather than on the first task. */
  start(): void {
    this.ensureWorkers();
  }

  get size(): number {
    return this.threads;
  }

  /**
   * Chunk, hash, seal and pack one file; returns its content list (the file
   * must still be `identity`, the scan's device and inode, if given). Files queue
   * until the end of the current turn of the event loop and then go out in
   * batches (`sizeHint`, the file's size, decides how many fit in one).
   */
  chunkFile(path: Buffer, compression: CompressionMode, sizeHint = 0, identity?: FileIdentity): Promise<ChunkFileResult> {
    const unusable = this.unusable();
    if (unusable) return Promise.reject(unusable);
    return new Promise((resolve, reject) => {
      this.files.push({ path: new Uint8Array(path), identity, size: sizeHint, compression, resolve, reject });
      if (!this.dispatchScheduled) {
        this.dispatchScheduled = true;
        setImmediate(() => {
          this.dispatchScheduled = false;
          this.dispatch();
        });
      }
    });
  }

  /** Decrypt, decompress and verify a blob on a worker thread. `sealed` is moved, not copied, when possible. */
  openBlob(type: BlobType, id: Buffer, sealed: Buffer, packId: string): Promise<Buffer> {
    const req: WorkerRequest = { op: 'open', task: 0, type, id: new Uint8Array(id), sealed, packId };
    return (this.submit(req, transferList(sealed)) as Promise<Uint8Array>).then((u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength));
  }

  /**
   * Open every blob of a buffer read from one pack, on one worker thread; `data`
   * is moved there. Each result is the plaintext or the reason it failed.
   */
  openRange(packId: string, data: Buffer, blobs: RangeBlob[], arena?: SharedArrayBuffer): Promise<OpenedBlob[]> {
    return this.submitOpenRange(packId, data, blobs, transferList(data), arena) as Promise<OpenedBlob[]>;
  }

  /**
   * `openRange` where the thread reads the range from a local pack file itself,
   * into a buffer it reuses. Null when it could not read all of it: the caller
   * then reads the range through the storage (retries, error reports).
   */
  openRangeFromFile(packId: string, source: PackFileRange, blobs: RangeBlob[], arena?: SharedArrayBuffer): Promise<OpenedBlob[] | null> {
    return this.submitOpenRange(packId, source, blobs, [], arena);
  }

  private submitOpenRange(packId: string, data: Buffer | PackFileRange, blobs: RangeBlob[], transfer: ArrayBuffer[], arena?: SharedArrayBuffer): Promise<OpenedBlob[] | null> {
    const req: WorkerRequest = { op: 'open-range', task: 0, packId, data, blobs: blobs.map((b) => ({ ...b, id: new Uint8Array(b.id) })), ...(arena ? { arena } : {}) };
    return (this.submit(req, transfer) as Promise<OpenRangeResult | null>).then(
      (r) =>
        r &&
        r.map((x): OpenedBlob => (x.plain ? { plain: Buffer.from(x.plain.buffer, x.plain.byteOffset, x.plain.byteLength) } : x.placed ? { placed: true } : { error: x.error })),
    );
  }

  /**
   * Restore: open every blob of a buffer read from one pack on one worker thread
   * and let it write each into the files that use it (`data` is moved there).
   */
  writeRange(packId: string, data: Buffer, blobs: RangeBlobWrites[], root: RestoreRoot): Promise<RangeWriteResult> {
    const encoded = encodeRangeWrites(blobs);
    return this.submit({ op: 'write-range', task: 0, packId, data, blobs: encoded, root }, transferList(data, encoded)) as Promise<RangeWriteResult>;
  }

  /**
   * `writeRange` where the thread reads the range from a local pack file itself
   * into a buffer it reuses. Null when it could not read all of it: the caller
   * reads the range through the storage (retries, error reports) and uses
   * `writeRange`.
   */
  writeRangeFromFile(packId: string, source: PackFileRange, blobs: RangeBlobWrites[], root: RestoreRoot): Promise<RangeWriteResult | null> {
    const encoded = encodeRangeWrites(blobs);
    return this.submit({ op: 'write-range', task: 0, packId, data: source, blobs: encoded, root }, transferList(encoded)) as Promise<RangeWriteResult | null>;
  }

  blobOpener(): BlobOpener {
    return { open: (type, id, sealed, packId) => this.openBlob(type, id, sealed, packId) };
  }

  /** Ask every thread to stop the file it is reading (Ctrl-C). */
  abort(): void {
    for (const s of this.slots) s.worker.postMessage({ op: 'abort' } satisfies WorkerRequest);
  }

  /**
   * Have every thread finish its partial pack, and wait until every pack handed
   * over so far is stored. Throws the first storage failure.
   */
  async flushPacks(): Promise<void> {
    await Promise.all(
      this.slots.map(
        (slot) =>
          new Promise((resolve, reject) => {
            const task = this.nextTask++;
            slot.active++;
            slot.worker.ref();
            this.pending.set(task, { resolve, reject, slot });
            slot.worker.postMessage({ op: 'flush', task } satisfies WorkerRequest);
          }),
      ),
    );
    while (this.packJobs.size) await Promise.all([...this.packJobs]);
    if (this.packFailure) throw this.packFailure;
  }

  /** Why no task can be taken (a thread died, or the pool is closed); otherwise starts the threads. */
  private unusable(): Error | undefined {
    if (this.fatal) return this.fatal;
    if (this.closed) return new Error('worker pool is closed');
    this.ensureWorkers();
    return undefined;
  }

  private submit(req: WorkerRequest, transfer: ArrayBuffer[]): Promise<unknown> {
    const unusable = this.unusable();
    if (unusable) return Promise.reject(unusable);
    return new Promise((resolve, reject) => {
      this.queue.push({ req, transfer, pending: { resolve, reject } });
      this.dispatch();
    });
  }

  private freeSlot(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.slots) if (s.active < this.perWorker && (!best || s.active < best.active)) best = s;
    return best;
  }

  private dispatch(): void {
    for (;;) {
      // Find the slot first: files wait in their queue, where later ones can still join the batch.
      const best = this.freeSlot();
      if (!best) return;
      const item = this.queue.shift() ?? (this.filesHead < this.files.length ? this.nextBatch() : undefined);
      if (!item) return;
      const task = this.nextTask++;
      (item.req as { task: number }).task = task;
      best.active++;
      this.pending.set(task, { ...item.pending, slot: best });
      best.worker.ref();
      best.worker.postMessage(item.req, item.transfer);
    }
  }

  /** Take queued files, up to a batch's worth, as one request. */
  private nextBatch(): QueuedRequest {
    const batch: QueuedFile[] = [];
    let bytes = 0;
    const compression = this.files[this.filesHead]!.compression;
    while (this.filesHead < this.files.length && batch.length < BATCH_FILES) {
      const f = this.files[this.filesHead]!;
      if (f.compression !== compression || (batch.length > 0 && bytes + f.size > BATCH_BYTES)) break;
      batch.push(f);
      bytes += f.size;
      this.filesHead++;
    }
    if (this.filesHead === this.files.length || this.filesHead > 1024) {
      this.files.splice(0, this.filesHead);
      this.filesHead = 0;
    }
    const settle = (results: ChunkFilesResult): void => {
      results.forEach((r, i) => {
        if (r.ok) batch[i]!.resolve(r.ok);
        else batch[i]!.reject(rebuildError(r.error));
      });
    };
    const identities = new BigUint64Array(2 * batch.length);
    batch.forEach((f, i) => {
      if (!f.identity) return;
      identities[2 * i] = f.identity.dev;
      identities[2 * i + 1] = f.identity.ino;
    });
    return {
      req: { op: 'chunk', task: 0, paths: batch.map((f) => f.path), identities, compression },
      transfer: [],
      pending: { resolve: (v) => settle(v as ChunkFilesResult), reject: (err) => batch.forEach((f) => f.reject(err)) },
    };
  }

  private onMessage(slot: Slot, msg: WorkerResponse): void {
    if (msg.kind === 'pack') {
      this.receivePack(slot, msg.pack);
      return;
    }
    if (msg.kind === 'seal') {
      this.forwardSeal(slot, msg);
      return;
    }
    if (msg.kind === 'taken-back') {
      this.takenBack++;
      return;
    }
    const p = this.pending.get(msg.task);
    if (!p) return;
    this.pending.delete(msg.task);
    slot.active--;
    if (!this.closed && slot.active === 0 && this.packJobs.size === 0) slot.worker.unref();
    if (msg.kind === 'done') p.resolve(msg.result);
    else p.reject(rebuildError(msg.error));
    this.dispatch();
  }

  /**
   * A chunk one thread hands to another to seal (worker.ts, `offload`). It goes
   * out at once, not through the task queue: it must reach the other thread
   * before any flush this thread's own results can lead to.
   */
  private forwardSeal(from: Slot, msg: Extract<WorkerResponse, { kind: 'seal' }>): void {
    let to: Slot | undefined;
    for (const s of this.slots) if (s !== from && (!to || s.active < to.active)) to = s;
    const req: WorkerRequest = { op: 'seal', compression: msg.compression, from: msg.from, slot: msg.slot, ticket: msg.ticket, offset: msg.offset, length: msg.length };
    this.handedOver++;
    (to ?? from).worker.postMessage(req);
  }

  private receivePack(slot: Slot, wire: WirePack): void {
    const common = {
      packId: wire.packId,
      length: wire.length,
      sha256: wire.sha256,
      entries: new PackEntries(Buffer.from(wire.entries.buffer, wire.entries.byteOffset, wire.entries.byteLength)),
    };
    if (wire.slot !== undefined && wire.memory) slot.packMemory[wire.slot] = wire.memory;
    const memory = wire.slot !== undefined ? slot.packMemory[wire.slot] : undefined;
    const lost = wire.slot !== undefined && (!memory || memory.byteLength < wire.length);
    slot.worker.ref();
    const store = lost
      ? Promise.reject(new Error(`internal error: a worker thread sent pack ${wire.packId} in a slot whose memory it never sent`))
      : this.opts.onPack
        ? this.opts.onPack(memory ? { ...common, data: Buffer.from(memory, 0, wire.length) } : { ...common, file: wire.file! })
        : Promise.resolve();
    const job: Promise<void> = store
      .catch((err) => {
        this.packFailure ??= err;
      })
      .then(() => (wire.file ? fs.promises.rm(wire.file, { force: true }).catch(() => {}) : undefined))
      .then(() => {
        // Tell the thread even after a failure: it must not wait forever. An
        // in-memory pack's slot is free again (storage is done with it).
        if (this.closed) return;
        slot.worker.postMessage({ op: 'pack-stored', ...(wire.slot !== undefined ? { slot: wire.slot } : {}) } satisfies WorkerRequest);
      })
      .then(() => {
        this.packJobs.delete(job);
        if (!this.closed && slot.active === 0 && this.packJobs.size === 0) slot.worker.unref();
      });
    this.packJobs.add(job);
  }

  private failAll(err: Error): void {
    this.fatal ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const q of this.queue.splice(0)) q.pending.reject(err);
    for (const f of this.files.splice(this.filesHead)) f.reject(err);
    this.files.length = 0;
    this.filesHead = 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // An unref'd worker would not keep the event loop alive while we wait for it
    // to exit, and the process could end mid-await (exit code 13). Replies that
    // arrive after this point must not unref it again (see onMessage).
    await Promise.all(
      this.slots.map((s) => {
        s.worker.ref();
        return s.worker.terminate();
      }),
    );
    await this.removeStagedLeftovers();
  }

  /**
   * After a failed or interrupted backup, the packs the threads were still
   * filling (and any not yet stored) would sit in the staging directory for a
   * day, until a later backup removes stale files: on a disk that just filled
   * up, that is space the user needs. After a backup that finished there are none.
   */
  private async removeStagedLeftovers(): Promise<void> {
    const staging = this.opts.staging;
    if (!staging || staging.inMemory || this.slots.length === 0) return;
    const names = await fs.promises.readdir(staging.dir).catch(() => [] as string[]);
    for (const n of names) if (n.startsWith(this.stagingPrefix)) await fs.promises.rm(path.join(staging.dir, n), { force: true }).catch(() => {});
  }
}

function rebuildError(e: WorkerError): Error {
  if (e.damaged) return new DamagedBlobError(e.damaged.blobId, e.damaged.detail, e.damaged.packId);
  if (e.code) return new FileReadError(e.code, e.message);
  // A pack the thread could not write (a full disk): the repository's storage failed, not the code.
  if (e.name === 'PackWriteError') return new StorageError('permanent', '', e.message);
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
    const i = srcPath.lastIndexOf('/src/workers/');
    return new URL(`file://${srcPath.slice(0, i)}/dist/src/workers/worker.js`);
  }
  return here;
}
