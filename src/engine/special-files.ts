import { constants as fsc } from 'node:fs';
import { nativeSyscalls } from '../native/syscalls.js';

/**
 * FIFOs and device nodes: Node has no mknod(2), so these use the native addon
 * (native/aegis_native.c). Without it they are reported as not restorable.
 */
function mknod(p: Buffer, mode: number, dev: bigint): void {
  const native = nativeSyscalls();
  if (!native) throw new Error('cannot create special files: the native addon is not built (run "npm run setup")');
  native.mknod(p, mode, dev);
}

export function makeFifo(p: Buffer, mode: number): void {
  mknod(p, fsc.S_IFIFO | (mode & 0o7777), 0n);
}

export function makeDevice(p: Buffer, kind: 'chardev' | 'blockdev', rdev: number, mode: number): void {
  mknod(p, (kind === 'chardev' ? fsc.S_IFCHR : fsc.S_IFBLK) | (mode & 0o7777), BigInt(rdev));
}
