import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import { Codec, decompress, decompressScratch, maybeCompress } from '../src/repo/compression.js';

const zstd = createRequire(import.meta.url)('zstd-napi/binding') as typeof ZstdBinding;
const text = Buffer.from('the same words again and again, '.repeat(20000));

/** The zstd payload maybeCompress makes for `data`, copied out of its scratch buffer. */
function frameOf(data: Buffer): Buffer {
  const { codec, payload } = maybeCompress(data, 'auto');
  expect(codec).toBe(Codec.Zstd);
  return Buffer.from(payload);
}

describe('compression (FORMAT.md §13)', () => {
  it('writes frames that record their content size, and reads them back exactly', () => {
    const frame = frameOf(text);
    expect(zstd.getFrameContentSize(frame)).toBe(text.length);
    const plain = decompress(Codec.Zstd, frame);
    expect(plain.equals(text)).toBe(true);
    // A buffer of its own, exactly the plaintext: the mount's cache keeps it and may move it to another thread.
    expect([plain.byteOffset, plain.buffer.byteLength]).toEqual([0, text.length]);
    expect(decompressScratch(Codec.Zstd, frame).equals(text)).toBe(true);
  });

  it('reads a frame that does not record its size (another writer) through the streaming decoder', () => {
    const c = new zstd.CCtx();
    c.setParameter(zstd.CParameter.contentSizeFlag, 0);
    const out = Buffer.alloc(text.length);
    const frame = Buffer.from(out.subarray(0, c.compress2(out, text)));
    expect(zstd.getFrameContentSize(frame)).toBeNull();
    expect(decompress(Codec.Zstd, frame).equals(text)).toBe(true);
    expect(decompressScratch(Codec.Zstd, frame).equals(text)).toBe(true);
  });

  it('rejects a payload that is not exactly one frame', () => {
    const frame = frameOf(text);
    const cases = {
      'two frames': Buffer.concat([frame, frameOf(Buffer.from('another plaintext, '.repeat(100)))]),
      'trailing bytes': Buffer.concat([frame, Buffer.from([1, 2, 3])]),
      truncated: frame.subarray(0, frame.length - 3),
    };
    for (const [what, payload] of Object.entries(cases)) {
      expect(() => decompress(Codec.Zstd, payload), what).toThrow();
      expect(() => decompressScratch(Codec.Zstd, payload), what).toThrow();
    }
  });

  it('rejects an unknown codec byte', () => {
    expect(() => decompress(2, Buffer.from('x'))).toThrow(/unknown compression codec 2/);
  });
});
