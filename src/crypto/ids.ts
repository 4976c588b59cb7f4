import { Blake3Hasher } from '@napi-rs/blake-hash';

/**
 * Content IDs are keyed BLAKE3-256 of the plaintext under the repository's ID key,
 * so someone holding the storage cannot test whether a known file is stored.
 * The native binding gives the same digests as hash-wasm's BLAKE3 at about six
 * times the speed (docs/DECISIONS.md).
 */
export const ID_BYTES = 32;

// One keyed hasher per key, reset between uses: creating the native hasher cost
// more than hashing a 4 KiB chunk. Keys are long-lived Buffers (the ID key, the
// tree ID key), so they are looked up by identity.
const hashers = new WeakMap<Buffer, Blake3Hasher>();

export function keyedId(idKey: Buffer, data: Uint8Array): Buffer {
  let h = hashers.get(idKey);
  if (!h) hashers.set(idKey, (h = Blake3Hasher.newKeyed(idKey)));
  else h.reset();
  return h.update(data).digestBuffer();
}

/** Derive a 32-byte subkey for a named purpose (BLAKE3 derive_key mode). */
export function deriveSubkey(context: string, keyMaterial: Uint8Array): Buffer {
  return Blake3Hasher.deriveKey(context, keyMaterial);
}

export function idToHex(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex');
}

export function hexToId(hex: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`not an object ID: ${hex}`);
  return Buffer.from(hex, 'hex');
}
