import fs from 'node:fs';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { ownBuffer } from '../src/native/own-buffer.js';
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
