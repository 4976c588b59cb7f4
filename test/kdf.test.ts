import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { defaultKdfParams, deriveKeyEncryptionKey } from '../src/crypto/kdf.js';

describe('Argon2id key derivation', () => {
  it('the native binding and the WebAssembly fallback derive the same key', async () => {
    for (const parallelism of [1, 4]) {
      const params = { ...defaultKdfParams(crypto.randomBytes(16)), parallelism, iterations: 1 };
      const pass = 'pässword with ünïcode';
      const a = await deriveKeyEncryptionKey(pass, params);
      const b = await deriveKeyEncryptionKey(pass, params, { native: false });
      expect(a).toHaveLength(32);
      expect(a.equals(b)).toBe(true);
      // Unicode normalization: the NFD spelling of the same passphrase gives the same key.
      expect((await deriveKeyEncryptionKey(pass.normalize('NFD'), params)).equals(a)).toBe(true);
      expect((await deriveKeyEncryptionKey('other', params)).equals(a)).toBe(false);
    }
  });
});
