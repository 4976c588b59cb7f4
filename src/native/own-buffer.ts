import { nativeSyscalls } from './syscalls.js';

/** Below this a page fault per page costs less than the system call that saves them. */
const PREFAULT_MIN = 256 * 1024;

/**
 * A new Buffer in an ArrayBuffer of its own (never a slice of Node's shared
 * pool, so it can be moved to another thread and keeps no other bytes alive),
 * for bytes about to be written in full. Large ones have their pages faulted in
 * by one system call (the addon's `prefault`) rather than one fault per 4 KiB
 * page as they are written: for the mount's chunk cache, filled with new
 * memory on a fresh mount, faults had been a quarter of the worker threads'
 * time. 256 MiB of 1 MiB buffers, filled in a fresh process: 97–112 ms with
 * it, 146–193 ms without (most of it system time).
 */
export function ownBuffer(size: number): Buffer {
  const b = Buffer.allocUnsafeSlow(size);
  faultIn(b);
  return b;
}

/** Fault in the pages of memory about to be written in full, in one system call if it is large enough to pay. */
export function faultIn(bytes: Uint8Array): void {
  // nativeSyscalls() loads the addon once; without it (or an addon older than prefault) pages fault as usual.
  if (bytes.length >= PREFAULT_MIN) nativeSyscalls()?.prefault?.(bytes);
}
