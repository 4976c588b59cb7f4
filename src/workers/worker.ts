import { parentPort, workerData } from 'node:worker_threads';
import crypto from 'node:crypto';
import fs, { constants as fsc } from 'node:fs';
import path from 'node:path';
import { Chunker } from '../chunker/fastcdc.js';
import { gearTable } from '../chunker/gear.js';
import { ID_BYTES, keyedId } from '../crypto/ids.js';
import { type MasterKeys } from '../crypto/keys.js';
import { BlobType, DamagedBlobError, blobPayload, openBlobInto, openBlobOwned, sealBlobInto } from '../repo/blob.js';
import { newPackId, packTrailer } from '../repo/pack.js';
import { Claims } from './claims.js';
import { type CompressionMode } from '../repo/compression.js';
import { HANDOVER_ID_WORDS, HANDOVER_SLOTS } from './protocol.js';
import type { ChunkFilesRequest, ChunkFilesResult, ChunkFileResult, OpenBlobRequest, OpenRangeRequest, OpenRangeResult, PackFileRange, WorkerError, WorkerInit, WorkerRequest, WorkerResponse } from './protocol.js';
import { PackEntriesBuilder } from '../repo/pack-entries.js';
import { copyToOwnBuffer, transferList } from './transfer.js';
import { PackFile, PackWriteError, WriteBuffers, appendTo } from './pack-file.js';
import { type FileIdentity, SourceFile, prefetch } from './source-file.js';
import { PackBuffer, PackSlots } from './pack-buffer.js';
import { decodeRangeWrites, writeRangeBlobs } from './restored-file.js';
import { copyBytes } from '../native/copy-bytes.js';
import { faultIn } from '../native/own-buffer.js';

const init = workerData as WorkerInit;
const keys: MasterKeys = {
  encryption: Buffer.from(init.encryptionKey),
  id: Buffer.from(init.idKey),
  chunker: Buffer.from(init.chunkerSecret),
};
const chunker = new Chunker(gearTable(keys.chunker), init.chunker);
const known = init.known ? new Uint8Array(init.known) : null;
const claims = new Claims(init.claims);

/**
 * A large file is cut by one thread (the cut points depend on everything before
 * them), but hashing, compressing and encrypting its chunks need not wait for
 * that thread: while another thread has little queued, up to HANDOVER_SLOTS
 * new chunks at a time go to it, and it hashes them, and seals into its own
 * pack those not stored yet. Without this, the last large file of a backup kept
 * one core busy and the other idle (a 256 MiB image: about 0.8 s). Hashing
 * goes with the chunk because reading and cutting alone already keep the
 * cutting thread as busy as the other: for 1 GiB of random data, reading took
 * ~220 ms, cutting ~190 ms, keyed hashing ~220 ms and encrypting ~300 ms.
 *
 * Nothing is copied: each thread reads files into a window in shared memory
 * (WorkerInit.handover), and a chunk handed over is only its place in that
 * window. Before the window is written again, the thread takes back what no
 * other thread has started on and does it itself, and waits for what one has
 * (work that has started depends on no other thread, so nothing waits in a
 * circle). Copying each chunk out had cost the cutting thread about as much as
 * sealing it (memory runs at ~3 GB/s here): backing up the 256 MiB image alone,
 * 72–100 ms of that thread's ~380 ms.
 *
 * A slot in `peers` is FREE (0), holds the ticket of the chunk handed over
 * through it (positive, new for every handover), minus that ticket while the
 * other thread works on it, or TAKEN while its owner does it after all. A
 * message names its ticket, so one that arrives after its chunk was taken back
 * (and the slot handed a different chunk) matches nothing and is dropped. The
 * other thread writes the chunk's ID into the slot's ID words before it frees
 * the slot, and its owner reads it from there; an ID left all zeros means the
 * hashing failed.
 */
const peers = new Int32Array(init.peers);
const threads = init.handover?.length ?? 0;
const OFFLOAD_MIN = 256 * 1024;
const FREE = 0;
const TAKEN = 0x7fffffff;
/** Where thread `t`'s slots start in `peers`. */
const slotsOf = (t: number): number => threads + t * HANDOVER_SLOTS;
/** The ID words of thread `t`'s slot (shared memory: the same bytes in every thread). */
const idWordsOf = (t: number, slot: number): Buffer =>
  Buffer.from(init.peers, (threads + threads * HANDOVER_SLOTS + (t * HANDOVER_SLOTS + slot) * HANDOVER_ID_WORDS) * 4, ID_BYTES);
const windows = init.handover?.map((b) => Buffer.from(b)) ?? [];
/** A chunk of this thread's window handed over, and where its ID goes in its file's content list. */
interface Handed {
  ticket: number;
  offset: number;
  length: number;
  compression: CompressionMode;
  content: string[];
  index: number;
}
/** What each of this thread's slots holds while handed over (or done and not yet read back). */
const handed: Array<Handed | undefined> = new Array(HANDOVER_SLOTS);
let lastTicket = 0;
let depth = 0;

function busy(): void {
  depth++;
  if (threads > 0) Atomics.store(peers, init.index, depth);
}

function done(): void {
  depth--;
  if (threads > 0) Atomics.store(peers, init.index, depth);
}

/**
 * Some other thread has at most one thing to do: what is handed to it now is
 * next in its queue, so it never waits for this thread between chunks (handing
 * over only to a thread with nothing queued left it idle half the time).
 */
function peerHasRoom(): boolean {
  for (let i = 0; i < threads; i++) if (i !== init.index && Atomics.load(peers, i) <= 1) return true;
  return false;
}

/** Hash a new chunk, and seal it unless it is stored or claimed by another thread already. */
async function storeChunk(chunk: Buffer, compression: CompressionMode): Promise<Buffer> {
  const id = keyedId(keys.id, chunk);
  await sealIfNew(id, chunk, compression);
  return id;
}

/** Seal chunk `id` into this thread's pack unless the repository has it or another thread claimed it. */
async function sealIfNew(id: Buffer, chunk: Buffer, compression: CompressionMode): Promise<void> {
  if (!isKnown(id) && claims.claim(id)) await addToPack(BlobType.Data, id, chunk, compression);
}

/**
 * Hand the chunk at `content[index]` (bytes [offset, offset + length) of this
 * thread's window) to another thread; false if none has room or no slot is
 * free (the caller does it).
 */
function offload(offset: number, length: number, compression: CompressionMode, content: string[], index: number): boolean {
  if (threads < 2 || length < OFFLOAD_MIN || !peerHasRoom()) return false;
  const first = slotsOf(init.index);
  let slot = 0;
  for (; slot < HANDOVER_SLOTS; slot++) {
    if (Atomics.load(peers, first + slot) !== FREE) continue;
    if (handed[slot]) readBack(slot);
    break;
  }
  if (slot === HANDOVER_SLOTS) return false;
  const ticket = (lastTicket = lastTicket >= TAKEN - 1 ? 1 : lastTicket + 1);
  handed[slot] = { ticket, offset, length, compression, content, index };
  Atomics.store(peers, first + slot, ticket);
  post({ task: 0, kind: 'seal', compression, from: init.index, slot, ticket, offset, length });
  return true;
}

/** The ID another thread found for the chunk it took from `slot` (which it has freed), into its content list. */
function readBack(slot: number): void {
  const h = handed[slot]!;
  handed[slot] = undefined;
  const id = idWordsOf(init.index, slot);
  if (id.every((b) => b === 0)) throw new Error('a chunk handed to another thread was not hashed');
  h.content[h.index] = id.toString('hex');
}

/** Whether any chunk of this thread's window is handed over (else takeBack has nothing to do). */
function anyHandedOver(): boolean {
  for (let slot = 0; slot < HANDOVER_SLOTS; slot++) if (handed[slot]) return true;
  return false;
}

/**
 * Before this thread's window is written again: do here what no other thread
 * has started on, wait for what one has, and read back every chunk's ID.
 */
async function takeBack(): Promise<void> {
  const first = slotsOf(init.index);
  for (let slot = 0; slot < HANDOVER_SLOTS; slot++) {
    const at = first + slot;
    const h = handed[slot];
    if (!h) continue;
    if (Atomics.compareExchange(peers, at, h.ticket, TAKEN) === h.ticket) {
      handed[slot] = undefined;
      post({ task: 0, kind: 'taken-back' });
      try {
        const id = await storeChunk(windows[init.index]!.subarray(h.offset, h.offset + h.length), h.compression);
        h.content[h.index] = id.toString('hex');
      } finally {
        Atomics.store(peers, at, FREE);
      }
      continue;
    }
    // Under way (or done already): the other thread finishes without needing this one.
    while (Atomics.load(peers, at) === -h.ticket) Atomics.wait(peers, at, -h.ticket);
    readBack(slot);
  }
}

/** A chunk handed to this thread: hashed and sealed unless its owner took it back first. */
async function sealHandedOver(msg: Extract<WorkerRequest, { op: 'seal' }>): Promise<void> {
  const at = slotsOf(msg.from) + msg.slot;
  if (Atomics.compareExchange(peers, at, msg.ticket, -msg.ticket) !== msg.ticket) return;
  const idWords = idWordsOf(msg.from, msg.slot);
  try {
    idWords.fill(0);
    const chunk = windows[msg.from]!.subarray(msg.offset, msg.offset + msg.length);
    // The ID goes back before sealing: the owner needs it whether or not sealing fails.
    const id = keyedId(keys.id, chunk);
    id.copy(idWords);
    await sealIfNew(id, chunk, msg.compression);
  } finally {
    Atomics.store(peers, at, FREE);
    Atomics.notify(peers, at);
  }
}

function post(msg: WorkerResponse, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(msg, transfer);
}

function isKnown(id: Buffer): boolean {
  if (!known) return false;
  let lo = 0;
  let hi = init.knownCount - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = Buffer.compare(id, known.subarray(mid * 32, mid * 32 + 32));
    if (c === 0) return true;
    if (c < 0) hi = mid - 1;
    else lo = mid + 1;
  }
  return false;
}

/**
 * This thread's pack under construction lives in a file in the staging
 * directory (Storage.staging) for the local backend: sealed blobs gather in a
 * small write buffer and are appended to it, the finished pack goes to the main
 * thread by name and is renamed into the repository, so pack bytes are written
 * once and never held whole in memory. For a backend that uploads (S3) the
 * pack is assembled in memory instead (PackBuffer), in shared memory the main
 * thread uploads from (PackSlots). At most MAX_PACKS_OUT finished packs per
 * thread wait for storage, which bounds the staging directory, or the memory.
 */
const MAX_PACKS_OUT = 2;
const WRITE_BUFFER = 1024 * 1024;
/** Room past the target size of an in-memory pack: its last blob and the trailer, usually. */
const PACK_BUFFER_SLACK = 2 * 1024 * 1024;

interface OpenPack {
  packId: string;
  out: PackFile | PackBuffer;
  /** The PackSlots slot of an in-memory pack. */
  slot?: number;
  blobs: PackEntriesBuilder;
}

let pack: OpenPack | undefined;
/** This thread's write buffers, reused from pack to pack; they grow to the largest sealed blob. */
let writeBuffers: WriteBuffers | undefined;
/** This thread's in-memory pack buffers, made when the first pack is opened. */
let packSlots: PackSlots | undefined;
let packsOut = 0;
/** Sealing a chunk another thread handed over failed (see 'seal' below). */
let sealFailure: unknown;
let packWaiters: Array<() => void> = [];

function openPack(): OpenPack {
  const packId = newPackId();
  const { staging } = init;
  if (!staging) throw new Error('internal error: this worker pool was not given a way to stage packs');
  const hash = staging.sha256 ? crypto.createHash('sha256') : undefined;
  if (staging.inMemory) {
    const { slot, buf } = (packSlots ??= new PackSlots(init.packSize, PACK_BUFFER_SLACK)).take();
    return { packId, out: new PackBuffer(buf, hash), slot, blobs: new PackEntriesBuilder() };
  }
  writeBuffers ??= WriteBuffers.create(WRITE_BUFFER);
  return { packId, out: new PackFile(path.join(staging.dir, `${init.stagingPrefix}${packId}`), writeBuffers, staging.direct ?? false, hash), blobs: new PackEntriesBuilder() };
}

/** Compress and seal a new data blob and append it to this thread's pack. */
async function addToPack(type: BlobType, id: Buffer, plaintext: Uint8Array, compression: CompressionMode): Promise<void> {
  // `payload` may lie in the compressor's scratch buffer; it survives the await for
  // room because this thread's addToPack calls run one at a time (see `queue`).
  const { codec, payload, sealedLength } = blobPayload(plaintext, compression);
  const p = (pack ??= openPack());
  const offset = p.out.length;
  const { buf, at } = await p.out.room(sealedLength);
  const length = sealBlobInto(buf, at, keys, type, id, codec, payload);
  p.out.advance(length);
  p.blobs.push(type, id, offset, length, plaintext.length);
  if (p.out.length >= init.packSize) await emitPack();
}

async function emitPack(): Promise<void> {
  if (sealFailure) throw sealFailure;
  const p = pack;
  if (!p) return;
  pack = undefined;
  let length: number;
  const entries = p.blobs.finish();
  try {
    await appendTo(p.out, packTrailer(keys, p.packId, entries));
    length = await p.out.finish();
  } catch (err) {
    await p.out.abort();
    if (p.slot !== undefined) packSlots!.release(p.slot);
    throw err;
  }
  packsOut++;
  // The entries' ArrayBuffer is their own (PackEntriesBuilder.finish): moved, not copied.
  const wire = { packId: p.packId, length, sha256: p.out.sha256(), entries: entries.bytes };
  const transfer = [entries.bytes.buffer as ArrayBuffer];
  if (p.out instanceof PackBuffer) {
    const slot = p.slot!;
    const memory = packSlots!.emit(slot, p.out.buffer);
    post({ task: 0, kind: 'pack', pack: { ...wire, slot, ...(memory ? { memory } : {}) } }, transfer);
  } else {
    post({ task: 0, kind: 'pack', pack: { ...wire, file: p.out.file } }, transfer);
  }
  while (packsOut >= MAX_PACKS_OUT) await new Promise<void>((r) => packWaiters.push(r));
}

/**
 * One read window per thread, reused for every file: files are processed one at
 * a time here (see `queue` below), and a fresh 16 MiB buffer per file would cost
 * page faults and garbage collection.
 */
let window: Buffer | undefined;

/**
 * Reads use synchronous calls: this thread exists to do this work, and the
 * promise-based calls would queue on libuv's small shared thread pool behind
 * the main thread's directory scan (measured: seconds of waiting per GiB).
 */
/**
 * The files of one batch, in order; one file's failure is its own result, not
 * the batch's. The first file that had to be read from the disk has the rest of
 * the batch read ahead (prefetch): from a cold page cache the bench tree's
 * small files took 2.6–3.1 s instead of 4.4–4.5 s (docs/DECISIONS.md).
 */
async function chunkFiles(req: ChunkFilesRequest): Promise<ChunkFilesResult> {
  if (sealFailure) throw sealFailure;
  const out: ChunkFilesResult = [];
  let prefetched = false;
  for (const [i, path] of req.paths.entries()) {
    const dev = req.identities[2 * i]!;
    const ino = req.identities[2 * i + 1]!;
    try {
      const { result, cold } = await chunkFile(path, req.compression, dev === 0n && ino === 0n ? undefined : { dev, ino });
      if (cold && !prefetched) {
        prefetched = true;
        prefetch(req.paths, i + 1);
      }
      out.push({ ok: result });
    } catch (err) {
      if (err instanceof PackWriteError) throw err;
      out.push({ error: describe(err) });
    }
  }
  return out;
}

/** Move the window's bytes [start, end) to its front. */
function shiftDown(buf: Buffer, start: number, end: number): void {
  copyBytes(buf, buf, 0, start, end);
}

/** A file's content list, and whether its first read waited for the disk. */
async function chunkFile(path: Uint8Array, compression: CompressionMode, identity: FileIdentity | undefined): Promise<{ result: ChunkFileResult; cold: boolean }> {
  if (aborting) throw new Error('aborted');
  const { max } = chunker.params;
  window ??= windows[init.index] ?? Buffer.allocUnsafe(2 * max);
  const buf = window;
  const opened = SourceFile.open(Buffer.from(path.buffer, path.byteOffset, path.byteLength), buf.subarray(0, max), 0, identity);
  const file = opened.file;
  try {
    let start = 0;
    let end = opened.read;
    let read = end;
    // A read that ends short exactly at the size fstat gave is at the end of
    // the file: no second read just to be told so (one system call of six
    // for each small file). Had the file grown meanwhile, the fstat after
    // reading shows it, and the file is noted as changed.
    const atEnd = (n: number, want: number): boolean => n === 0 || (n < want && read === file.size);
    let eof = atEnd(end, max);
    // Each pass reads one maximum chunk past what the pass before carried to
    // the front (an unfinished chunk, under `max`), not up to the window's
    // end: the pages touched are then mostly what the chunks being cut need.
    // Filling the whole window each pass kept all of it resident: bench tree,
    // four alternating runs, peak RSS 248-265 MiB against 259-275 MiB, wall
    // time the same (2.54-2.86 s against 2.48-2.77 s).
    let carried = 0;
    let size = 0;
    const content: string[] = [];
    while (!eof || start < end) {
      const fillTo = Math.min(buf.length, carried + max);
      while (!eof && end < fillTo) {
        const want = fillTo - end;
        const n = file.read(buf.subarray(0, fillTo), end);
        end += n;
        read += n;
        if (atEnd(n, want)) eof = true;
      }
      // Cut as far as the window goes: a cut point found before the data runs
      // out is where it would be with more data (the scan stops at the first),
      // so only the last, unfinished chunk waits for the next read. Stopping
      // once fewer than `max` bytes were left had moved ~7.5 MiB to the
      // window's front for every 8 MiB cut, and doubled the passes.
      while (start < end) {
        if (aborting) throw new Error('aborted');
        const n = chunker.cut(buf, start, end);
        if (n === end - start && n < max && !eof) break;
        // A chunk handed over gets its ID in takeBack, before this window is written again.
        if (offload(start, n, compression, content, content.length)) content.push('');
        else content.push((await storeChunk(buf.subarray(start, start + n), compression)).toString('hex'));
        size += n;
        start += n;
      }
      // Checked first: an await per small file is a turn of the event loop for nothing.
      if (anyHandedOver()) await takeBack();
      if (start > 0 && start < end) shiftDown(buf, start, end);
      end -= start;
      start = 0;
      carried = end;
    }
    if (content.includes('')) throw new Error('a chunk handed to another thread has no ID');
    return { result: { content, size, changed: file.finish(size) }, cold: opened.cold };
  } finally {
    // The next file reads into the window; after a failure, what was handed over is still sealed.
    try {
      if (anyHandedOver()) await takeBack();
    } finally {
      file.close();
    }
  }
}

/**
 * Restore and the mount: one buffer, reused, that this thread reads ranges of
 * local packs into. Reading here rather than on libuv's pool for the main
 * thread saves a fresh 8 MiB buffer per range (page faults, zeroing, unmapping: ~0.6 s of CPU
 * on the pool's threads for the 1 GiB bench tree) and its transfer.
 */
let rangeBuf = Buffer.allocUnsafe(0);

/** A range of a local pack file, or null if it cannot all be read (the main thread then reads it the usual way). */
function readPackRange(src: PackFileRange): Buffer | null {
  if (rangeBuf.length < src.length) rangeBuf = Buffer.allocUnsafe(Math.max(src.length, 8 * 1024 * 1024));
  let fd: number;
  try {
    fd = fs.openSync(src.file, fsc.O_RDONLY);
  } catch {
    return null;
  }
  try {
    let done = 0;
    while (done < src.length) {
      const n = fs.readSync(fd, rangeBuf, done, src.length - done, src.offset + done);
      if (n === 0) return null;
      done += n;
    }
    return rangeBuf.subarray(0, src.length);
  } catch {
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Open the blobs of one range of a pack, decrypting each in place (this thread
 * owns the bytes: moved here, or read into `rangeBuf`). A compressed blob comes
 * back in the buffer zstd wrote it to. One stored raw is a view of the range:
 * it gets a buffer of its own unless it is the range's only blob and the range
 * was moved here, since `rangeBuf` is read into again and a view would keep
 * every other blob's bytes alive on the main thread.
 */
function openRange(packId: string, data: Buffer, blobs: OpenRangeRequest['blobs'], reused: boolean, arena?: SharedArrayBuffer): { result: OpenRangeResult; transfer: ArrayBuffer[] } {
  const result: OpenRangeResult = [];
  const transfer: ArrayBuffer[] = [];
  const keepView = !reused && blobs.length === 1;
  for (const b of blobs) {
    try {
      if (b.into && arena) {
        const into = Buffer.from(arena, b.into.offset, b.into.length);
        if (b.into.fresh) faultIn(into);
        openBlobInto(keys, b.type, Buffer.from(b.id), data.subarray(b.offset, b.offset + b.length), into, packId);
        result.push({ placed: true });
        continue;
      }
      let plain = openBlobOwned(keys, b.type, Buffer.from(b.id), data.subarray(b.offset, b.offset + b.length), packId);
      if (plain.buffer === data.buffer) {
        if (keepView && data.buffer instanceof ArrayBuffer) transfer.push(data.buffer);
        else plain = copyToOwnBuffer(plain);
      }
      if (plain.buffer !== data.buffer) transfer.push(...transferList(plain));
      result.push({ plain });
    } catch (err) {
      result.push({ error: err instanceof DamagedBlobError ? err.detail : (err as Error).message });
    }
  }
  return { result, transfer };
}

/** Open a blob the request brought (this thread owns its bytes); with what to move back. */
function openRequest(req: OpenBlobRequest): { plain: Buffer; transfer: ArrayBuffer[] } {
  const sealed = Buffer.from(req.sealed.buffer, req.sealed.byteOffset, req.sealed.byteLength);
  const plain = openBlobOwned(keys, req.type, Buffer.from(req.id), sealed, req.packId);
  // A blob stored raw is a view of the sealed bytes, a buffer no one else here holds:
  // move it back whole rather than have postMessage copy it.
  const transfer = plain.buffer === sealed.buffer && sealed.buffer instanceof ArrayBuffer ? [sealed.buffer] : transferList(plain);
  return { plain, transfer };
}

// Chunking tasks and flushes run one after another: they share the read window and the pack.
let queue: Promise<void> = Promise.resolve();
let aborting = false;

parentPort!.on('message', (msg: WorkerRequest) => {
  switch (msg.op) {
    case 'abort':
      aborting = true;
      return;
    case 'pack-stored': {
      packsOut--;
      if (msg.slot !== undefined) packSlots?.release(msg.slot);
      const w = packWaiters;
      packWaiters = [];
      for (const r of w) r();
      return;
    }
    case 'open': {
      try {
        const { plain, transfer } = openRequest(msg);
        post({ task: msg.task, kind: 'done', result: plain }, transfer);
      } catch (err) {
        post({ task: msg.task, kind: 'error', error: describe(err) });
      }
      return;
    }
    case 'open-range': {
      const data = msg.data instanceof Uint8Array ? Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength) : readPackRange(msg.data);
      if (!data) {
        post({ task: msg.task, kind: 'done', result: null });
        return;
      }
      const { result, transfer } = openRange(msg.packId, data, msg.blobs, !(msg.data instanceof Uint8Array), msg.arena);
      post({ task: msg.task, kind: 'done', result }, transfer);
      return;
    }
    case 'write-range': {
      const data = msg.data instanceof Uint8Array ? Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength) : readPackRange(msg.data);
      try {
        post({ task: msg.task, kind: 'done', result: data && writeRangeBlobs(keys, msg.packId, data, decodeRangeWrites(msg.blobs), msg.root, true) });
      } catch (err) {
        post({ task: msg.task, kind: 'error', error: describe(err) });
      }
      return;
    }
    case 'flush':
      queue = queue.then(() =>
        emitPack().then(
          () => post({ task: msg.task, kind: 'done', result: null }),
          (err) => post({ task: msg.task, kind: 'error', error: describe(err) }),
        ),
      );
      return;
    case 'chunk':
      busy();
      queue = queue.then(() =>
        chunkFiles(msg)
          .then(
            (result) => post({ task: msg.task, kind: 'done', result }),
            (err) => post({ task: msg.task, kind: 'error', error: describe(err) }),
          )
          .finally(done),
      );
      return;
    case 'seal':
      busy();
      queue = queue.then(() =>
        sealHandedOver(msg)
          // Nobody waits on a handed-over chunk: the failure fails this thread's next task instead.
          .catch((err) => {
            sealFailure ??= err;
          })
          .finally(done),
      );
  }
});

function describe(err: unknown): WorkerError {
  if (err instanceof DamagedBlobError) return { message: err.message, damaged: { blobId: err.blobId, detail: err.detail, packId: err.packId } };
  // Without its cause's code, so the main thread never takes it for a source file's error.
  if (err instanceof PackWriteError) return { message: err.message, name: err.name };
  const e = err as NodeJS.ErrnoException;
  return { message: e?.message ?? String(err), code: e?.code, name: e?.name };
}
