import crypto from 'node:crypto';
import { nativeSyscalls } from '../src/native/syscalls.js';
import { describe, expect, it } from 'vitest';
import { AuthenticationError, NONCE_BYTES, open, seal, sealInto, SEAL_OVERHEAD } from '../src/crypto/aead.js';

describe('extended-nonce AES-256-GCM', () => {
  it('shares a subkey prefix within a run, never repeats an IV, and starts a new run after 2^16 seals', () => {
    const key = crypto.randomBytes(32);
    const ad = Buffer.from('test');
    const prefixes = new Map<string, number>();
    const nonces = new Set<string>();
    const total = (1 << 16) + 10;
    for (let i = 0; i < total; i++) {
      const sealed = seal(key, ad, Buffer.of(i & 0xff));
      const nonce = sealed.subarray(0, NONCE_BYTES).toString('hex');
      nonces.add(nonce);
      const prefix = nonce.slice(0, 24);
      prefixes.set(prefix, (prefixes.get(prefix) ?? 0) + 1);
      if (i % 4099 === 0) expect(open(key, ad, sealed)).toEqual(Buffer.of(i & 0xff));
    }
    expect(nonces.size).toBe(total);
    expect([...prefixes.values()]).toEqual([1 << 16, 10]);
  });

  it('keeps separate runs for separate keys, and each key opens only its own values', () => {
    const a = crypto.randomBytes(32);
    const b = crypto.randomBytes(32);
    const ad = Buffer.from('x');
    const sa = seal(a, ad, Buffer.from('one'));
    const sb = seal(b, ad, Buffer.from('two'));
    expect(sa.subarray(0, 12).equals(sb.subarray(0, 12))).toBe(false);
    expect(open(a, ad, sa).toString()).toBe('one');
    expect(() => open(b, ad, sa)).toThrow(AuthenticationError);
    expect(() => open(a, Buffer.from('y'), sa)).toThrow(AuthenticationError);
  });

  it('the native AES-256-GCM (built by setup) gives the bytes Node gives, and refuses what was changed', () => {
    const native = nativeSyscalls();
    expect(native?.gcmSealInto, 'native addon with gcmSealInto').toBeTypeOf('function');
    for (const length of [0, 1, 16, 4097, 3 * 1024 * 1024 + 1]) {
      const key = crypto.randomBytes(32);
      const iv = crypto.randomBytes(12);
      const ad = crypto.randomBytes(33);
      const a = crypto.randomBytes(Math.min(1, length));
      const b = crypto.randomBytes(length - a.length);
      const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(ad);
      const expected = Buffer.concat([cipher.update(a), cipher.update(b), cipher.final(), cipher.getAuthTag()]);
      const out = Buffer.alloc(3 + length + 16);
      expect(native!.gcmSealInto!(key, iv, ad, a, b, out, 3)).toBe(length + 16);
      expect(out.subarray(3).equals(expected)).toBe(true);
      const body = Buffer.from(expected.subarray(0, length));
      expect(native!.gcmOpenInPlace!(key, iv, ad, body, expected.subarray(length))).toBe(true);
      expect(body.equals(Buffer.concat([a, b]))).toBe(true);
      const tag = Buffer.from(expected.subarray(length));
      tag[5]! ^= 1;
      expect(native!.gcmOpenInPlace!(key, iv, ad, Buffer.from(expected.subarray(0, length)), tag)).toBe(false);
    }
    expect(() => native!.gcmSealInto!(crypto.randomBytes(32), crypto.randomBytes(12), Buffer.alloc(0), Buffer.alloc(10), Buffer.alloc(0), Buffer.alloc(20), 0)).toThrow(/no room/);
  });

  it('sealInto writes the same layout as seal, at an offset, and opens', () => {
    const key = crypto.randomBytes(32);
    const ad = Buffer.from('pack');
    const parts = [Buffer.of(1), crypto.randomBytes(100_000)];
    const out = Buffer.alloc(7 + 1 + 100_000 + SEAL_OVERHEAD + 5, 0xee);
    const n = sealInto(out, 7, key, ad, ...parts);
    expect(n).toBe(1 + 100_000 + SEAL_OVERHEAD);
    expect(out.subarray(0, 7).every((x) => x === 0xee)).toBe(true);
    expect(out.subarray(7 + n).every((x) => x === 0xee)).toBe(true);
    expect(open(key, ad, out.subarray(7, 7 + n))).toEqual(Buffer.concat(parts));
    out[7 + 500] ^= 1;
    expect(() => open(key, ad, out.subarray(7, 7 + n))).toThrow(AuthenticationError);
  });
});
