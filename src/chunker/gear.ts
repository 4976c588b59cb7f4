import crypto from 'node:crypto';
import { deriveSubkey } from '../crypto/ids.js';

/**
 * The gear table maps each byte value to a pseudo-random 32-bit word. It is the
 * AES-256-CTR keystream (zero IV) under a key derived from the repository's
 * chunker secret, so chunk boundaries depend on a secret and cannot be used to
 * fingerprint known files by their chunk sizes.
 */
export function gearTable(chunkerSecret: Buffer): Int32Array {
  const key = deriveSubkey('aegis 2026 chunker gear table v1', chunkerSecret);
  const cipher = crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const stream = Buffer.concat([cipher.update(Buffer.alloc(256 * 4)), cipher.final()]);
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) table[i] = stream.readInt32LE(i * 4);
  return table;
}
