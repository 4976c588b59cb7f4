import crypto from 'node:crypto';
import { BlobType } from './blob.js';
import { type PackedBlob } from './pack.js';

/** Where one blob lives. */
export interface BlobLocation {
  type: BlobType;
  packId: string;
  offset: number;
  length: number;
  rawLength: number;
}

export interface IndexedPack {
  packId: string;
  blobs: PackedBlob[];
}

/**
 * An index object's plaintext (before sealing):
 *   u8 version (1) ‖ u32 supersededCount ‖ superseded index IDs (32 bytes each)
 *   ‖ u32 packCount ‖ per pack: pack ID (32) ‖ u32 blobCount ‖ per blob:
 *   u8 type ‖ ID (32) ‖ u32 offset ‖ u32 length ‖ u32 rawLength.
 * All integers little-endian. `superseded` lets a compaction replace index files
 * without a window in which a blob is indexed nowhere.
 */
const VERSION = 1;
const BLOB_BYTES = 1 + 32 + 12;

export function encodeIndex(packs: IndexedPack[], superseded: string[] = []): Buffer {
  let size = 1 + 4 + superseded.length * 32 + 4;
  for (const p of packs) size += 32 + 4 + p.blobs.length * BLOB_BYTES;
  const out = Buffer.allocUnsafe(size);
  let o = out.writeUInt8(VERSION, 0);
  o = out.writeUInt32LE(superseded.length, o);
  for (const s of superseded) o += Buffer.from(s, 'hex').copy(out, o);
  o = out.writeUInt32LE(packs.length, o);
  for (const p of packs) {
    o += Buffer.from(p.packId, 'hex').copy(out, o);
    o = out.writeUInt32LE(p.blobs.length, o);
    for (const b of p.blobs) {
      o = out.writeUInt8(b.type, o);
      o += b.id.copy(out, o);
      o = out.writeUInt32LE(b.offset, o);
      o = out.writeUInt32LE(b.length, o);
      o = out.writeUInt32LE(b.rawLength, o);
    }
  }
  return out;
}

export function decodeIndex(buf: Buffer): { packs: IndexedPack[]; superseded: string[] } {
  let o = 0;
  const need = (n: number) => {
    if (o + n > buf.length) throw new Error('index object is truncated');
  };
  need(5);
  if (buf.readUInt8(0) !== VERSION) throw new Error(`unknown index version ${buf.readUInt8(0)}`);
  o = 1;
  const supersededCount = buf.readUInt32LE(o);
  o += 4;
  need(supersededCount * 32 + 4);
  const superseded: string[] = [];
  for (let i = 0; i < supersededCount; i++, o += 32) superseded.push(buf.toString('hex', o, o + 32));
  const packCount = buf.readUInt32LE(o);
  o += 4;
  const packs: IndexedPack[] = [];
  for (let i = 0; i < packCount; i++) {
    need(36);
    const packId = buf.toString('hex', o, o + 32);
    const n = buf.readUInt32LE(o + 32);
    o += 36;
    need(n * BLOB_BYTES);
    const blobs: PackedBlob[] = [];
    for (let j = 0; j < n; j++, o += BLOB_BYTES) {
      blobs.push({
        type: buf.readUInt8(o) as BlobType,
        id: Buffer.from(buf.subarray(o + 1, o + 33)),
        offset: buf.readUInt32LE(o + 33),
        length: buf.readUInt32LE(o + 37),
        rawLength: buf.readUInt32LE(o + 41),
      });
    }
    packs.push({ packId, blobs });
  }
  if (o !== buf.length) throw new Error('index object has trailing bytes');
  return { packs, superseded };
}

/**
 * Only the tree blobs of a decrypted index object, added to `out` (the first
 * place seen wins, as in BlobIndex), without building a record per data blob:
 * a mount answers directory lookups from these in a few milliseconds while the
 * full index (60-110 ms of decoding for 32,000 blobs) loads later.
 */
export function decodeTreeLocations(buf: Buffer, out: Map<string, BlobLocation>): void {
  checkIndexLayout(buf);
  let o = 5 + buf.readUInt32LE(1) * 32;
  const packs = buf.readUInt32LE(o);
  o += 4;
  for (let p = 0; p < packs; p++) {
    const n = buf.readUInt32LE(o + 32);
    const end = o + 36 + n * BLOB_BYTES;
    let packId: string | undefined;
    for (let b = o + 36; b < end; b += BLOB_BYTES) {
      if (buf[b] !== BlobType.Tree) continue;
      const id = buf.toString('hex', b + 1, b + 33);
      if (out.has(id)) continue;
      packId ??= buf.toString('hex', o, o + 32);
      out.set(id, { type: BlobType.Tree, packId, offset: buf.readUInt32LE(b + 33), length: buf.readUInt32LE(b + 37), rawLength: buf.readUInt32LE(b + 41) });
    }
    o = end;
  }
}

/**
 * Check an index object's layout (as decodeIndex does) without building
 * anything: BlobIndex.addIndexObject then reads it in place. Throws what
 * decodeIndex would.
 */
export function checkIndexLayout(buf: Buffer): number {
  if (buf.length < 5) throw new Error('index object is truncated');
  if (buf[0] !== VERSION) throw new Error(`unknown index version ${buf[0]}`);
  let o = 5 + buf.readUInt32LE(1) * 32;
  if (o + 4 > buf.length) throw new Error('index object is truncated');
  const packs = buf.readUInt32LE(o);
  o += 4;
  let blobs = 0;
  for (let p = 0; p < packs; p++) {
    if (o + 36 > buf.length) throw new Error('index object is truncated');
    const n = buf.readUInt32LE(o + 32);
    blobs += n;
    o += 36 + n * BLOB_BYTES;
    if (o > buf.length) throw new Error('index object is truncated');
  }
  if (o !== buf.length) throw new Error('index object has trailing bytes');
  return blobs;
}

/**
 * The in-memory map from blob ID (hex) to its place.
 *
 * An open-addressing hash table over the IDs' bytes, with places in typed
 * arrays: loading makes no object and no string per blob. A record, a copied ID
 * Buffer and a hex string per blob (32,000 of them for the bench data) had cost
 * an unchanged backup ~50 ms of decoding, map insertion and garbage collection.
 * `get` builds the BlobLocation when asked; IDs given as hex are converted to
 * bytes for the lookup.
 */
export class BlobIndex {
  private readonly packs = new Map<string, number>();
  private readonly packNames: string[] = [];
  private count = 0;
  private capacity = 1024;
  /** IDs by slot, 32 bytes each; `idWords` is the same memory as 32-bit words (Buffer.alloc is not pooled: aligned). */
  private idBytes = Buffer.alloc(32 * 1024);
  private idWords = new Uint32Array(this.idBytes.buffer, this.idBytes.byteOffset, 8 * 1024);
  private types = new Uint8Array(1024);
  private packOf = new Uint32Array(1024);
  private offsets = new Uint32Array(1024);
  private lengths = new Uint32Array(1024);
  private rawLengths = new Uint32Array(1024);
  /** Slot + 1 per table position (0: empty); at most half full. */
  private table = new Int32Array(4096);
  private mask = 4095;
  /** The ID being looked up or added. */
  private readonly probe = Buffer.alloc(32);
  private readonly probeWords = new Uint32Array(this.probe.buffer, this.probe.byteOffset, 8);
  /** Per process, so that no repository can choose IDs that all collide. */
  private readonly seed = crypto.randomBytes(4).readUInt32LE(0);

  get size(): number {
    return this.count;
  }

  private hash(w: Uint32Array, at: number): number {
    return Math.imul(w[at]! ^ this.seed, 0x9e3779b1) ^ Math.imul(w[at + 1]! ^ this.seed, 0x85ebca77) ^ w[at + 2]!;
  }

  /** The table position of the probe ID: where it is, or the empty one where it would go. */
  private position(): number {
    const w = this.probeWords;
    const ids = this.idWords;
    let i = this.hash(w, 0) & this.mask;
    for (;;) {
      const s = this.table[i]!;
      if (s === 0) return i;
      const at = (s - 1) * 8;
      if (ids[at] === w[0] && ids[at + 1] === w[1] && ids[at + 2] === w[2] && ids[at + 3] === w[3] && ids[at + 4] === w[4] && ids[at + 5] === w[5] && ids[at + 6] === w[6] && ids[at + 7] === w[7]) return i;
      i = (i + 1) & this.mask;
    }
  }

  /** The slot of a hex ID, or -1. */
  private slotOf(id: string): number {
    if (id.length !== 64 || this.probe.write(id, 'hex') !== 32) return -1;
    const s = this.table[this.position()]!;
    return s - 1;
  }

  private newPack(packId: string, blobs: number): number {
    this.packs.set(packId, blobs);
    this.packNames.push(packId);
    return this.packNames.length - 1;
  }

  /** Add the probe ID unless it is known (the first place seen wins). */
  private add(type: number, pack: number, offset: number, length: number, rawLength: number): void {
    const pos = this.position();
    if (this.table[pos] !== 0) return;
    if (this.count === this.capacity) return this.grow(), this.add(type, pack, offset, length, rawLength);
    const slot = this.count++;
    this.idBytes.set(this.probe, slot * 32);
    this.types[slot] = type;
    this.packOf[slot] = pack;
    this.offsets[slot] = offset;
    this.lengths[slot] = length;
    this.rawLengths[slot] = rawLength;
    this.table[pos] = slot + 1;
  }

  /** Make room for `more` blobs beyond those held, at once rather than by doubling. */
  reserve(more: number): void {
    let n = this.capacity;
    while (n < this.count + more) n *= 2;
    if (n > this.capacity) this.grow(n);
  }

  private grow(n = this.capacity * 2): void {
    const grown = <T extends Uint8Array | Uint32Array>(a: T, make: (n: number) => T, k: number): T => {
      const b = make(k);
      b.set(a);
      return b;
    };
    this.idBytes = grown(this.idBytes, (k) => Buffer.alloc(k), 32 * n);
    this.idWords = new Uint32Array(this.idBytes.buffer, this.idBytes.byteOffset, 8 * n);
    this.types = grown(this.types, (k) => new Uint8Array(k), n);
    this.packOf = grown(this.packOf, (k) => new Uint32Array(k), n);
    this.offsets = grown(this.offsets, (k) => new Uint32Array(k), n);
    this.lengths = grown(this.lengths, (k) => new Uint32Array(k), n);
    this.rawLengths = grown(this.rawLengths, (k) => new Uint32Array(k), n);
    this.capacity = n;
    // Rehash into a table four times the slots, so it stays at most half full.
    this.table = new Int32Array(4 * n);
    this.mask = 4 * n - 1;
    for (let slot = 0; slot < this.count; slot++) {
      let i = this.hash(this.idWords, slot * 8) & this.mask;
      while (this.table[i] !== 0) i = (i + 1) & this.mask;
      this.table[i] = slot + 1;
    }
  }

  addPack(pack: IndexedPack): void {
    const p = this.newPack(pack.packId, pack.blobs.length);
    for (const b of pack.blobs) {
      if (b.id.length !== 32) throw new Error('blob ID is not 32 bytes');
      this.probe.set(b.id);
      this.add(b.type, p, b.offset, b.length, b.rawLength);
    }
  }

  /**
   * Every pack of a decrypted index object, read in place: the same as addPack
   * for each pack decodeIndex returns. The layout must have passed
   * checkIndexLayout.
   */
  addIndexObject(buf: Buffer): void {
    let o = 5 + buf.readUInt32LE(1) * 32;
    const packs = buf.readUInt32LE(o);
    o += 4;
    for (let i = 0; i < packs; i++) {
      const n = buf.readUInt32LE(o + 32);
      const p = this.newPack(buf.toString('hex', o, o + 32), n);
      o += 36;
      for (let j = 0; j < n; j++, o += BLOB_BYTES) {
        for (let k = 0; k < 32; k++) this.probe[k] = buf[o + 1 + k]!;
        this.add(buf[o]!, p, buf.readUInt32LE(o + 33), buf.readUInt32LE(o + 37), buf.readUInt32LE(o + 41));
      }
    }
  }

  private location(slot: number): BlobLocation {
    return {
      type: this.types[slot] as BlobType,
      packId: this.packNames[this.packOf[slot]!]!,
      offset: this.offsets[slot]!,
      length: this.lengths[slot]!,
      rawLength: this.rawLengths[slot]!,
    };
  }

  get(id: string): BlobLocation | undefined {
    const slot = this.slotOf(id);
    return slot < 0 ? undefined : this.location(slot);
  }

  has(id: string): boolean {
    return this.slotOf(id) >= 0;
  }

  /** has() for the 32 bytes of an ID at `buf[at]`, without a hex string. */
  hasBytes(buf: Buffer, at: number): boolean {
    if (at < 0 || at + 32 > buf.length) return false;
    for (let k = 0; k < 32; k++) this.probe[k] = buf[at + k]!;
    return this.table[this.position()] !== 0;
  }

  hasPack(packId: string): boolean {
    return this.packs.has(packId);
  }

  packIds(): IterableIterator<string> {
    return this.packs.keys();
  }

  /** Every blob ID with its place, in the order they were added. */
  *entries(): IterableIterator<[string, BlobLocation]> {
    for (let slot = 0; slot < this.count; slot++) yield [this.idBytes.toString('hex', slot * 32, slot * 32 + 32), this.location(slot)];
  }

  /** Every blob ID, in the order they were added. */
  *ids(): IterableIterator<string> {
    for (let slot = 0; slot < this.count; slot++) yield this.idBytes.toString('hex', slot * 32, slot * 32 + 32);
  }
}
