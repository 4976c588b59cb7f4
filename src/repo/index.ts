import { BlobType } from './blob.js';
import { IdTable } from './id-table.js';
import { ENTRY_BYTES, PackEntries } from './pack-entries.js';

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
  entries: PackEntries;
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

export function encodeIndex(packs: IndexedPack[], superseded: string[] = []): Buffer {
  let size = 1 + 4 + superseded.length * 32 + 4;
  for (const p of packs) size += 32 + 4 + p.entries.bytes.length;
  const out = Buffer.allocUnsafe(size);
  let o = out.writeUInt8(VERSION, 0);
  o = out.writeUInt32LE(superseded.length, o);
  for (const s of superseded) o += Buffer.from(s, 'hex').copy(out, o);
  o = out.writeUInt32LE(packs.length, o);
  for (const p of packs) {
    o += Buffer.from(p.packId, 'hex').copy(out, o);
    o = out.writeUInt32LE(p.entries.count, o);
    o += p.entries.bytes.copy(out, o);
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
    need(n * ENTRY_BYTES);
    packs.push({ packId, entries: new PackEntries(buf.subarray(o, o + n * ENTRY_BYTES)) });
    o += n * ENTRY_BYTES;
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
    const end = o + 36 + n * ENTRY_BYTES;
    let packId: string | undefined;
    for (let b = o + 36; b < end; b += ENTRY_BYTES) {
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
    o += 36 + n * ENTRY_BYTES;
    if (o > buf.length) throw new Error('index object is truncated');
  }
  if (o !== buf.length) throw new Error('index object has trailing bytes');
  return blobs;
}

/**
 * The in-memory map from blob ID (hex) to its place.
 *
 * An IdTable of the IDs, with places in typed arrays indexed by its slots:
 * loading makes no object and no string per blob. A record, a copied ID
 * Buffer and a hex string per blob (32,000 of them for the bench data) had cost
 * an unchanged backup ~50 ms of decoding, map insertion and garbage collection.
 * `get` builds the BlobLocation when asked; IDs given as hex are converted to
 * bytes for the lookup.
 */
export class BlobIndex {
  private readonly packs = new Map<string, number>();
  private readonly packNames: string[] = [];
  private readonly table = new IdTable();
  /** Per slot of `table`; they grow together, on demand. */
  private types = new Uint8Array(1024);
  private packOf = new Uint32Array(1024);
  private offsets = new Uint32Array(1024);
  private lengths = new Uint32Array(1024);
  private rawLengths = new Uint32Array(1024);

  get size(): number {
    return this.table.size;
  }

  private newPack(packId: string, blobs: number): number {
    this.packs.set(packId, blobs);
    this.packNames.push(packId);
    return this.packNames.length - 1;
  }

  /** Add the ID at `bytes[at]` unless it is known (the first place seen wins). */
  private add(bytes: Uint8Array, at: number, type: number, pack: number, offset: number, length: number, rawLength: number): void {
    const slot = this.table.insert(bytes, at);
    if (slot < 0) return;
    if (slot >= this.types.length) this.grow(slot + 1);
    this.types[slot] = type;
    this.packOf[slot] = pack;
    this.offsets[slot] = offset;
    this.lengths[slot] = length;
    this.rawLengths[slot] = rawLength;
  }

  /** Make room for `more` blobs beyond those held, at once rather than by doubling. */
  reserve(more: number): void {
    this.table.reserve(more);
    this.grow(this.table.size + more);
  }

  private grow(need: number): void {
    let n = this.types.length;
    while (n < need) n *= 2;
    if (n === this.types.length) return;
    const grown = <T extends Uint8Array | Uint32Array>(a: T, b: T): T => (b.set(a), b);
    this.types = grown(this.types, new Uint8Array(n));
    this.packOf = grown(this.packOf, new Uint32Array(n));
    this.offsets = grown(this.offsets, new Uint32Array(n));
    this.lengths = grown(this.lengths, new Uint32Array(n));
    this.rawLengths = grown(this.rawLengths, new Uint32Array(n));
  }

  private addEntries(packId: string, entries: PackEntries): void {
    const p = this.newPack(packId, entries.count);
    for (let i = 0; i < entries.count; i++) this.add(entries.bytes, entries.idAt(i), entries.type(i), p, entries.offset(i), entries.length(i), entries.rawLength(i));
  }

  addPack(pack: IndexedPack): void {
    this.addEntries(pack.packId, pack.entries);
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
      this.addEntries(buf.toString('hex', o, o + 32), new PackEntries(buf.subarray(o + 36, o + 36 + n * ENTRY_BYTES)));
      o += 36 + n * ENTRY_BYTES;
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
    const slot = this.table.findHex(id);
    return slot < 0 ? undefined : this.location(slot);
  }

  has(id: string): boolean {
    return this.table.findHex(id) >= 0;
  }

  /** has() for the 32 bytes of an ID at `buf[at]`, without a hex string. */
  hasBytes(buf: Buffer, at: number): boolean {
    return this.table.find(buf, at) >= 0;
  }

  hasPack(packId: string): boolean {
    return this.packs.has(packId);
  }

  packIds(): IterableIterator<string> {
    return this.packs.keys();
  }

  /** Every blob ID with its place, in the order they were added. */
  *entries(): IterableIterator<[string, BlobLocation]> {
    for (let slot = 0; slot < this.table.size; slot++) yield [this.table.hexAt(slot), this.location(slot)];
  }

  /** Every blob ID, in the order they were added. */
  ids(): IterableIterator<string> {
    return this.table.hexIds();
  }
}
