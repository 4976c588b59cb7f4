import { ownBuffer } from '../native/own-buffer.js';

/**
 * The ArrayBuffers that may be moved (not copied) to another thread. A Buffer
 * that is a view into a larger or shared pool must not be transferred: that would
 * detach memory other Buffers still use.
 */
export function transferList(...views: Uint8Array[]): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const v of views) {
    const ab = v.buffer;
    if (ab instanceof ArrayBuffer && v.byteOffset === 0 && v.byteLength === ab.byteLength && !out.includes(ab)) out.push(ab);
  }
  return out;
}

/**
 * A copy of `b` in an ArrayBuffer of its own (never a slice of Node's shared
 * pool): it can be moved to another thread, and keeps no other bytes alive.
 */
export function copyToOwnBuffer(b: Uint8Array): Buffer {
  const copy = ownBuffer(b.length);
  copy.set(b);
  return copy;
}
