import { argon2id } from 'hash-wasm';

/** Argon2id parameters, stored beside the salt in every key file. */
export interface KdfParams {
  algorithm: 'argon2id';
  /** Memory cost in KiB; at least 64 MiB so that guessing passphrases stays expensive. */
  memoryKiB: number;
  iterations: number;
  parallelism: number;
  /** Base64. */
  salt: string;
}

export const MIN_MEMORY_KIB = 64 * 1024;

export function defaultKdfParams(salt: Buffer): KdfParams {
  return { algorithm: 'argon2id', memoryKiB: MIN_MEMORY_KIB, iterations: 3, parallelism: 1, salt: salt.toString('base64') };
}

/** Derive the 32-byte key-encryption key from a passphrase. */
export async function deriveKeyEncryptionKey(passphrase: string, params: KdfParams): Promise<Buffer> {
  if (params.algorithm !== 'argon2id') throw new Error(`unsupported key derivation: ${params.algorithm}`);
  const out = await argon2id({
    password: passphrase.normalize('NFC'),
    salt: Buffer.from(params.salt, 'base64'),
    memorySize: params.memoryKiB,
    iterations: params.iterations,
    parallelism: params.parallelism,
    hashLength: 32,
    outputType: 'binary',
  });
  return Buffer.from(out);
}
