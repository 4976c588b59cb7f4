import fs from 'node:fs';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { copyBytes } from '../src/native/copy-bytes.js';
import { faultIn, ownBuffer } from '../src/native/own-buffer.js';
import { nativeSyscalls } from '../src/native/syscalls.js';
import { transferList } from '../src/workers/transfer.js';

const rssBytes = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
const [major, minor] = os.release().split('.').map(Number) as [number, number];
const kernelCanPrefault = major > 5 || (major === 5 && minor >= 14);

describe('ownBuffer and prefault', () => {
  it('gives each buffer an ArrayBuffer of its own, which can be moved to another thread', () => {
    for (const size of [0, 10, 4096, 300 * 1024, 1024 * 1024 + 7]) {
      const b = ownBuffer(size);
      expect(b.length).toBe(size);
      expect(b.byteOffset).toBe(0);
      expect(b.buffer.byteLength).toBe(size);
      if (size > 0) expect(transferList(b)).toEqual([b.buffer]);
    }
  });

  it.runIf(kernelCanPrefault)('makes the pages of a new buffer resident at once, and keeps bytes already written', () => {
    const prefault = nativeSyscalls()!.prefault!;
    expect(prefault).toBeTypeOf('function');
    const size = 64 * 1024 * 1024;
    const b = Buffer.allocUnsafeSlow(size);
    b.write('written before', 100);
    b.write('and at the end', size - 20);
    const before = rssBytes();
    expect(prefault(b)).toBe(true);
    // Untouched, the 64 MiB were not resident (a mapping of their own); now they are.
    expect(rssBytes() - before).toBeGreaterThan(60 * 1024 * 1024);
    expect(b.toString('utf8', 100, 114)).toBe('written before');
    expect(b.toString('utf8', size - 20, size - 6)).toBe('and at the end');
    // A view that does not start or end on a page: only whole pages inside it are touched.
    expect(prefault(b.subarray(4097, 4097 + 3 * 4096 + 5))).toBe(true);
    expect(prefault(b.subarray(10, 20))).toBe(true);
  });
});

describe('copyBytes', () => {
  const pattern = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));
  const shared = (n: number): Buffer => Buffer.from(new SharedArrayBuffer(n));

  it('copies as Buffer.copy does, between any of ordinary and shared memory', () => {
    expect(nativeSyscalls()!.copyBytes).toBeTypeOf('function');
    for (const [from, to] of [[Buffer.alloc, Buffer.alloc], [shared, Buffer.alloc], [Buffer.alloc, shared], [shared, shared]] as const) {
      const source = from(3 * 4096 + 11);
      pattern(source.length, 3).copy(source);
      const target = to(5000);
      const expected = Buffer.alloc(5000);
      source.copy(expected, 17, 4000, 8900);
      copyBytes(source, target, 17, 4000, 8900);
      expect(target.equals(expected)).toBe(true);
    }
  });

  it('moves overlapping ranges of one buffer as memmove does, both ways', () => {
    for (const make of [Buffer.alloc, shared]) {
      const b = make(1000);
      pattern(1000, 1).copy(b);
      const expected = pattern(1000, 1);
      expected.copy(expected, 0, 100, 900);
      copyBytes(b, b, 0, 100, 900);
      expect(b.equals(expected)).toBe(true);
      expected.copy(expected, 150, 0, 800);
      copyBytes(b, b, 150, 0, 800);
      expect(b.equals(expected)).toBe(true);
    }
  });

  it('refuses a range outside either buffer, in shared memory too', () => {
    for (const make of [Buffer.alloc, shared]) {
      const source = make(100);
      const target = make(50);
      expect(() => copyBytes(source, target, 0, 0, 51)).toThrow(RangeError);
      expect(() => copyBytes(source, target, 10, 0, 41)).toThrow(RangeError);
      expect(() => copyBytes(source, target, 0, 90, 101)).toThrow(RangeError);
      expect(() => copyBytes(source, target, 0, 60, 50)).toThrow(RangeError);
      expect(() => copyBytes(source, target, 51, 0, 0)).toThrow(RangeError);
    }
  });
});

describe.runIf(kernelCanPrefault)('faultIn', () => {
  it('makes a fresh region of shared memory resident, and leaves small ones to fault as usual', () => {
    const size = 64 * 1024 * 1024;
    const b = Buffer.from(new SharedArrayBuffer(size));
    const before = rssBytes();
    faultIn(b.subarray(0, 4096)); // below the size where one call pays: nothing
    expect(rssBytes() - before).toBeLessThan(1024 * 1024);
    faultIn(b);
    expect(rssBytes() - before).toBeGreaterThan(60 * 1024 * 1024);
    expect([b[0], b[size >> 1], b[size - 1]]).toEqual([0, 0, 0]);
  });
});
