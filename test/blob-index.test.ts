import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type IndexedPack, BlobIndex, checkIndexLayout, decodeIndex, encodeIndex } from '../src/repo/index.js';
import { IdTable } from '../src/repo/id-table.js';
import { entriesOf } from './helpers/pack-entries.js';

const packId = (n: number) => crypto.createHash('sha256').update(`pack ${n}`).digest('hex');

function packs(from: number, shared: Buffer): IndexedPack[] {
  return [from, from + 1].map((p) => ({
    packId: packId(p),
    entries: entriesOf(
      Array.from({ length: 700 }, (_, i) => ({
        type: (i % 5 === 0 ? 1 : 0) as never,
        id: i === 3 ? shared : crypto.randomBytes(32), // the same blob in every pack
        offset: i * 70_000 + p,
        length: 60_000 + i,
        rawLength: 0xffff_ff00 + (i % 200), // lengths use all 32 bits
      })),
    ),
  }));
}

describe('blob index', () => {
  it('read in place from index objects, gives what decodeIndex and addPack give, the first place winning', () => {
    const shared = crypto.randomBytes(32);
    const objects = [encodeIndex(packs(0, shared), [packId(99)]), encodeIndex(packs(2, shared)), encodeIndex([])];
    const viaDecode = new BlobIndex();
    for (const o of objects) for (const p of decodeIndex(o).packs) viaDecode.addPack(p);
    const inPlace = new BlobIndex();
    expect(objects.map((o) => checkIndexLayout(o))).toEqual([1400, 1400, 0]);
    inPlace.reserve(2800);
    for (const o of objects) inPlace.addIndexObject(o);
    expect(inPlace.size).toBe(4 * 699 + 1);
    expect(inPlace.size).toBe(viaDecode.size);
    expect([...inPlace.entries()]).toEqual([...viaDecode.entries()]);
    expect([...inPlace.ids()]).toEqual([...viaDecode.entries()].map(([id]) => id));
    expect([...inPlace.packIds()]).toEqual([0, 1, 2, 3].map(packId));
    expect(inPlace.hasPack(packId(3))).toBe(true);
    expect(inPlace.hasPack(packId(99))).toBe(false);
    expect(inPlace.get(shared.toString('hex'))).toEqual({ type: 0, packId: packId(0), offset: 3 * 70_000, length: 60_003, rawLength: 0xffff_ff03 });
    expect(inPlace.get(crypto.randomBytes(32).toString('hex'))).toBeUndefined();
    const bytes = Buffer.concat([Buffer.from('xy'), shared, Buffer.from('z')]);
    expect(inPlace.hasBytes(bytes, 2)).toBe(true);
    expect(inPlace.hasBytes(bytes, 1)).toBe(false);
    expect(inPlace.hasBytes(bytes, 3)).toBe(false); // runs past the end
    for (const odd of ['', 'zz', shared.toString('hex').slice(2), shared.toString('hex') + '00', 'x' + shared.toString('hex').slice(1)]) expect(inPlace.has(odd)).toBe(false);
    // Added after loading, as a backup does: unknown IDs get a place, known ones keep theirs.
    const fresh = { type: 1 as never, id: crypto.randomBytes(32), offset: 5, length: 6, rawLength: 7 };
    inPlace.addPack({ packId: packId(4), entries: entriesOf([fresh, { type: 1 as never, id: shared, offset: 1, length: 2, rawLength: 3 }]) });
    expect(inPlace.get(fresh.id.toString('hex'))).toEqual({ type: 1, packId: packId(4), offset: 5, length: 6, rawLength: 7 });
    expect(inPlace.get(shared.toString('hex'))!.packId).toBe(packId(0));
    expect(inPlace.has(fresh.id.toString('hex'))).toBe(true);
  });

  it('refuses what decodeIndex refuses', () => {
    const plain = encodeIndex(packs(0, crypto.randomBytes(32)));
    for (const bad of [plain.subarray(0, plain.length - 1), plain.subarray(0, 3), Buffer.concat([plain, Buffer.of(0)]), Buffer.concat([Buffer.of(2), plain.subarray(1)])]) {
      const message = (() => {
        try {
          decodeIndex(bad);
        } catch (err) {
          return (err as Error).message;
        }
        return 'accepted';
      })();
      expect(message).not.toBe('accepted');
      expect(() => checkIndexLayout(bad)).toThrow(message);
    }
    // A pack claiming more blobs than there are bytes.
    const lying = Buffer.from(plain);
    lying.writeUInt32LE(100_000, 5 + 4 + 32);
    expect(() => checkIndexLayout(lying)).toThrow(/truncated/);
  });
});

describe('id table', () => {
  it('gives each ID one slot in the order added, finds it from bytes or hex, and keeps every ID as it grows', () => {
    const t = new IdTable();
    const ids = Array.from({ length: 5000 }, () => crypto.randomBytes(32));
    const inBuffer = Buffer.concat([Buffer.from('ab'), ...ids]);
    ids.forEach((id, i) => expect(i % 2 ? t.insert(inBuffer, 2 + i * 32) : t.insertHex(id.toString('hex'))).toBe(i));
    expect(t.size).toBe(5000);
    expect(t.insert(ids[17]!)).toBe(-1 - 17); // already there: its slot, as a negative
    expect(t.insertHex(ids[4999]!.toString('hex'))).toBe(-1 - 4999);
    expect(t.size).toBe(5000);
    ids.forEach((id, i) => {
      expect(t.find(id)).toBe(i);
      expect(t.findHex(id.toString('hex'))).toBe(i);
      expect(t.hexAt(i)).toBe(id.toString('hex'));
    });
    expect([...t.hexIds()]).toEqual(ids.map((id) => id.toString('hex')));
    expect(t.find(crypto.randomBytes(32))).toBe(-1);
    expect(t.find(inBuffer, 3)).toBe(-1);
    expect(t.find(inBuffer, inBuffer.length - 31)).toBe(-1); // runs past the end
    for (const odd of ['', 'zz', ids[0]!.toString('hex').slice(2), 'x' + ids[0]!.toString('hex').slice(1)]) expect(t.findHex(odd)).toBe(-1);
    expect(() => t.insertHex('00')).toThrow(/not an object ID/);
    expect(() => t.insert(Buffer.alloc(31))).toThrow(/32 bytes/);

    const index = new BlobIndex();
    index.addPack({ packId: packId(0), entries: entriesOf(ids.slice(0, 4000).map((id, i) => ({ type: 0 as never, id, offset: i, length: 1, rawLength: 1 }))) });
    expect(t.firstMissingFrom(index)).toBe(ids[4000]!.toString('hex'));
    index.addPack({ packId: packId(1), entries: entriesOf(ids.slice(4000).map((id, i) => ({ type: 0 as never, id, offset: i, length: 1, rawLength: 1 }))) });
    expect(t.firstMissingFrom(index)).toBeUndefined();
  });
});
