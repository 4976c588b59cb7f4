import type crypto from 'node:crypto';
import { copyBytes } from '../native/copy-bytes.js';
import type { PackOut } from './pack-file.js';

/**
 * A pack being assembled in memory, for a backend that uploads it (S3). A
 * staged file there was written only to be read straight back for the upload:
 * 1 GiB of packs cost ~0.6 s of system time to write, another ~0.3 s to read
 * and ~0.3 s of page faults for the read buffers, on cores the S3 server
 * shares. The caller seals blobs straight into the buffer (`room`, then
 * `advance`), as with PackFile.
 *
 * The buffer is shared memory, a slot of PackSlots: the main thread uploads
 * straight from it and says when it is done, and the slot is filled again.
 */
export class PackBuffer implements PackOut {
  private used = 0;

  constructor(
    private buf: Buffer,
    private readonly hash: crypto.Hash | undefined,
  ) {}

  /** A buffer for a pack of about `packSize` bytes that will not have to grow for a last blob of up to `slack`. */
  static fresh(packSize: number, slack: number): Buffer {
    return sharedBuffer(packSize + slack);
  }

  get length(): number {
    return this.used;
  }

  async room(n: number): Promise<{ buf: Buffer; at: number }> {
    if (this.used + n > this.buf.length) {
      // A blob larger than the slack planned for: grow once, keep the larger buffer for later packs.
      const next = sharedBuffer(this.used + n + (this.buf.length >> 2));
      copyBytes(this.buf, next, 0, 0, this.used);
      this.buf = next;
    }
    return { buf: this.buf, at: this.used };
  }

  advance(n: number): void {
    this.used += n;
  }

  /** The pack is complete; its length. */
  async finish(): Promise<number> {
    this.hash?.update(this.buf.subarray(0, this.used));
    return this.used;
  }

  /** Nothing to clean up: the memory goes with the object. */
  async abort(): Promise<void> {}

  /** The SHA-256 of the pack's bytes, when asked for; valid once finished. */
  sha256(): string | undefined {
    return this.hash?.digest('hex');
  }

  /** The whole buffer (its first `length` bytes are the pack): the slot's, or a larger one it grew into. */
  get buffer(): Buffer {
    return this.buf;
  }
}

function sharedBuffer(size: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(size));
}

/**
 * One thread's in-memory pack buffers, numbered. The main thread gets each
 * slot's memory once (and again only if a pack outgrew it); after that a
 * finished pack goes to it as a slot number and comes back as one.
 *
 * Why not move each pack's buffer to the main thread and back: an ArrayBuffer
 * that arrives in a thread is new external memory to V8 there, and V8 starts a
 * full garbage collection for about every 64 MiB of it, so every fourth pack
 * of 16 MiB cost the main thread one (a backup of the bench tree to S3: 26
 * mark-compacts of its heap, against 3 for the same backup to a local disk).
 */
export class PackSlots {
  private readonly buffers: Buffer[] = [];
  private readonly free: number[] = [];
  /** Slots whose memory the main thread does not have. */
  private readonly unsent = new Set<number>();

  constructor(
    private readonly packSize: number,
    private readonly slack: number,
  ) {}

  /** A free slot and its buffer, a new one if every slot is in use. */
  take(): { slot: number; buf: Buffer } {
    const free = this.free.pop();
    if (free !== undefined) return { slot: free, buf: this.buffers[free]! };
    const slot = this.buffers.push(PackBuffer.fresh(this.packSize, this.slack)) - 1;
    this.unsent.add(slot);
    return { slot, buf: this.buffers[slot]! };
  }

  /**
   * The pack in `slot` is finished, in `buf` (the slot's buffer or a larger
   * one it grew into, which the slot keeps): the memory to send with it if the
   * main thread does not have it yet.
   */
  emit(slot: number, buf: Buffer): SharedArrayBuffer | undefined {
    if (buf !== this.buffers[slot]) {
      this.buffers[slot] = buf;
      this.unsent.add(slot);
    }
    if (!this.unsent.delete(slot)) return undefined;
    return buf.buffer as SharedArrayBuffer;
  }

  /** The slot's pack is stored (or abandoned): fill it again. */
  release(slot: number): void {
    if (!this.free.includes(slot)) this.free.push(slot);
  }

  /** How many buffers this thread has made (for tests). */
  get count(): number {
    return this.buffers.length;
  }
}
