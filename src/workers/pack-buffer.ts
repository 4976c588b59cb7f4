import type crypto from 'node:crypto';
import type { PackOut } from './pack-file.js';

/**
 * A pack being assembled in memory, for a backend that uploads it (S3). A
 * staged file there was written only to be read straight back for the upload:
 * 1 GiB of packs cost ~0.6 s of system time to write, another ~0.3 s to read
 * and ~0.3 s of page faults for the read buffers, on cores the S3 server
 * shares. The caller seals blobs straight into the buffer (`room`, then
 * `advance`), as with PackFile.
 *
 * The buffer owns its whole ArrayBuffer, so a finished pack moves to the main
 * thread without a copy; the main thread sends it back once stored, to be
 * filled again (a fresh 17 MiB buffer per pack costs its page faults again).
 */
export class PackBuffer implements PackOut {
  private used = 0;

  constructor(
    private buf: Buffer,
    private readonly hash: crypto.Hash | undefined,
  ) {}

  /** A buffer for a pack of about `packSize` bytes that will not have to grow for a last blob of up to `slack`. */
  static fresh(packSize: number, slack: number): Buffer {
    return Buffer.allocUnsafeSlow(packSize + slack);
  }

  get length(): number {
    return this.used;
  }

  async room(n: number): Promise<{ buf: Buffer; at: number }> {
    if (this.used + n > this.buf.length) {
      // A blob larger than the slack planned for: grow once, keep the larger buffer for later packs.
      const next = Buffer.allocUnsafeSlow(this.used + n + (this.buf.length >> 2));
      this.buf.copy(next, 0, 0, this.used);
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

  /** The whole buffer (its first `length` bytes are the pack), to move to another thread. */
  get buffer(): Buffer {
    return this.buf;
  }
}
