import crypto from 'node:crypto';

/**
 * AES-256-GCM with a 192-bit random nonce ("extended-nonce GCM").
 *
 * The first 12 nonce bytes select a one-off subkey, HMAC-SHA256(key, LABEL ‖ n[0..12]);
 * the last 12 bytes are the GCM IV under that subkey. Reusing a (subkey, IV) pair
 * needs two random 192-bit values to collide, so nonce reuse is not a concern at any
 * repository size, and no counter state has to be shared between threads or hosts.
 * docs/FORMAT.md gives the argument in full.
 *
 * Sealed layout: nonce (24) ‖ ciphertext ‖ tag (16).
 */
export const NONCE_BYTES = 24;
export const TAG_BYTES = 16;
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;
const SUBKEY_LABEL = Buffer.from('aegis-xgcm-v1', 'ascii');

export class AuthenticationError extends Error {
  constructor(message = 'authentication failed: the data was modified or belongs to another object') {
    super(message);
    this.name = 'AuthenticationError';
  }
}

// Random bytes are drawn in 16 KiB batches: one getrandom call per ~680 nonces
// instead of one each (a measurable cost with many small blobs).
const POOL_BYTES = 16 * 1024;
let pool = Buffer.alloc(0);
let poolOffset = 0;

function randomNonce(): Buffer {
  if (poolOffset + NONCE_BYTES > pool.length) {
    pool = crypto.randomBytes(POOL_BYTES);
    poolOffset = 0;
  }
  const n = pool.subarray(poolOffset, poolOffset + NONCE_BYTES);
  poolOffset += NONCE_BYTES;
  return n;
}

function subkey(key: Buffer, nonce: Uint8Array): Buffer {
  return crypto.createHmac('sha256', key).update(SUBKEY_LABEL).update(nonce.subarray(0, 12)).digest();
}

/** Encrypt `parts` (concatenated) and authenticate them together with `ad`. */
export function seal(key: Buffer, ad: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const nonce = randomNonce();
  const cipher = crypto.createCipheriv('aes-256-gcm', subkey(key, nonce), nonce.subarray(12));
  cipher.setAAD(ad);
  const chunks: Buffer[] = [nonce];
  for (const p of parts) chunks.push(cipher.update(p));
  chunks.push(cipher.final(), cipher.getAuthTag());
  return Buffer.concat(chunks);
}

/** Decrypt and authenticate; throws AuthenticationError if anything was changed. */
export function open(key: Buffer, ad: Uint8Array, sealed: Uint8Array): Buffer {
  if (sealed.length < SEAL_OVERHEAD) throw new AuthenticationError('sealed data is truncated');
  const nonce = sealed.subarray(0, NONCE_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const decipher = crypto.createDecipheriv('aes-256-gcm', subkey(key, nonce), nonce.subarray(12));
  decipher.setAAD(ad);
  decipher.setAuthTag(tag);
  const body = decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES));
  try {
    return body.length ? Buffer.concat([body, decipher.final()]) : decipher.final();
  } catch {
    throw new AuthenticationError();
  }
}
