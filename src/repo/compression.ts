import { Compressor, Decompressor } from 'zstd-napi';

/** How hard to try: `off` stores raw, `auto` is fast zstd, `max` trades speed for size. */
export type CompressionMode = 'off' | 'auto' | 'max';

/** The codec byte that starts every sealed payload, so a reader never guesses. */
export const enum Codec {
  Raw = 0,
  Zstd = 1,
}

// zstd level 1 measured ~5x faster than level 3 on half-random data at the same
// ratio on this machine class (docs/DECISIONS.md); 15 is a slow but strong level.
const LEVEL: Record<Exclude<CompressionMode, 'off'>, number> = { auto: 1, max: 15 };

// One compressor per level per thread: zstd contexts are expensive to create.
const compressors = new Map<number, Compressor>();
let decompressor: Decompressor | undefined;

export function compressionModes(): CompressionMode[] {
  return ['off', 'auto', 'max'];
}

/**
 * Compress `data` if that saves at least 1/32 of it; returns the codec used and
 * the payload (which is `data` itself when stored raw).
 */
export function maybeCompress(data: Uint8Array, mode: CompressionMode): { codec: Codec; payload: Uint8Array } {
  if (mode === 'off' || data.length < 64) return { codec: Codec.Raw, payload: data };
  const level = LEVEL[mode];
  let c = compressors.get(level);
  if (!c) {
    c = new Compressor();
    c.setParameters({ compressionLevel: level });
    compressors.set(level, c);
  }
  const out = c.compress(data);
  if (out.length >= data.length - (data.length >> 5)) return { codec: Codec.Raw, payload: data };
  return { codec: Codec.Zstd, payload: out };
}

export function decompress(codec: number, payload: Buffer, expectedLength?: number): Buffer {
  if (codec === Codec.Raw) return payload;
  if (codec !== Codec.Zstd) throw new Error(`unknown compression codec ${codec}`);
  decompressor ??= new Decompressor();
  const out = decompressor.decompress(payload);
  if (expectedLength !== undefined && out.length !== expectedLength) {
    throw new Error(`decompressed to ${out.length} bytes, expected ${expectedLength}`);
  }
  return out;
}
