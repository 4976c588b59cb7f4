import { type ChunkerParams } from '../chunker/fastcdc.js';
import { type CompressionMode } from '../repo/compression.js';
import { type BlobType } from '../repo/blob.js';
import { type ClaimTable } from './claims.js';
import { type Staging } from '../storage/storage.js';
import type { RangeWriteResult } from './restored-file.js';

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
  /** This thread's number, 0 … threads − 1. */
  index: number;
  /**
   * Shared Int32 state of all threads: [0, threads) is 1 while thread i has
   * nothing queued; [threads, 2·threads) counts the chunks thread i handed to
   * others to seal and that are not sealed yet (see `offload` in worker.ts).
   */
  peers: SharedArrayBuffer;
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

/** Open several blobs that lie in one buffer read from a pack (restore). */
export interface OpenRangeRequest {
  op: 'open-range';
  task: number;
  packId: string;
  data: Uint8Array;
  blobs: Array<{ type: BlobType; id: Uint8Array; offset: number; length: number }>;
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
}

export interface PackFileRange {
  file: string;
  offset: number;
  length: number;
}

/** Per blob of an OpenRangeRequest: its plaintext, or why it could not be opened. */
export type OpenRangeResult = Array<{ plain?: Uint8Array; error?: string }>;

/** Seal a new chunk another thread cut, hashed and claimed, into this thread's pack. */
export interface SealRequest {
  op: 'seal';
  id: Uint8Array;
  data: Uint8Array;
  compression: CompressionMode;
  /** The thread that handed it over (its count of chunks out goes down when sealed). */
  from: number;
}

/** The main thread is done with a pack this thread wrote (stored, or failed and removed). */
export interface PackStoredMessage {
  op: 'pack-stored';
  /** An in-memory pack's buffer, moved back to be filled again. */
  buffer?: ArrayBuffer;
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

/** One blob inside a finished pack, as sent between threads. */
export interface WirePackedBlob {
  type: BlobType;
  id: Uint8Array;
  offset: number;
  length: number;
  rawLength: number;
}

/** A complete pack (blobs, sealed header, trailer) in a staged file or in memory, ready to store. */
export interface WirePack {
  packId: string;
  /** The staged file that holds it, or */
  file?: string;
  /** the buffer whose first `length` bytes are the pack (moved, not copied). */
  data?: Uint8Array;
  length: number;
  sha256?: string;
  blobs: WirePackedBlob[];
}

export type WorkerResponse =
  | { task: 0; kind: 'pack'; pack: WirePack }
  | ({ task: 0; kind: 'seal' } & Omit<SealRequest, 'op'>)
  | { task: number; kind: 'done'; result: ChunkFilesResult | Uint8Array | OpenRangeResult | RangeWriteResult | null }
  | { task: number; kind: 'error'; error: WorkerError };
