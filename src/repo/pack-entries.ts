import { type BlobType } from './blob.js';

/** u8 type ‖ ID (32) ‖ u32le offset ‖ u32le sealed length ‖ u32le plaintext length. */
export const ENTRY_BYTES = 1 + 32 + 4 + 4 + 4;

/**
 * A pack's list of blobs as bytes, in the layout of a pack header's entries and
 * of an index object's (docs/FORMAT.md): a backup carries tens of thousands of
 * them from the worker threads to the index. As one Buffer a pack's list is one
 * allocation, copied into the index object as it is; as objects with an ID
 * Buffer each it had cost ~400 bytes of the main thread's heap per blob, held
 * until the index was written (docs/DECISIONS.md, "Memory").
 */
export class PackEntries {
  constructor(readonly bytes: Buffer) {
    if (bytes.length % ENTRY_BYTES !== 0) throw new Error('pack entries have a partial entry');
  }

  get count(): number {
    return this.bytes.length / ENTRY_BYTES;
  }

  type(i: number): BlobType {
    return this.bytes[i * ENTRY_BYTES] as BlobType;
  }

  /** Where entry i's ID starts in `bytes`. */
  idAt(i: number): number {
    return i * ENTRY_BYTES + 1;
  }

  offset(i: number): number {
    return this.bytes.readUInt32LE(i * ENTRY_BYTES + 33);
  }

  length(i: number): number {
    return this.bytes.readUInt32LE(i * ENTRY_BYTES + 37);
  }

  rawLength(i: number): number {
    return this.bytes.readUInt32LE(i * ENTRY_BYTES + 41);
  }
}

/** The entries of a pack being written, one blob at a time. */
export class PackEntriesBuilder {
  private buf = Buffer.allocUnsafe(256 * ENTRY_BYTES);
  private used = 0;

  get count(): number {
    return this.used / ENTRY_BYTES;
  }

  push(type: BlobType, id: Uint8Array, offset: number, length: number, rawLength: number): void {
    if (id.length !== 32) throw new Error('blob ID is not 32 bytes');
    if (this.used + ENTRY_BYTES > this.buf.length) {
      const grown = Buffer.allocUnsafe(this.buf.length * 2);
      this.buf.copy(grown, 0, 0, this.used);
      this.buf = grown;
    }
    const o = this.used;
    this.buf[o] = type;
    this.buf.set(id, o + 1);
    this.buf.writeUInt32LE(offset, o + 33);
    this.buf.writeUInt32LE(length, o + 37);
    this.buf.writeUInt32LE(rawLength, o + 41);
    this.used += ENTRY_BYTES;
  }

  /** The entries so far, in a Buffer of their own (an ArrayBuffer that can be transferred). */
  finish(): PackEntries {
    const out = Buffer.from(new ArrayBuffer(this.used));
    this.buf.copy(out, 0, 0, this.used);
    return new PackEntries(out);
  }
}
