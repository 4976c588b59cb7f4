import crypto from 'node:crypto';
import { nativeSyscalls } from '../native/syscalls.js';

/**
 * AES-256-GCM with a 192-bit random nonce ("extended-nonce GCM").
 *
 * The first 12 nonce bytes select a subkey, HMAC-SHA256(key, LABEL ‖ n[0..12]);
 * the last 12 bytes are the GCM IV under that subkey. A writer keeps one random
 * prefix for a run of at most 2^16 seals and counts the IV up within the run, so
 * reusing a (subkey, IV) pair needs two random 96-bit prefixes *and* two random
 * IV windows to collide; no state is shared between threads or hosts.
 * docs/FORMAT.md §2.3 gives the argument in full.
 *
 * Sealed layout: nonce (24) ‖ ciphertext ‖ tag (16).
 */
export const NONCE_BYTES = 24;
export const TAG_BYTES = 16;
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;
const EMPTY = new Uint8Array(0);
/** AES-256-GCM in the native addon, when it is built (the same bytes as Node's; test/aead.test.ts). */
const gcm = (() => {
  const n = nativeSyscalls();
  return n?.gcmSealInto && n.gcmOpenInPlace ? { gcmSealInto: n.gcmSealInto, gcmOpenInPlace: n.gcmOpenInPlace } : undefined;
})();
const SUBKEY_LABEL = Buffer.from('aegis-xgcm-v1', 'ascii');

export class AuthenticationError extends Error {
  constructor(message = 'authentication failed: the data was modified or belongs to another object') {
    super(message);
    this.name = 'AuthenticationError';
  }
}

/**
 * Nonces for sealing. A run of up to SUBKEY_USES seals under one key shares a
 * random 12-byte prefix, and so one subkey (one HMAC instead of one per blob,
 * which cost more than sealing a 4 KiB chunk). Within the run the IV starts at
 * 12 random bytes and its last four bytes count up (mod 2^32), so no two seals
 * of a run share an IV. Runs belong to one thread; nothing is shared. Readers
 * need no change: they derive the subkey from whatever prefix a nonce carries.
 * docs/FORMAT.md §2.3 gives the argument.
 */
const SUBKEY_USES = 1 << 16;

interface SealRun {
  prefix: Buffer;
  subkey: Buffer;
  iv: Buffer;
  uses: number;
}

const runs = new WeakMap<Buffer, SealRun>();

function nextNonce(key: Buffer): { nonce: Buffer; subkey: Buffer } {
  let run = runs.get(key);
  if (!run || run.uses >= SUBKEY_USES) {
    const fresh = crypto.randomBytes(24);
    const prefix = fresh.subarray(0, 12);
    run = { prefix, subkey: deriveSubkey(key, prefix), iv: fresh.subarray(12), uses: 0 };
    runs.set(key, run);
  } else {
    run.iv.writeUInt32LE((run.iv.readUInt32LE(8) + 1) >>> 0, 8);
  }
  run.uses++;
  const nonce = Buffer.allocUnsafe(NONCE_BYTES);
  run.prefix.copy(nonce, 0);
  run.iv.copy(nonce, 12);
  return { nonce, subkey: run.subkey };
}

function deriveSubkey(key: Buffer, prefix: Uint8Array): Buffer {
  return crypto.createHmac('sha256', key).update(SUBKEY_LABEL).update(prefix).digest();
}

// Opening: the blobs of one pack usually share a prefix, so recent subkeys are kept.
const OPEN_CACHE = 256;
const openKeys = new WeakMap<Buffer, Map<string, Buffer>>();

function subkeyFor(key: Buffer, nonce: Uint8Array): Buffer {
  const prefix = nonce.subarray(0, 12);
  let cache = openKeys.get(key);
  if (!cache) openKeys.set(key, (cache = new Map()));
  const name = Buffer.from(prefix.buffer, prefix.byteOffset, 12).toString('latin1');
  let subkey = cache.get(name);
  if (!subkey) {
    subkey = deriveSubkey(key, prefix);
    if (cache.size >= OPEN_CACHE) cache.delete(cache.keys().next().value!);
    cache.set(name, subkey);
  }
  return subkey;
}

/** Encrypt `parts` (concatenated) and authenticate them together with `ad`. */
export function seal(key: Buffer, ad: Uint8Array, ...parts: Uint8Array[]): Buffer {
  let length = SEAL_OVERHEAD;
  for (const p of parts) length += p.length;
  const out = Buffer.allocUnsafe(length);
  sealInto(out, 0, key, ad, ...parts);
  return out;
}

/**
 * `seal` writing straight into `out` at `offset` (a pack under construction), so
 * a blob's ciphertext is copied once instead of twice. `out` must have room for
 * the parts plus SEAL_OVERHEAD; returns the bytes written.
 */
export function sealInto(out: Buffer, offset: number, key: Buffer, ad: Uint8Array, ...parts: Uint8Array[]): number {
  const { nonce, subkey } = nextNonce(key);
  if (gcm && parts.length <= 2) {
    // Straight into `out`: Node's Cipher would return a new buffer per blob (garbage of up to 8 MiB each).
    const at = offset + nonce.copy(out, offset);
    return NONCE_BYTES + gcm.gcmSealInto(subkey, nonce.subarray(12), ad, parts[0] ?? EMPTY, parts[1] ?? EMPTY, out, at);
  }
  const cipher = crypto.createCipheriv('aes-256-gcm', subkey, nonce.subarray(12));
  cipher.setAAD(ad);
  let at = offset + nonce.copy(out, offset);
  for (const p of parts) at += cipher.update(p).copy(out, at);
  at += cipher.final().copy(out, at);
  at += cipher.getAuthTag().copy(out, at);
  return at - offset;
}

/**
 * `open` that decrypts where the bytes lie and returns the plaintext as a view of
 * `sealed`, which the caller gives up (a buffer read for this alone). Without the
 * native addon it is `open`.
 */
export function openInPlace(key: Buffer, ad: Uint8Array, sealed: Buffer): Buffer {
  if (!gcm) return open(key, ad, sealed);
  if (sealed.length < SEAL_OVERHEAD) throw new AuthenticationError('sealed data is truncated');
  const nonce = sealed.subarray(0, NONCE_BYTES);
  const body = sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES);
  if (!gcm.gcmOpenInPlace(subkeyFor(key, nonce), nonce.subarray(12), ad, body, sealed.subarray(sealed.length - TAG_BYTES))) {
    throw new AuthenticationError();
  }
  return body;
}

/** Decrypt and authenticate; throws AuthenticationError if anything was changed. */
export function open(key: Buffer, ad: Uint8Array, sealed: Uint8Array): Buffer {
  if (sealed.length < SEAL_OVERHEAD) throw new AuthenticationError('sealed data is truncated');
  const nonce = sealed.subarray(0, NONCE_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const decipher = crypto.createDecipheriv('aes-256-gcm', subkeyFor(key, nonce), nonce.subarray(12));
  decipher.setAAD(ad);
  decipher.setAuthTag(tag);
  const body = decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES));
  let rest: Buffer;
  try {
    rest = decipher.final();
  } catch {
    throw new AuthenticationError();
  }
  // GCM is a stream mode: final() returns nothing, and a concat would copy every blob once more.
  return rest.length === 0 ? body : Buffer.concat([body, rest]);
}
