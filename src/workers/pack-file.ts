import type crypto from 'node:crypto';
import fs, { constants as fsc } from 'node:fs';
import { nativeSyscalls } from '../native/syscalls.js';

/**
 * Block size for O_DIRECT: memory address, file offset and length of every
 * direct write are multiples of it. 4096 suits 512-byte and 4 KiB devices alike.
 */
export const DIRECT_ALIGN = 4096;

/**
 * Writing a pack failed: a repository problem (a full disk, a removed staging
 * directory), never the source file's. It fails the whole batch, and so the
 * backup, instead of being reported as one unreadable file.
 */
export class PackWriteError extends Error {
  constructor(file: string, cause: unknown) {
    super(`cannot write a new pack at ${file}: ${(cause as Error).message}`, { cause });
    this.name = 'PackWriteError';
  }
}

function packIo<T>(file: string, io: () => T): T {
  try {
    return io();
  } catch (err) {
    throw new PackWriteError(file, err);
  }
}

function isEinval(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'EINVAL';
}

function roundUp(n: number): number {
  return Math.ceil(n / DIRECT_ALIGN) * DIRECT_ALIGN;
}

/** A buffer whose first byte is DIRECT_ALIGN-aligned (a plain one without the addon). */
function alignedBuffer(size: number): Buffer {
  const alignedBytes = nativeSyscalls()?.alignedBytes;
  if (!alignedBytes) return Buffer.allocUnsafe(size);
  const u8 = alignedBytes(size, DIRECT_ALIGN);
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

function writeAllAsync(fd: number, data: Buffer, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number): void => {
      if (done === data.length) return resolve();
      fs.write(fd, data, done, data.length - done, position + done, (err, n) => (err ? reject(err) : step(done + n)));
    };
    step(0);
  });
}

/** Where a worker seals blobs: a pack in a staged file (PackFile) or in memory (PackBuffer). */
export interface PackOut {
  readonly length: number;
  /** The buffer and the offset in it where `n` more bytes may be written. */
  room(n: number): Promise<{ buf: Buffer; at: number }>;
  /** `n` bytes were written at the offset `room` gave. */
  advance(n: number): void;
  /** Everything is in: the pack's length. */
  finish(): Promise<number>;
  abort(): Promise<void>;
  sha256(): string | undefined;
}

/** Copy bytes in at the end of a pack (its trailer). */
export async function appendTo(out: PackOut, data: Uint8Array): Promise<void> {
  const { buf, at } = await out.room(data.length);
  buf.set(data, at);
  out.advance(data.length);
}

/** Two write buffers a thread keeps from pack to pack: one fills while the other is written. */
export class WriteBuffers {
  constructor(
    public a: Buffer,
    public b: Buffer,
  ) {}

  static create(size: number): WriteBuffers {
    return new WriteBuffers(alignedBuffer(roundUp(size)), alignedBuffer(roundUp(size)));
  }
}

/**
 * A pack being staged in a file. The caller seals blobs straight into a write
 * buffer (`room`, then `advance`); a full buffer is written by libuv's pool
 * while the thread fills the other one.
 *
 * With `direct`, the file is written with O_DIRECT: the bytes go from the buffer
 * to the device without a copy into the page cache. On this VM class a buffered
 * write of 1 GiB cost 0.8–1.4 s of system time plus the flusher's work, a direct
 * one 0.1 s (docs/DECISIONS.md, "Backup pipeline"), and the backup never reads a pack
 * back. Direct writes need aligned offsets and lengths, so a flush writes the
 * aligned part and carries the tail (under one block) into the other buffer;
 * `finish` pads the last block with zeros and truncates the file to its true
 * length. Where the filesystem refuses O_DIRECT (tmpfs, some network
 * filesystems) the file is written the ordinary way instead.
 */
export class PackFile implements PackOut {
  private fd: number;
  private closed = false;
  private direct: boolean;
  /** The buffer being filled; `used` of its bytes belong at file offset `written`. */
  private buf: Buffer;
  private used = 0;
  private written = 0;
  /** The write of the other buffer, if one is under way. */
  private inFlight: Promise<void> | undefined;

  constructor(
    readonly file: string,
    private readonly buffers: WriteBuffers,
    direct: boolean,
    private readonly hash: crypto.Hash | undefined,
  ) {
    this.buf = buffers.a;
    this.direct = direct && nativeSyscalls()?.alignedBytes !== undefined;
    this.fd = this.direct ? this.openDirect() : packIo(file, () => fs.openSync(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600));
  }

  /** Whether the file was written with O_DIRECT to the end. */
  get wasDirect(): boolean {
    return this.direct;
  }

  /** The length of the pack so far. */
  get length(): number {
    return this.written + this.used;
  }

  private openDirect(): number {
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL;
    try {
      return fs.openSync(this.file, flags | fsc.O_DIRECT, 0o600);
    } catch (err) {
      if (!isEinval(err)) throw new PackWriteError(this.file, err);
      this.direct = false;
      return packIo(this.file, () => fs.openSync(this.file, flags, 0o600));
    }
  }

  /** Direct writes were refused after all: go on through the page cache, same file. */
  private leaveDirect(): void {
    this.close();
    this.direct = false;
    this.fd = packIo(this.file, () => fs.openSync(this.file, fsc.O_WRONLY));
    this.closed = false;
  }

  /**
   * Write `buf[0, length)` at `position` (a block boundary), in libuv's pool. A
   * direct file gets whole blocks: `buf` past `length` up to the next boundary
   * is padding, zeroed here (the caller truncates the file after the last).
   */
  private async put(buf: Buffer, length: number, position: number): Promise<void> {
    this.hash?.update(buf.subarray(0, length));
    if (this.direct) {
      const padded = roundUp(length);
      buf.fill(0, length, padded);
      try {
        await writeAllAsync(this.fd, buf.subarray(0, padded), position);
        return;
      } catch (err) {
        if (!isEinval(err)) throw new PackWriteError(this.file, err);
        this.leaveDirect();
      }
    }
    try {
      await writeAllAsync(this.fd, buf.subarray(0, length), position);
    } catch (err) {
      throw new PackWriteError(this.file, err);
    }
  }

  private other(): Buffer {
    return this.buf === this.buffers.a ? this.buffers.b : this.buffers.a;
  }

  /**
   * Start writing the current buffer (its aligned part, for a direct file) and
   * continue in the other one, with the unwritten tail carried over.
   */
  private async flush(need: number): Promise<void> {
    await this.inFlight;
    const length = this.direct ? this.used - (this.used % DIRECT_ALIGN) : this.used;
    let next = this.other();
    if (next.length < need) {
      next = alignedBuffer(roundUp(need));
      if (this.buf === this.buffers.a) this.buffers.b = next;
      else this.buffers.a = next;
    }
    this.buf.copy(next, 0, length, this.used);
    const full = this.buf;
    const position = this.written;
    this.buf = next;
    this.used -= length;
    this.written += length;
    if (length > 0) {
      const write = this.put(full, length, position);
      // Awaited by the next flush or by finish; until then a failure must not go unhandled.
      write.catch(() => {});
      this.inFlight = write;
    }
  }

  /** The buffer and the offset in it where `n` more bytes may be written. */
  async room(n: number): Promise<{ buf: Buffer; at: number }> {
    if (this.used + n > this.buf.length) await this.flush(this.used % DIRECT_ALIGN + n);
    return { buf: this.buf, at: this.used };
  }

  /** `n` bytes were written at the offset `room` gave. */
  advance(n: number): void {
    this.used += n;
  }

  /** Write everything and close the file; the pack's length. */
  async finish(): Promise<number> {
    try {
      await this.inFlight;
      this.inFlight = undefined;
      const length = this.length;
      if (this.used > 0) {
        await this.put(this.buf, this.used, this.written);
        if (this.direct) packIo(this.file, () => fs.ftruncateSync(this.fd, length));
        this.written = length;
        this.used = 0;
      }
      return length;
    } finally {
      this.close();
    }
  }

  /** The SHA-256 of the pack's bytes, when asked for; valid once finished. */
  sha256(): string | undefined {
    return this.hash?.digest('hex');
  }

  private close(): void {
    if (this.closed) return;
    // Never twice: another thread may have been given the same descriptor number since.
    this.closed = true;
    fs.closeSync(this.fd);
  }

  /** Close and remove the file after a failure (once any write under way has ended). */
  async abort(): Promise<void> {
    await this.inFlight?.catch(() => {});
    try {
      this.close();
    } finally {
      fs.rmSync(this.file, { force: true });
    }
  }
}
