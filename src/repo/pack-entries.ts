import { type BlobType } from './blob.js';

/** Where one blob lies in its pack, as an object. */
export interface PackedBlob {
  type: BlobType;
  id: Buffer;
  offset: number;
  length: number;
  rawLength: number;
}

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

  static of(blobs: readonly PackedBlob[]): PackEntries {
    const b = new PackEntriesBuilder(blobs.length);
    for (const x of blobs) b.push(x.type, x.id, x.offset, x.length, x.rawLength);
    return b.finish();
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

  /** Every entry as an object (with its own copy of the ID). */
  blobs(): PackedBlob[] {
    const out: PackedBlob[] = [];
    for (let i = 0; i < this.count; i++) {
      const at = this.idAt(i);
      out.push({ type: this.type(i), id: Buffer.from(this.bytes.subarray(at, at + 32)), offset: this.offset(i), length: this.length(i), rawLength: this.rawLength(i) });
    }
    return out;
  }
}

/** The entries of a pack being written, one blob at a time. */
export class PackEntriesBuilder {
  private buf: Buffer;
  private used = 0;

  constructor(expected = 256) {
    this.buf = Buffer.allocUnsafe(Math.max(1, expected) * ENTRY_BYTES);
  }

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
