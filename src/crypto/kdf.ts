import { createRequire } from 'node:module';

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

/** RFC 9106's second recommended setting: m = 64 MiB, t = 3, p = 4. */
export function defaultKdfParams(salt: Buffer): KdfParams {
  return { algorithm: 'argon2id', memoryKiB: MIN_MEMORY_KIB, iterations: 3, parallelism: 4, salt: salt.toString('base64') };
}

interface NativeArgon2 {
  hash(password: string, options: Record<string, unknown> & { raw: true }): Promise<Buffer>;
  argon2id: number;
}

/**
 * The native binding computes the same Argon2id as hash-wasm (tested) but uses
 * SIMD and one thread per lane: with p = 4 on two cores it took 212 ms against
 * 559 ms for hash-wasm at p = 1 (docs/DECISIONS.md). Every command pays this, so
 * it is worth a native module; hash-wasm remains the fallback.
 */
let native: NativeArgon2 | null | undefined;
function nativeArgon2(): NativeArgon2 | null {
  if (native === undefined) {
    try {
      native = createRequire(import.meta.url)('argon2') as NativeArgon2;
    } catch {
      native = null;
    }
  }
  return native;
}

/** Derive the 32-byte key-encryption key from a passphrase. */
export async function deriveKeyEncryptionKey(passphrase: string, params: KdfParams, opts: { native?: boolean } = {}): Promise<Buffer> {
  if (params.algorithm !== 'argon2id') throw new Error(`unsupported key derivation: ${params.algorithm}`);
  const password = passphrase.normalize('NFC');
  const salt = Buffer.from(params.salt, 'base64');
  const n = opts.native === false ? null : nativeArgon2();
  if (n) {
    return n.hash(password, {
      type: n.argon2id,
      memoryCost: params.memoryKiB,
      timeCost: params.iterations,
      parallelism: params.parallelism,
      salt,
      hashLength: 32,
      raw: true,
    });
  }
  // Loaded only when needed: importing hash-wasm costs every command ~20 ms.
  const { argon2id: wasmArgon2id } = await import('hash-wasm');
  const out = await wasmArgon2id({
    password,
    salt,
    memorySize: params.memoryKiB,
    iterations: params.iterations,
    parallelism: params.parallelism,
    hashLength: 32,
    outputType: 'binary',
  });
  return Buffer.from(out);
}
