/**
 * Content-defined chunking in the style of FastCDC (Xia et al., 2016/2020):
 * a gear rolling hash, no hashing of the first `min` bytes of a chunk, and
 * normalized chunking (a stricter mask before `avg`, a looser one after) so
 * that sizes cluster around the average.
 *
 * The hash is 32 bits wide, shifted left one bit per byte, so it depends on the
 * last 32 bytes; the masks test its top bits, which carry the most history.
 */
import { nativeSyscalls } from '../native/syscalls.js';

export interface ChunkerParams {
  min: number;
  avg: number;
  max: number;
}

export const DEFAULT_CHUNKER: ChunkerParams = { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 };

export function validateChunkerParams(p: ChunkerParams): void {
  const ok =
    Number.isInteger(p.min) && Number.isInteger(p.avg) && Number.isInteger(p.max) &&
    p.min >= 64 && p.min < p.avg && p.avg < p.max && p.max <= 64 * 1024 * 1024 &&
    (p.avg & (p.avg - 1)) === 0;
  if (!ok) throw new Error(`invalid chunker parameters ${JSON.stringify(p)} (need min < avg < max, avg a power of two, max ≤ 64 MiB)`);
}

function topBitsMask(bits: number): number {
  return bits >= 32 ? -1 : (~((1 << (32 - bits)) - 1)) | 0;
}

export class Chunker {
  private readonly maskStrict: number;
  private readonly maskLoose: number;
  private readonly native = nativeSyscalls()?.fastcdcCut;

  constructor(private readonly gear: Int32Array, readonly params: ChunkerParams, opts: { native?: boolean } = {}) {
    validateChunkerParams(params);
    const bits = Math.round(Math.log2(params.avg));
    this.maskStrict = topBitsMask(bits + 2);
    this.maskLoose = topBitsMask(bits - 2);
    if (opts.native === false) this.native = undefined;
  }

  /**
   * Length of the next chunk of `buf[start, end)`. When `final` is false the caller
   * must supply at least `max` bytes (or all that remain), otherwise a cut could
   * depend on where a read happened to stop.
   */
  cut(buf: Uint8Array, start: number, end: number): number {
    const { min, avg, max } = this.params;
    // The native loop (native/aegis_native.c) computes exactly the same cut; the
    // JavaScript below is the reference and the fallback.
    if (this.native) return this.native(buf, start, end, this.gear, min, avg, max, this.maskStrict, this.maskLoose);
    let n = end - start;
    if (n <= min) return n;
    if (n > max) n = max;
    const normal = Math.min(avg, n);
    const gear = this.gear;
    const ms = this.maskStrict;
    const ml = this.maskLoose;
    let h = 0;
    let i = start + min;
    const normalEnd = start + normal;
    for (; i < normalEnd; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & ms) === 0) return i - start + 1;
    }
    const stop = start + n;
    for (; i < stop; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & ml) === 0) return i - start + 1;
    }
    return n;
  }
}
