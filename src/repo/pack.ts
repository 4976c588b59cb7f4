import crypto from 'node:crypto';
import { open, seal } from '../crypto/aead.js';
import { type MasterKeys } from '../crypto/keys.js';
import { type Storage } from '../storage/storage.js';
import { packName } from './layout.js';
import { ENTRY_BYTES, PackEntries } from './pack-entries.js';

/**
 * A pack is  blob_0 ‖ … ‖ blob_n-1 ‖ sealed header ‖ u32le(header length).
 * The header lists every blob's type, ID, offset, sealed length and plaintext
 * length (PackEntries), and is sealed with the pack's ID in its associated
 * data, so a header cannot be moved to another pack. A reader that knows a
 * blob's place from the index fetches just that byte range.
 */
const HEADER_AD_LABEL = Buffer.from('aegis-pack-header-v1', 'ascii');
const HEADER_VERSION = 1;

function headerAd(packId: string): Buffer {
  return Buffer.concat([HEADER_AD_LABEL, Buffer.from(packId, 'hex')]);
}

export function encodePackHeader(entries: PackEntries): Buffer {
  const out = Buffer.allocUnsafe(5 + entries.bytes.length);
  out.writeUInt8(HEADER_VERSION, 0);
  out.writeUInt32LE(entries.count, 1);
  entries.bytes.copy(out, 5);
  return out;
}

export function decodePackHeader(plain: Buffer): PackEntries {
  if (plain.length < 5 || plain.readUInt8(0) !== HEADER_VERSION) throw new Error('unknown pack header version');
  const n = plain.readUInt32LE(1);
  if (plain.length !== 5 + n * ENTRY_BYTES) throw new Error('pack header has the wrong length');
  return new PackEntries(plain.subarray(5));
}

export function newPackId(): string {
  return crypto.randomBytes(32).toString('hex');
}

/** The sealed header and length trailer that end a pack whose blobs are `entries`. */
export function packTrailer(keys: MasterKeys, packId: string, entries: PackEntries): Buffer {
  const header = seal(keys.encryption, headerAd(packId), encodePackHeader(entries));
  const out = Buffer.allocUnsafe(header.length + 4);
  header.copy(out, 0);
  out.writeUInt32LE(header.length, header.length);
  return out;
}


export class DamagedPackError extends Error {
  constructor(readonly packId: string, detail: string) {
    super(`pack ${packId} is damaged: ${detail}`);
    this.name = 'DamagedPackError';
  }
}

/** Read and authenticate a pack's header with at most two ranged reads. */
export async function readPackHeader(storage: Storage, keys: MasterKeys, packId: string, size?: number): Promise<PackEntries> {
  const name = packName(packId);
  const total = size ?? (await storage.stat(name)).size;
  if (total < 4) throw new DamagedPackError(packId, 'too short');
  // Most headers fit in the last 16 KiB (about 350 blobs); read more only when needed.
  const guess = Math.min(total, 16 * 1024);
  let tail = await storage.get(name, { offset: total - guess, length: guess });
  const headerLength = tail.readUInt32LE(tail.length - 4);
  if (headerLength + 4 > total) throw new DamagedPackError(packId, 'header length points outside the pack');
  if (headerLength + 4 > tail.length) {
    tail = await storage.get(name, { offset: total - headerLength - 4, length: headerLength + 4 });
  }
  const sealedHeader = tail.subarray(tail.length - 4 - headerLength, tail.length - 4);
  let plain: Buffer;
  try {
    plain = open(keys.encryption, headerAd(packId), sealedHeader);
  } catch {
    throw new DamagedPackError(packId, 'header authentication failed');
  }
  try {
    const entries = decodePackHeader(plain);
    for (let i = 0; i < entries.count; i++) {
      if (entries.offset(i) + entries.length(i) > total - 4 - headerLength) throw new Error('a blob lies outside the pack');
    }
    return entries;
  } catch (err) {
    throw new DamagedPackError(packId, (err as Error).message);
  }
}
