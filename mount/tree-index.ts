import { BlobType } from '../src/repo/blob.js';
import { type BlobLocation } from '../src/repo/index.js';
import { INDEX, idOf } from '../src/repo/layout.js';
import { openObject } from '../src/repo/objects.js';
import { type Repository } from '../src/repo/repository.js';
import { isNotFound } from '../src/storage/storage.js';
import { mapLimit } from '../src/util/concurrency.js';

/**
 * The places of the tree blobs only, read from the index objects without
 * decoding their data-blob records. Directory lookups need nothing else, and
 * this takes a few milliseconds where Repository.loadIndex spends 60-110 ms of
 * the main thread (32,000 blobs, measured) building its map of every blob; the
 * mount answers lookups from this while the full index waits (IndexLoader).
 *
 * The records are those of src/repo/index.ts (encodeIndex/decodeIndex):
 *   u8 version (1) ‖ u32 supersededCount ‖ 32 bytes each ‖ u32 packCount ‖ per
 *   pack: pack ID (32) ‖ u32 blobCount ‖ per blob: u8 type ‖ ID (32) ‖
 *   u32 offset ‖ u32 length ‖ u32 rawLength, little-endian.
 */
const BLOB_BYTES = 1 + 32 + 12;

/** Add the tree blobs of one decrypted index object to `out` (the first place seen wins, as in BlobIndex). */
export function scanTreeRecords(buf: Buffer, out: Map<string, BlobLocation>): void {
  if (buf.length < 9 || buf[0] !== 1) throw new Error('unknown index version');
  let o = 5 + buf.readUInt32LE(1) * 32;
  if (o + 4 > buf.length) throw new Error('index object is truncated');
  const packs = buf.readUInt32LE(o);
  o += 4;
  for (let p = 0; p < packs; p++) {
    if (o + 36 > buf.length) throw new Error('index object is truncated');
    const n = buf.readUInt32LE(o + 32);
    const end = o + 36 + n * BLOB_BYTES;
    if (end > buf.length) throw new Error('index object is truncated');
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

export async function readTreeLocations(repo: Repository): Promise<Map<string, BlobLocation>> {
  const names: string[] = [];
  for await (const o of repo.storage.list(INDEX)) if (idOf(INDEX, o.name)) names.push(o.name);
  const out = new Map<string, BlobLocation>();
  await mapLimit(names, 8, async (name) => {
    let sealed: Buffer;
    try {
      sealed = await repo.storage.get(name);
    } catch (err) {
      if (isNotFound(err)) return; // replaced by a concurrent compaction
      throw err;
    }
    scanTreeRecords(openObject(repo.keys, name, sealed), out);
  });
  return out;
}
