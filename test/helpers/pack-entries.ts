import { type BlobType } from '../../src/repo/blob.js';
import { PackEntries, PackEntriesBuilder } from '../../src/repo/pack-entries.js';

/** One entry of a pack's blob list, as an object (tests build and read lists this way). */
export interface PackedBlob {
  type: BlobType;
  id: Buffer;
  offset: number;
  length: number;
  rawLength: number;
}

export function entriesOf(blobs: readonly PackedBlob[]): PackEntries {
  const b = new PackEntriesBuilder();
  for (const x of blobs) b.push(x.type, x.id, x.offset, x.length, x.rawLength);
  return b.finish();
}

/** Every entry as an object, each with its own copy of the ID. */
export function blobsOf(entries: PackEntries): PackedBlob[] {
  const out: PackedBlob[] = [];
  for (let i = 0; i < entries.count; i++) {
    const at = entries.idAt(i);
    out.push({ type: entries.type(i), id: Buffer.from(entries.bytes.subarray(at, at + 32)), offset: entries.offset(i), length: entries.length(i), rawLength: entries.rawLength(i) });
  }
  return out;
}
