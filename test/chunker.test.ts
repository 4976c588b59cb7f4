import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Chunker, DEFAULT_CHUNKER } from '../src/chunker/fastcdc.js';
import { gearTable } from '../src/chunker/gear.js';
import { nativeSyscalls } from '../src/native/syscalls.js';

function cuts(c: Chunker, data: Buffer): number[] {
  const out: number[] = [];
  let start = 0;
  while (start < data.length) {
    const n = c.cut(data, start, data.length);
    out.push(n);
    start += n;
  }
  return out;
}

describe('chunker', () => {
  const gear = gearTable(crypto.randomBytes(32));

  it('the native cut loop finds exactly the boundaries of the JavaScript reference', () => {
    expect(nativeSyscalls()?.fastcdcCut).toBeTypeOf('function');
    const params = [DEFAULT_CHUNKER, { min: 4096, avg: 16384, max: 65536 }, { min: 64, avg: 128, max: 4096 }];
    const inputs = [
      crypto.randomBytes(40 * 1024 * 1024),
      Buffer.alloc(20 * 1024 * 1024), // zeros: cuts only at max
      Buffer.from('text that repeats itself. '.repeat(400_000)),
      crypto.randomBytes(100), // shorter than min
    ];
    for (const p of params) {
      const native = new Chunker(gear, p);
      const js = new Chunker(gear, p, { native: false });
      for (const data of inputs) {
        const a = cuts(native, data);
        expect(a).toEqual(cuts(js, data));
        expect(a.reduce((x, y) => x + y, 0)).toBe(data.length);
        for (const n of a.slice(0, -1)) {
          expect(n).toBeGreaterThan(p.min);
          expect(n).toBeLessThanOrEqual(p.max);
        }
      }
    }
  });

  it('chunk sizes cluster around the average and boundaries survive an insertion', () => {
    const c = new Chunker(gear, DEFAULT_CHUNKER);
    const data = crypto.randomBytes(96 * 1024 * 1024);
    const a = cuts(c, data);
    const mean = data.length / a.length;
    expect(mean).toBeGreaterThan(0.7 * DEFAULT_CHUNKER.avg);
    expect(mean).toBeLessThan(2 * DEFAULT_CHUNKER.avg);
    const mid = 50 * 1024 * 1024;
    const edited = Buffer.concat([data.subarray(0, mid), Buffer.from('inserted'), data.subarray(mid)]);
    const ends = (list: number[], shift: number, after: number) => {
      const out = new Set<number>();
      let pos = 0;
      for (const n of list) {
        pos += n;
        if (pos > after) out.add(pos - shift);
      }
      return out;
    };
    const before = ends(a, 0, mid + 9 * 1024 * 1024);
    const afterEdit = ends(cuts(c, edited), 8, mid + 9 * 1024 * 1024);
    // Every boundary well past the edit is found again, shifted by the 8 inserted bytes.
    for (const b of before) expect(afterEdit.has(b)).toBe(true);
  });
});
