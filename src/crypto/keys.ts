import crypto from 'node:crypto';
import os from 'node:os';
import { type KdfParams, MIN_MEMORY_KIB, defaultKdfParams, deriveKeyEncryptionKey } from './kdf.js';
import { AuthenticationError, open, seal } from './aead.js';

/** The repository's random secrets. A passphrase only ever unwraps these. */
export interface MasterKeys {
  /** Seals every blob and object (AES-256-GCM, via per-nonce subkeys). */
  encryption: Buffer;
  /** Keys the BLAKE3 content IDs. */
  id: Buffer;
  /** Seeds the chunker's gear table, so chunk boundaries reveal nothing. */
  chunker: Buffer;
}

/**
 * A key file as stored, in JSON, under `keys/<key id>`. Only what is needed to
 * try a passphrase is in the clear; who made the key and when is sealed under
 * the master key (`info`), so the storage learns no user or host names.
 */
export interface KeyFile {
  version: 1;
  kdf: KdfParams;
  /** Base64 of seal(KEK, "aegis-key-v1", encryption ‖ id ‖ chunker). */
  masterKeys: string;
  /** Base64 of a sealed JSON KeyInfo (repository layer, objects.ts). */
  info?: string;
}

/** Who created a key and when: sealed inside the key file. */
export interface KeyInfo {
  created: string;
  hostname: string;
  username: string;
}

export function currentKeyInfo(): KeyInfo {
  let username = 'unknown';
  try {
    username = os.userInfo().username;
  } catch {
    /* no passwd entry for this uid */
  }
  return { created: new Date().toISOString(), hostname: os.hostname(), username };
}

const KEY_AD = Buffer.from('aegis-key-v1', 'ascii');

export class WrongPassphraseError extends Error {
  constructor() {
    super('wrong passphrase: no key file could be opened with it');
    this.name = 'WrongPassphraseError';
  }
}

export function generateMasterKeys(): MasterKeys {
  return { encryption: crypto.randomBytes(32), id: crypto.randomBytes(32), chunker: crypto.randomBytes(32) };
}

export async function wrapMasterKeys(keys: MasterKeys, passphrase: string, kdf?: KdfParams): Promise<KeyFile> {
  const params = kdf ?? defaultKdfParams(crypto.randomBytes(16));
  const kek = await deriveKeyEncryptionKey(passphrase, params);
  const sealed = seal(kek, KEY_AD, keys.encryption, keys.id, keys.chunker);
  return { version: 1, kdf: params, masterKeys: sealed.toString('base64') };
}

export async function unwrapMasterKeys(file: KeyFile, passphrase: string): Promise<MasterKeys> {
  const kek = await deriveKeyEncryptionKey(passphrase, file.kdf);
  let plain: Buffer;
  try {
    plain = open(kek, KEY_AD, Buffer.from(file.masterKeys, 'base64'));
  } catch (err) {
    if (err instanceof AuthenticationError) throw new WrongPassphraseError();
    throw err;
  }
  if (plain.length !== 96) throw new Error('key file holds master keys of the wrong length');
  return { encryption: plain.subarray(0, 32), id: plain.subarray(32, 64), chunker: plain.subarray(64, 96) };
}

export function parseKeyFile(bytes: Buffer, name: string): KeyFile {
  let parsed: KeyFile;
  try {
    parsed = JSON.parse(bytes.toString('utf8')) as KeyFile;
  } catch {
    throw new Error(`key file ${name} is not valid JSON`);
  }
  if (parsed.version !== 1 || !parsed.kdf || typeof parsed.masterKeys !== 'string') {
    throw new Error(`key file ${name} is not an Aegis key file (version ${String(parsed.version)})`);
  }
  if (parsed.kdf.memoryKiB < MIN_MEMORY_KIB) throw new Error(`key file ${name} has an unsafe Argon2 memory cost`);
  return parsed;
}
