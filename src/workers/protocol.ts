import { type ChunkerParams } from '../chunker/fastcdc.js';
import { type CompressionMode } from '../repo/compression.js';
import { type BlobType } from '../repo/blob.js';

/** What a worker thread is started with. */
export interface WorkerInit {
  encryptionKey: Uint8Array;
  idKey: Uint8Array;
  chunkerSecret: Uint8Array;
  chunker: ChunkerParams;
  /** Sorted 32-byte IDs already in the repository (shared, read-only), or null. */
  known: SharedArrayBuffer | null;
  knownCount: number;
}

export interface ChunkFileRequest {
  op: 'chunk';
  task: number;
  /** File path bytes: names need not be UTF-8. */
  path: Uint8Array;
  compression: CompressionMode;
}

export interface OpenBlobRequest {
  op: 'open';
  task: number;
  type: BlobType;
  id: Uint8Array;
  sealed: Uint8Array;
  packId: string;
}

export interface AckMessage {
  op: 'ack';
  bytes: number;
}

export type WorkerRequest = ChunkFileRequest | OpenBlobRequest | AckMessage;

export interface ChunkFileResult {
  content: string[];
  /** Bytes read (the size recorded in the snapshot). */
  size: number;
  /** The file's size or times changed while it was read. */
  changed: boolean;
  /** Data chunks that were new to this worker and sealed. */
  sealedChunks: number;
}

export interface WorkerError {
  message: string;
  code?: string;
  name?: string;
}

export type WorkerResponse =
  | { task: number; kind: 'blob'; id: Uint8Array; sealed: Uint8Array; rawLength: number }
  | { task: number; kind: 'done'; result: ChunkFileResult | Uint8Array }
  | { task: number; kind: 'error'; error: WorkerError };
