import { open, openInPlace, seal, sealInto, SEAL_OVERHEAD } from '../crypto/aead.js';
import { deriveSubkey, keyedId, idToHex } from '../crypto/ids.js';
import { type MasterKeys } from '../crypto/keys.js';
import { type CompressionMode, Codec, decompress, decompressScratch, decompressTo, maybeCompress } from './compression.js';

/**
 * Blobs are the units of deduplication: file chunks (data) and directory listings
 * (tree). A sealed blob is  nonce ‖ AES-GCM(codec byte ‖ payload) ‖ tag  with the
 * associated data "aegis-blob-v1" ‖ type ‖ ID, so a blob moved under another ID or
 * type fails to open. After decryption the plaintext is hashed again and must match
 * its ID before anything uses it.
 */
export const enum BlobType {
  Data = 0,
  Tree = 1,
}

export function blobTypeName(t: BlobType): string {
  return t === BlobType.Data ? 'data' : 'tree';
}

const BLOB_AD_LABEL = Buffer.from('aegis-blob-v1', 'ascii');

export function blobAssociatedData(type: BlobType, id: Uint8Array): Buffer {
  return Buffer.concat([BLOB_AD_LABEL, Buffer.of(type), id]);
}

const treeIdKeys = new WeakMap<Buffer, Buffer>();

/**
 * Data and tree blobs have separate ID spaces: a tree's ID is keyed with a subkey
 * derived from the ID key. Otherwise a file whose bytes equal some directory
 * listing would share that listing's ID and be "deduplicated" against a blob of
 * the other type, which cannot be read back as data.
 */
export function idKeyFor(keys: MasterKeys, type: BlobType): Buffer {
  if (type === BlobType.Data) return keys.id;
  let k = treeIdKeys.get(keys.id);
  if (!k) treeIdKeys.set(keys.id, (k = deriveSubkey('aegis 2026 tree blob id v1', keys.id)));
  return k;
}

export function blobId(keys: MasterKeys, type: BlobType, plaintext: Uint8Array): Buffer {
  return keyedId(idKeyFor(keys, type), plaintext);
}

export interface SealedBlob {
  id: Buffer;
  sealed: Buffer;
  rawLength: number;
}

export class DamagedBlobError extends Error {
  constructor(readonly blobId: string, readonly detail: string, readonly packId?: string) {
    super(`blob ${blobId.slice(0, 16)}${packId ? ` in pack ${packId.slice(0, 16)}` : ''} is damaged: ${detail}`);
    this.name = 'DamagedBlobError';
  }
}

/** Compress and seal a blob whose ID (of `plaintext`) the caller computed. */
export function sealBlobWithId(keys: MasterKeys, type: BlobType, id: Buffer, plaintext: Uint8Array, mode: CompressionMode): SealedBlob {
  const { codec, payload } = maybeCompress(plaintext, mode);
  const sealed = seal(keys.encryption, blobAssociatedData(type, id), Buffer.of(codec), payload);
  return { id, sealed, rawLength: plaintext.length };
}

/** Compress `plaintext` for a blob; the sealed blob will be `sealedLength(payload)` bytes. */
export function blobPayload(plaintext: Uint8Array, mode: CompressionMode): { codec: Codec; payload: Uint8Array; sealedLength: number } {
  const { codec, payload } = maybeCompress(plaintext, mode);
  return { codec, payload, sealedLength: 1 + payload.length + SEAL_OVERHEAD };
}

/** Seal a blob whose payload `blobPayload` made, straight into `out` (a pack buffer). */
export function sealBlobInto(out: Buffer, offset: number, keys: MasterKeys, type: BlobType, id: Buffer, codec: Codec, payload: Uint8Array): number {
  return sealInto(out, offset, keys.encryption, blobAssociatedData(type, id), Buffer.of(codec), payload);
}

/** Decrypt, decompress and verify a blob against its ID. */
export function openBlob(keys: MasterKeys, type: BlobType, id: Buffer, sealed: Buffer, packId?: string): Buffer {
  return openWith(open, decompress, keys, type, id, sealed, packId);
}

/**
 * `openBlob` for a caller that owns `sealed` and uses the plaintext at once (a
 * restore writing it to a file): decrypted in place and decompressed into a
 * buffer this thread reuses, so a blob costs no allocation. The result is valid
 * until the next call on this thread.
 */
export function openBlobTransient(keys: MasterKeys, type: BlobType, id: Buffer, sealed: Buffer, packId?: string): Buffer {
  return openWith(openInPlace, decompressScratch, keys, type, id, sealed, packId);
}

/**
 * `openBlob` for a caller that owns `sealed` and keeps the plaintext (a worker
 * thread answering for the mount's cache): decrypted in place, so a blob stored
 * uncompressed comes back as a view of `sealed` instead of a fresh copy.
 */
export function openBlobOwned(keys: MasterKeys, type: BlobType, id: Buffer, sealed: Buffer, packId?: string): Buffer {
  return openWith(openInPlace, decompress, keys, type, id, sealed, packId);
}

/**
 * `openBlobOwned` into `out`, whose length is the plaintext's (the index's raw
 * length): the mount's worker threads open blobs straight into the chunk
 * cache's memory (mount/blob-arena.ts). `out` holds garbage if this throws.
 */
export function openBlobInto(keys: MasterKeys, type: BlobType, id: Buffer, sealed: Buffer, out: Buffer, packId?: string): void {
  openWith(openInPlace, (codec, payload) => decompressTo(codec, payload, out), keys, type, id, sealed, packId);
}

function openWith(
  decrypt: (key: Buffer, ad: Uint8Array, sealed: Buffer) => Buffer,
  inflate: (codec: number, payload: Buffer) => Buffer,
  keys: MasterKeys,
  type: BlobType,
  id: Buffer,
  sealed: Buffer,
  packId?: string,
): Buffer {
  let inner: Buffer;
  try {
    inner = decrypt(keys.encryption, blobAssociatedData(type, id), sealed);
  } catch {
    throw new DamagedBlobError(idToHex(id), 'authentication failed', packId);
  }
  let plain: Buffer;
  try {
    plain = inflate(inner[0]!, inner.subarray(1));
  } catch (err) {
    throw new DamagedBlobError(idToHex(id), (err as Error).message, packId);
  }
  if (!blobId(keys, type, plain).equals(id)) throw new DamagedBlobError(idToHex(id), 'content does not match its ID', packId);
  return plain;
}

export const BLOB_OVERHEAD = SEAL_OVERHEAD + 1;
export { Codec };
