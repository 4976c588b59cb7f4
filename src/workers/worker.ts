import { parentPort, workerData } from 'node:worker_threads';
import { promises as fsp, constants as fsc } from 'node:fs';
import { Chunker } from '../chunker/fastcdc.js';
import { gearTable } from '../chunker/gear.js';
import { keyedId } from '../crypto/ids.js';
import { type MasterKeys } from '../crypto/keys.js';
import { BlobType, DamagedBlobError, openBlob, sealBlobWithId } from '../repo/blob.js';
import type { ChunkFileRequest, ChunkFileResult, OpenBlobRequest, WorkerInit, WorkerRequest, WorkerResponse } from './protocol.js';
import { transferList } from './transfer.js';

const init = workerData as WorkerInit;
const keys: MasterKeys = {
  encryption: Buffer.from(init.encryptionKey),
  id: Buffer.from(init.idKey),
  chunker: Buffer.from(init.chunkerSecret),
};
const chunker = new Chunker(gearTable(keys.chunker), init.chunker);
const known = init.known ? new Uint8Array(init.known) : null;
/** IDs this worker sealed during its life, so a repeated chunk is sealed once. */
const sealedHere = new Set<string>();

// Back-pressure: at most this many sealed bytes handed to the main thread and not yet packed.
const MAX_UNACKED = 48 * 1024 * 1024;
let unacked = 0;
let ackWaiters: Array<() => void> = [];

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

async function waitForRoom(): Promise<void> {
  while (unacked > MAX_UNACKED) await new Promise<void>((r) => ackWaiters.push(r));
}

async function openForBackup(path: Buffer): Promise<fsp.FileHandle> {
  // O_NOATIME keeps the backup from touching the source's access times; only the
  // owner (or root) may use it, so fall back to a plain open.
  try {
    return await fsp.open(path, fsc.O_RDONLY | fsc.O_NOATIME);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    return await fsp.open(path, fsc.O_RDONLY);
  }
}

async function chunkFile(req: ChunkFileRequest): Promise<ChunkFileResult> {
  const fh = await openForBackup(Buffer.from(req.path));
  try {
    const before = await fh.stat({ bigint: true });
    const { max } = chunker.params;
    const capacity = Math.max(1, Math.min(2 * max, Number(before.size) + 1));
    let buf = Buffer.allocUnsafe(capacity);
    let start = 0;
    let end = 0;
    let eof = false;
    let size = 0;
    let sealedChunks = 0;
    const content: string[] = [];
    while (!eof || start < end) {
      while (!eof && end < buf.length) {
        const { bytesRead } = await fh.read(buf, end, buf.length - end, null);
        if (bytesRead === 0) eof = true;
        end += bytesRead;
        if (!eof && end === buf.length && buf.length < 2 * max) {
          // The file grew past what stat said: widen the window.
          const bigger = Buffer.allocUnsafe(Math.min(2 * max, buf.length * 2));
          buf.copy(bigger, 0, 0, end);
          buf = bigger;
        }
      }
      while (end - start >= max || (eof && start < end)) {
        const n = chunker.cut(buf, start, end);
        const chunk = buf.subarray(start, start + n);
        const id = keyedId(keys.id, chunk);
        const hex = id.toString('hex');
        if (!sealedHere.has(hex) && !isKnown(id)) {
          const blob = sealBlobWithId(keys, BlobType.Data, id, chunk, req.compression);
          sealedHere.add(hex);
          sealedChunks++;
          unacked += blob.sealed.length;
          const idCopy = new Uint8Array(id);
          post({ task: req.task, kind: 'blob', id: idCopy, sealed: blob.sealed, rawLength: n }, transferList(blob.sealed, idCopy));
          await waitForRoom();
        }
        content.push(hex);
        size += n;
        start += n;
      }
      if (start > 0 && start < end) buf.copy(buf, 0, start, end);
      end -= start;
      start = 0;
    }
    const after = await fh.stat({ bigint: true });
    const changed = after.mtimeNs !== before.mtimeNs || after.ctimeNs !== before.ctimeNs || Number(after.size) !== size;
    return { content, size, changed, sealedChunks };
  } finally {
    await fh.close();
  }
}

function openRequest(req: OpenBlobRequest): Buffer {
  return openBlob(keys, req.type, Buffer.from(req.id), Buffer.from(req.sealed.buffer, req.sealed.byteOffset, req.sealed.byteLength), req.packId);
}

parentPort!.on('message', (msg: WorkerRequest) => {
  if (msg.op === 'ack') {
    unacked -= msg.bytes;
    const w = ackWaiters;
    ackWaiters = [];
    for (const r of w) r();
    return;
  }
  if (msg.op === 'open') {
    try {
      const plain = openRequest(msg);
      post({ task: msg.task, kind: 'done', result: plain }, transferList(plain));
    } catch (err) {
      post({ task: msg.task, kind: 'error', error: describe(err) });
    }
    return;
  }
  chunkFile(msg).then(
    (result) => post({ task: msg.task, kind: 'done', result }),
    (err) => post({ task: msg.task, kind: 'error', error: describe(err) }),
  );
});

function describe(err: unknown): { message: string; code?: string; name?: string } {
  const e = err as NodeJS.ErrnoException;
  if (err instanceof DamagedBlobError) return { message: e.message, name: 'DamagedBlobError', code: e.code };
  return { message: e?.message ?? String(err), code: e?.code, name: e?.name };
}
