import { type ChunkerParams } from '../chunker/fastcdc.js';
import { type CompressionMode } from '../repo/compression.js';
import { type BlobType } from '../repo/blob.js';
import { type ClaimTable } from './claims.js';
import { type Staging } from '../storage/storage.js';
import type { RangeWriteResult, RestoreRoot } from './restored-file.js';

/** What a worker thread is started with. */
export interface WorkerInit {
  encryptionKey: Uint8Array;
  idKey: Uint8Array;
  chunkerSecret: Uint8Array;
  chunker: ChunkerParams;
  /** Sorted 32-byte IDs already in the repository (shared, read-only), or null. */
  known: SharedArrayBuffer | null;
  knownCount: number;
  /** Shared claims on new IDs, so only one thread stores each new chunk. */
  claims: ClaimTable;
  /** Target pack size in bytes for packs this thread assembles. */
  packSize: number;
  /** How this thread assembles the packs of a backup (Storage.staging), or null: no backup. */
  staging: Staging | null;
  /** Starts the name of every pack file this pool stages, so that closing it can remove what is left. */
  stagingPrefix: string;
  /** This thread's number, 0 … threads − 1. */
  index: number;
  /**
   * Shared Int32 state of all threads: [0, threads) is how many requests
   * thread i has queued or under way; then HANDOVER_SLOTS slot states per
   * thread; then, per slot, the ID of the chunk handed over through it (8
   * words), written by the thread that hashed it (see `offload` in worker.ts).
   */
  peers: SharedArrayBuffer;
  /**
   * Per thread, the window it reads files into (two maximum chunks), in shared
   * memory so that a chunk it hands to another thread to seal is never copied;
   * null when the pool is not for a backup.
   */
  handover: SharedArrayBuffer[] | null;
}

/** Chunks one thread may have handed over and not yet sealed by another. */
export const HANDOVER_SLOTS = 2;

/** Int32 words of a handed-over chunk's ID in WorkerInit.peers. */
export const HANDOVER_ID_WORDS = 8;

/** Int32 elements of WorkerInit.peers for `threads` threads. */
export function peerStateLength(threads: number): number {
  return threads + threads * HANDOVER_SLOTS * (1 + HANDOVER_ID_WORDS);
}

/**
 * Several files to chunk, one after another. Small files travel in batches: one
 * message per file cost more than reading, hashing and sealing a 4 KiB file.
 */
export interface ChunkFilesRequest {
  op: 'chunk';
  task: number;
  /** File path bytes: names need not be UTF-8. */
  paths: Uint8Array[];
  /** Per path, the device and inode the scan found there (both 0: not known). */
  identities: BigUint64Array;
  compression: CompressionMode;
}

/** Per file of a ChunkFilesRequest, in the same order. */
export type ChunkFilesResult = Array<{ ok: ChunkFileResult; error?: undefined } | { ok?: undefined; error: WorkerError }>;

export interface OpenBlobRequest {
  op: 'open';
  task: number;
  type: BlobType;
  id: Uint8Array;
  sealed: Uint8Array;
  packId: string;
}

/** Open the blobs that lie in one range of a pack (the mount's chunk cache). */
export interface OpenRangeRequest {
  op: 'open-range';
  task: number;
  packId: string;
  /** The range's bytes (moved here), or where in a local pack file this thread reads them itself. */
  data: Uint8Array | PackFileRange;
  blobs: Array<{ type: BlobType; id: Uint8Array; offset: number; length: number; into?: ArenaRegion }>;
  /** The mount's chunk cache memory, for blobs that name a region of it (`into`). */
  arena?: SharedArrayBuffer;
}

/** Where in the chunk cache's arena a blob's plaintext goes: exactly `length` bytes (its raw length) at `offset`. */
export interface ArenaRegion {
  offset: number;
  length: number;
  /** Some of its pages are not resident: fault them all in with one call before writing. */
  fresh?: boolean;
}

/** Restore: open the blobs of one pack read and write each into the files that use it (restored-file.ts). */
export interface WriteRangeRequest {
  op: 'write-range';
  task: number;
  packId: string;
  /** The range's bytes (moved here), or where in a local pack file this thread reads them itself. */
  data: Uint8Array | PackFileRange;
  /** RangeBlobWrites[] encoded by encodeRangeWrites. */
  blobs: Uint8Array;
  /** The target the paths in `blobs` are relative to. */
  root: RestoreRoot;
}

export interface PackFileRange {
  file: string;
  offset: number;
  length: number;
}

/**
 * Per blob of an OpenRangeRequest: its plaintext, `placed` if it was opened into
 * its arena region, or why it could not be opened. A range to read from a pack
 * file that could not all be read gets null instead.
 */
export type OpenRangeResult = Array<{ plain?: Uint8Array; placed?: true; error?: string }>;

/**
 * Hash a chunk another thread cut, and seal it into this thread's pack unless
 * it is stored already. The chunk is bytes [offset, offset + length) of thread
 * `from`'s window; `slot` is the handover slot that tracks it, whose ID words
 * receive the chunk's ID before the slot is freed.
 */
export interface SealRequest {
  op: 'seal';
  compression: CompressionMode;
  from: number;
  slot: number;
  /** Which handover through that slot this is (see `offload` in worker.ts). */
  ticket: number;
  offset: number;
  length: number;
}

/** The main thread is done with a pack this thread wrote (stored, or failed and removed). */
export interface PackStoredMessage {
  op: 'pack-stored';
  /** An in-memory pack's slot, free to be filled again. */
  slot?: number;
}

/** Finish the partial pack now (end of backup, or interruption). */
export interface FlushRequest {
  op: 'flush';
  task: number;
}

/** Stop the file being chunked at the next chunk boundary (Ctrl-C). */
export interface AbortMessage {
  op: 'abort';
}

export type WorkerRequest = ChunkFilesRequest | SealRequest | OpenBlobRequest | OpenRangeRequest | WriteRangeRequest | PackStoredMessage | FlushRequest | AbortMessage;

export interface ChunkFileResult {
  content: string[];
  /** Bytes read (the size recorded in the snapshot). */
  size: number;
  /** The file's size or times changed while it was read. */
  changed: boolean;
}

export interface WorkerError {
  message: string;
  code?: string;
  name?: string;
  /** For a DamagedBlobError: enough to rebuild the same error on the other side. */
  damaged?: { blobId: string; detail: string; packId?: string };
}

/** A complete pack (blobs, sealed header, trailer) in a staged file or in memory, ready to store. */
export type WirePack = {
  packId: string;
  length: number;
  sha256?: string;
  /** Its blobs, in the layout of PackEntries. */
  entries: Uint8Array;
} & (
  | { /** The staged file that holds it. */ file: string; slot?: undefined; memory?: undefined }
  | {
      /** The thread's pack memory that holds it (its first `length` bytes), until the main thread says it is stored. */
      slot: number;
      /** That memory, when the main thread has not been given it yet: sent once per slot (and again if it grew), see PackSlots. */
      memory?: SharedArrayBuffer;
      file?: undefined;
    }
);

export type WorkerResponse =
  | { task: 0; kind: 'pack'; pack: WirePack }
  /** A chunk this thread had handed over was still waiting, and it sealed it itself (counted for tests). */
  | { task: 0; kind: 'taken-back' }
  | ({ task: 0; kind: 'seal' } & Omit<SealRequest, 'op'>)
  | { task: number; kind: 'done'; result: ChunkFilesResult | Uint8Array | OpenRangeResult | RangeWriteResult | null }
  | { task: number; kind: 'error'; error: WorkerError };
