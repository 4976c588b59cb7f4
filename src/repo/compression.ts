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

/**
 * Compress `data` if that saves at least 1/32 of it; returns the codec used and
 * the payload (which is `data` itself when stored raw).
 */
function compressor(level: number): Compressor {
  let c = compressors.get(level);
  if (!c) {
    c = new Compressor();
    c.setParameters({ compressionLevel: level });
    compressors.set(level, c);
  }
  return c;
}

const PROBE_MIN = 256 * 1024;
const PROBE_BYTES = 16 * 1024;

/**
 * In `auto` mode a large blob is compressed only if one of three 16 KiB samples
 * (start, middle, end) shrinks by at least 1/16: already-compressed data (photos,
 * video, archives) then costs three small probes instead of a full zstd pass.
 * The ID does not depend on compression, so a wrong guess only costs space.
 */
function looksCompressible(data: Uint8Array, c: Compressor): boolean {
  const n = data.length;
  for (const at of [0, (n >> 1) - (PROBE_BYTES >> 1), n - PROBE_BYTES]) {
    const sample = data.subarray(at, at + PROBE_BYTES);
    if (c.compress(sample).length < PROBE_BYTES - (PROBE_BYTES >> 4)) return true;
  }
  return false;
}

export function maybeCompress(data: Uint8Array, mode: CompressionMode): { codec: Codec; payload: Uint8Array } {
  if (mode === 'off' || data.length < 64) return { codec: Codec.Raw, payload: data };
  const c = compressor(LEVEL[mode]);
  if (mode === 'auto' && data.length >= PROBE_MIN && !looksCompressible(data, c)) return { codec: Codec.Raw, payload: data };
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
