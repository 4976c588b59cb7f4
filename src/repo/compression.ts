import { createRequire } from 'node:module';
import { Decompressor } from 'zstd-napi';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import { ownBuffer } from '../native/own-buffer.js';
import { copyBytes } from '../native/copy-bytes.js';

// The low-level binding compresses into a buffer the caller owns; the Compressor
// class allocates a new output buffer per call, garbage a backup makes per chunk.
const zstd = createRequire(import.meta.url)('zstd-napi/binding') as typeof ZstdBinding;

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

// One compression context per level per thread: zstd contexts are expensive to create.
const contexts = new Map<number, ZstdBinding.CCtx>();
let decompressor: Decompressor | undefined;

function context(level: number): ZstdBinding.CCtx {
  let c = contexts.get(level);
  if (!c) {
    c = new zstd.CCtx();
    c.setParameter(zstd.CParameter.compressionLevel, level);
    contexts.set(level, c);
  }
  return c;
}

/** This thread's output buffer, reused by every call (see maybeCompress). */
let scratch = Buffer.alloc(0);

/**
 * Compress into the scratch buffer, at most `room` bytes of output; undefined if
 * the result would not fit (then the data does not compress well enough anyway).
 */
function compressInto(c: ZstdBinding.CCtx, data: Uint8Array, room: number): Buffer | undefined {
  if (scratch.length < room) scratch = Buffer.allocUnsafe(Math.max(room, 1 << 20));
  try {
    return scratch.subarray(0, c.compress2(scratch.subarray(0, room), data));
  } catch (err) {
    if (/too small/i.test((err as Error).message)) return undefined;
    throw err;
  }
}

const PROBE_MIN = 256 * 1024;
const PROBE_BYTES = 16 * 1024;

/**
 * In `auto` mode a large blob is compressed only if one of three 16 KiB samples
 * (start, middle, end) shrinks by at least 1/16: already-compressed data (photos,
 * video, archives) then costs three small probes instead of a full zstd pass.
 * The ID does not depend on compression, so a wrong guess only costs space.
 */
function looksCompressible(data: Uint8Array, c: ZstdBinding.CCtx): boolean {
  const n = data.length;
  const want = PROBE_BYTES - (PROBE_BYTES >> 4);
  for (const at of [0, (n >> 1) - (PROBE_BYTES >> 1), n - PROBE_BYTES]) {
    if (compressInto(c, data.subarray(at, at + PROBE_BYTES), want - 1) !== undefined) return true;
  }
  return false;
}

/**
 * Compress `data` if that saves at least 1/32 of it; returns the codec used and
 * the payload: `data` itself when stored raw, else a view into a buffer this
 * thread reuses, valid until the next call (every caller seals it at once).
 */
export function maybeCompress(data: Uint8Array, mode: CompressionMode): { codec: Codec; payload: Uint8Array } {
  if (mode === 'off' || data.length < 64) return { codec: Codec.Raw, payload: data };
  const c = context(LEVEL[mode]);
  if (mode === 'auto' && data.length >= PROBE_MIN && !looksCompressible(data, c)) return { codec: Codec.Raw, payload: data };
  const out = compressInto(c, data, data.length - (data.length >> 5) - 1);
  if (!out) return { codec: Codec.Raw, payload: data };
  return { codec: Codec.Zstd, payload: out };
}

/** This thread's decompression output buffer, for decompressScratch. */
let plainScratch = Buffer.alloc(0);
let dctx: ZstdBinding.DCtx | undefined;

/**
 * The size a zstd frame says it holds: every blob Aegis writes records it.
 * Undefined for a frame without it, or too large to trust for one allocation.
 */
function recordedSize(payload: Buffer): number | undefined {
  const size = zstd.getFrameContentSize(payload);
  return size !== null && size <= 64 * 1024 * 1024 ? size : undefined;
}

/** Decompress a frame of `size` bytes into the front of `out`. */
function decompressInto(out: Buffer, payload: Buffer, size: number): Buffer {
  dctx ??= new zstd.DCtx();
  const n = dctx.decompress(out, payload);
  if (n !== size) throw new Error(`decompressed to ${n} bytes, the frame says ${size}`);
  return n === out.length ? out : out.subarray(0, n);
}

/**
 * `decompress` into a buffer this thread reuses: the result is valid until the
 * next call on this thread (a restore writes it out at once).
 */
export function decompressScratch(codec: number, payload: Buffer): Buffer {
  const size = codec === Codec.Zstd ? recordedSize(payload) : undefined;
  if (size === undefined) return decompress(codec, payload);
  if (plainScratch.length < size) plainScratch = Buffer.allocUnsafe(Math.max(size, 1 << 20));
  return decompressInto(plainScratch, payload, size);
}

/**
 * Decompress (a raw payload: copy) into exactly `out`, whose length is the
 * plaintext's as the index records it; a payload of any other size is an error.
 * For the mount's chunk cache, which decompresses into memory it keeps.
 */
export function decompressTo(codec: number, payload: Buffer, out: Buffer): Buffer {
  if (codec === Codec.Raw) {
    if (payload.length !== out.length) throw new Error(`holds ${payload.length} bytes, the index says ${out.length}`);
    copyBytes(payload, out, 0, 0, payload.length);
    return out;
  }
  if (codec !== Codec.Zstd) throw new Error(`unknown compression codec ${codec}`);
  return decompressInto(out, payload, out.length);
}

export function decompress(codec: number, payload: Buffer, expectedLength?: number): Buffer {
  if (codec === Codec.Raw) return payload;
  if (codec !== Codec.Zstd) throw new Error(`unknown compression codec ${codec}`);
  const size = recordedSize(payload);
  // Into a buffer made here for the size the frame gives: the mount's chunk cache keeps it (see ownBuffer).
  const out = size !== undefined ? decompressInto(ownBuffer(size), payload, size) : (decompressor ??= new Decompressor()).decompress(payload);
  if (expectedLength !== undefined && out.length !== expectedLength) {
    throw new Error(`decompressed to ${out.length} bytes, expected ${expectedLength}`);
  }
  return out;
}
