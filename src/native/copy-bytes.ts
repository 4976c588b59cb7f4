import { nativeSyscalls } from './syscalls.js';

const nativeCopy = nativeSyscalls()?.copyBytes;

/**
 * source[sourceStart, sourceEnd) to target[targetStart…], as Buffer.copy does
 * (overlapping ranges of one buffer too), but at memmove speed when either side
 * lies in shared memory. V8 copies a SharedArrayBuffer's bytes with relaxed
 * atomic word stores, about three times slower: the mount's chunk cache arena
 * (mount/blob-arena.ts) is copied out of for every read, the backup's read
 * windows shifted in place. A range that does not fit throws a RangeError.
 */
export function copyBytes(source: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number): void {
  if (nativeCopy && (source.buffer instanceof SharedArrayBuffer || target.buffer instanceof SharedArrayBuffer)) {
    nativeCopy(source, target, targetStart, sourceStart, sourceEnd);
    return;
  }
  if (sourceStart > sourceEnd || sourceEnd > source.length) throw new RangeError('copyBytes: range outside a buffer');
  // set() copies as if through a temporary, so overlapping ranges of one buffer come out right.
  target.set(source.subarray(sourceStart, sourceEnd), targetStart);
}
