import crypto from 'node:crypto';

/**
 * A set of 32-byte object IDs, each given a slot number in the order added.
 *
 * An open-addressing hash table over the IDs' bytes, kept in typed arrays: no
 * object and no string per ID. A hex string in a Set costs ~100 bytes of heap
 * per ID and an ID Buffer ~300 (its ArrayBuffer and backing store); a backup
 * that adds a million blobs holds every ID it added until the end (see
 * docs/DECISIONS.md, "Memory"). Callers that need more per ID (BlobIndex) keep
 * it in arrays of their own, indexed by slot.
 */
export class IdTable {
  private count = 0;
  private capacity = 1024;
  /** IDs by slot, 32 bytes each; `idWords` is the same memory as 32-bit words (Buffer.alloc is not pooled: aligned). */
  private idBytes = Buffer.alloc(32 * 1024);
  private idWords = new Uint32Array(this.idBytes.buffer, this.idBytes.byteOffset, 8 * 1024);
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

  private load(bytes: Uint8Array, at: number): boolean {
    if (at < 0 || at + 32 > bytes.length) return false;
    for (let k = 0; k < 32; k++) this.probe[k] = bytes[at + k]!;
    return true;
  }

  private loadHex(id: string): boolean {
    return id.length === 64 && this.probe.write(id, 'hex') === 32;
  }

  /** The slot of the ID at `bytes[at]`, or -1. */
  find(bytes: Uint8Array, at = 0): number {
    return this.load(bytes, at) ? this.table[this.position()]! - 1 : -1;
  }

  /** The slot of a hex ID, or -1. */
  findHex(id: string): number {
    return this.loadHex(id) ? this.table[this.position()]! - 1 : -1;
  }

  /** Add the ID at `bytes[at]`: its new slot, or -1 - the slot it already has. */
  insert(bytes: Uint8Array, at = 0): number {
    if (!this.load(bytes, at)) throw new Error('an object ID is 32 bytes');
    return this.insertProbe();
  }

  /** insert() for a hex ID. */
  insertHex(id: string): number {
    if (!this.loadHex(id)) throw new Error(`not an object ID: ${id}`);
    return this.insertProbe();
  }

  private insertProbe(): number {
    const pos = this.position();
    const held = this.table[pos]!;
    if (held !== 0) return -held;
    if (this.count === this.capacity) {
      this.grow();
      return this.insertProbe();
    }
    const slot = this.count++;
    this.idBytes.set(this.probe, slot * 32);
    this.table[pos] = slot + 1;
    return slot;
  }

  /** Make room for `more` IDs beyond those held, at once rather than by doubling. */
  reserve(more: number): void {
    let n = this.capacity;
    while (n < this.count + more) n *= 2;
    if (n > this.capacity) this.grow(n);
  }

  private grow(n = this.capacity * 2): void {
    const bytes = Buffer.alloc(32 * n);
    this.idBytes.copy(bytes);
    this.idBytes = bytes;
    this.idWords = new Uint32Array(bytes.buffer, bytes.byteOffset, 8 * n);
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

  /** The ID in a slot, as hex. */
  hexAt(slot: number): string {
    return this.idBytes.toString('hex', slot * 32, slot * 32 + 32);
  }

  /** Every ID, as hex, in the order they were added. */
  *hexIds(): IterableIterator<string> {
    for (let slot = 0; slot < this.count; slot++) yield this.hexAt(slot);
  }

  /** The first ID here (as hex) that `other` does not hold, if any. */
  firstMissingFrom(other: { hasBytes(buf: Buffer, at: number): boolean }): string | undefined {
    for (let slot = 0; slot < this.count; slot++) if (!other.hasBytes(this.idBytes, slot * 32)) return this.hexAt(slot);
    return undefined;
  }
}
