import { open, seal } from '../crypto/aead.js';
import { type MasterKeys } from '../crypto/keys.js';
import { type CompressionMode, decompress, maybeCompress } from './compression.js';

/**
 * Repository objects other than packs (config, index files, snapshots, locks) are
 * sealed whole: nonce ‖ AES-GCM(codec byte ‖ payload) ‖ tag, with the associated
 * data "aegis-object-v1" ‖ object name. The name holds both the kind and the ID
 * (e.g. "snapshots/3fa1…"), so an object copied over another fails to open.
 */
const OBJECT_AD_LABEL = Buffer.from('aegis-object-v1', 'ascii');

export class DamagedObjectError extends Error {
  constructor(readonly objectName: string, detail: string) {
    super(`repository object ${objectName} is damaged: ${detail}`);
    this.name = 'DamagedObjectError';
  }
}

function objectAd(name: string): Buffer {
  return Buffer.concat([OBJECT_AD_LABEL, Buffer.from(name, 'utf8')]);
}

export function sealObject(keys: MasterKeys, name: string, plaintext: Uint8Array, mode: CompressionMode = 'auto'): Buffer {
  const { codec, payload } = maybeCompress(plaintext, mode);
  return seal(keys.encryption, objectAd(name), Buffer.of(codec), payload);
}

export function openObject(keys: MasterKeys, name: string, sealed: Buffer): Buffer {
  let inner: Buffer;
  try {
    inner = open(keys.encryption, objectAd(name), sealed);
  } catch {
    throw new DamagedObjectError(name, 'authentication failed (modified, truncated, or not from this repository)');
  }
  try {
    return decompress(inner[0]!, inner.subarray(1));
  } catch (err) {
    throw new DamagedObjectError(name, (err as Error).message);
  }
}

export function sealJson(keys: MasterKeys, name: string, value: unknown): Buffer {
  return sealObject(keys, name, Buffer.from(JSON.stringify(value), 'utf8'));
}

export function openJson<T>(keys: MasterKeys, name: string, sealed: Buffer): T {
  const plain = openObject(keys, name, sealed);
  try {
    return JSON.parse(plain.toString('utf8')) as T;
  } catch {
    throw new DamagedObjectError(name, 'not valid JSON after decryption');
  }
}
