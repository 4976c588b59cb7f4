import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Chunker, DEFAULT_CHUNKER } from '../src/chunker/fastcdc.js';
import { gearTable } from '../src/chunker/gear.js';
import { keyedId } from '../src/crypto/ids.js';
import { type MasterKeys } from '../src/crypto/keys.js';
import { BlobType, blobId, openBlob, sealBlobWithId } from '../src/repo/blob.js';
import { type FinishedPack, FileReadError, WorkerPool } from '../src/workers/pool.js';
import { type PackedBlob, blobsOf } from './helpers/pack-entries.js';

/** A file's content list as the JavaScript reference chunker cuts it from one buffer. */
function referenceContent(keys: MasterKeys, data: Buffer): string[] {
  const chunker = new Chunker(gearTable(keys.chunker), DEFAULT_CHUNKER, { native: false });
  const out: string[] = [];
  for (let at = 0; at < data.length; ) {
    const n = chunker.cut(data, at, data.length);
    out.push(keyedId(keys.id, data.subarray(at, at + n)).toString('hex'));
    at += n;
  }
  return out;
}

/** What a test keeps of a pack the pool handed over: its blobs and a copy of its bytes. */
type StoredPack = { blobs: PackedBlob[]; data: Buffer };

describe('worker pool', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-pool-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a pack that cannot be written fails the backup, and is not blamed on the file being read', async () => {
    const keys: MasterKeys = { encryption: crypto.randomBytes(32), id: crypto.randomBytes(32), chunker: crypto.randomBytes(32) };
    const pool = new WorkerPool({ keys, chunker: DEFAULT_CHUNKER, size: 1, staging: { dir: path.join(dir, 'no-such-dir'), sha256: false }, onPack: async () => {} });
    try {
      const file = path.join(dir, 'readable');
      fs.writeFileSync(file, 'perfectly readable');
      const err = await pool.chunkFile(Buffer.from(file), 'auto').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(FileReadError);
      expect((err as Error).message).toMatch(/cannot write a new pack at .*no-such-dir.*ENOENT/);
    } finally {
      await pool.close();
    }
  });

  it.each(['buffered files', 'O_DIRECT files', 'memory'] as const)('seals the chunks of a large file on both threads when one is idle, and every chunk reads back (packs in %s)', async (mode) => {
    const keys: MasterKeys = { encryption: crypto.randomBytes(32), id: crypto.randomBytes(32), chunker: crypto.randomBytes(32) };
    const packs: Array<StoredPack> = [];
    const staging = fs.mkdtempSync(path.join(dir, 'staging-'));
    const inMemory = mode === 'memory';
    const pool = new WorkerPool({
      keys,
      chunker: DEFAULT_CHUNKER,
      size: 2,
      staging: inMemory ? { inMemory, sha256: true } : { dir: staging, sha256: true, direct: mode === 'O_DIRECT files' },
      onPack: async (p) => {
        // The pool removes the staged file, or has the memory filled again,
        // once this resolves: copy the bytes now.
        expect(p.file === undefined).toBe(inMemory);
        const data = inMemory ? Buffer.from(p.data!) : fs.readFileSync(p.file!);
        expect(data.length).toBe(p.length);
        expect(p.sha256).toBe(crypto.createHash('sha256').update(data).digest('hex'));
        packs.push({ blobs: blobsOf(p.entries), data });
      },
    });
    try {
      const small = path.join(dir, 'small');
      fs.writeFileSync(small, 'warm-up');
      await pool.chunkFile(Buffer.from(small), 'auto');
      // Both threads have answered a flush: both are running and idle.
      await pool.flushPacks();
      const big = path.join(dir, 'big');
      // Half random, half text: both the raw and the compressed path are sealed on the other thread.
      const data = Buffer.concat([crypto.randomBytes(24 << 20), Buffer.from('the same line of text, again and again\n'.repeat(650_000))]);
      fs.writeFileSync(big, data);
      const result = await pool.chunkFile(Buffer.from(big), 'auto', data.length);
      await pool.flushPacks();
      expect(pool.handedOver).toBeGreaterThan(0);
      expect(result.size).toBe(data.length);

      const where = new Map<string, { pack: StoredPack; offset: number; length: number }>();
      for (const pack of packs) for (const b of pack.blobs) where.set(b.id.toString('hex'), { pack, offset: b.offset, length: b.length });
      const parts = result.content.map((id) => {
        const loc = where.get(id);
        expect(loc, `chunk ${id} was stored`).toBeDefined();
        return openBlob(keys, BlobType.Data, Buffer.from(id, 'hex'), loc!.pack.data.subarray(loc!.offset, loc!.offset + loc!.length));
      });
      expect(Buffer.concat(parts).equals(data)).toBe(true);
      // The same cut points as the reference chunker's over the whole file at
      // once: reads, window passes and handovers must never move one (else the
      // same bytes would not deduplicate).
      expect(result.content).toEqual(referenceContent(keys, data));
      expect(fs.readdirSync(staging)).toEqual([]);
    } finally {
      await pool.close();
    }
  });

  it('uploads in-memory packs from a few shared buffers per thread, each left alone until its pack is stored', async () => {
    const keys: MasterKeys = { encryption: crypto.randomBytes(32), id: crypto.randomBytes(32), chunker: crypto.randomBytes(32) };
    const packs: Array<StoredPack> = [];
    const memories = new Set<ArrayBufferLike>();
    const pool = new WorkerPool({
      keys,
      chunker: DEFAULT_CHUNKER,
      size: 2,
      packSize: 1 << 20,
      staging: { inMemory: true, sha256: true },
      onPack: async (p) => {
        memories.add(p.data!.buffer);
        // Hold the pack a while, as an upload does, with the threads sealing the next ones meanwhile:
        // its bytes must still be the ones the thread hashed when it finished it.
        for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
        expect(crypto.createHash('sha256').update(p.data!).digest('hex')).toBe(p.sha256);
        packs.push({ blobs: blobsOf(p.entries), data: Buffer.from(p.data!) });
      },
    });
    try {
      const files = [0, 1].map((i) => {
        const f = path.join(dir, `many-packs-${i}`);
        const data = crypto.randomBytes(24 << 20);
        fs.writeFileSync(f, data);
        return { f, data };
      });
      const results = await Promise.all(files.map(({ f, data }) => pool.chunkFile(Buffer.from(f), 'auto', data.length)));
      await pool.flushPacks();
      expect(packs.length).toBeGreaterThan(20);
      // One being filled and two waiting per thread, and a buffer again for each pack that outgrew one.
      expect(memories.size).toBeLessThanOrEqual(2 * 3 + packs.filter((p) => p.data.length > (1 << 20) + (2 << 20)).length);
      const where = new Map<string, { pack: StoredPack; offset: number; length: number }>();
      for (const pack of packs) for (const b of pack.blobs) where.set(b.id.toString('hex'), { pack, offset: b.offset, length: b.length });
      results.forEach((result, i) => {
        const parts = result.content.map((id) => {
          const loc = where.get(id)!;
          return openBlob(keys, BlobType.Data, Buffer.from(id, 'hex'), loc.pack.data.subarray(loc.offset, loc.offset + loc.length));
        });
        expect(Buffer.concat(parts).equals(files[i]!.data)).toBe(true);
      });
    } finally {
      await pool.close();
    }
  });

  it('takes back a chunk the other thread has not started on, and stores every chunk once (two large files at once)', async () => {
    const keys: MasterKeys = { encryption: crypto.randomBytes(32), id: crypto.randomBytes(32), chunker: crypto.randomBytes(32) };
    const packs: Array<StoredPack> = [];
    const staging = fs.mkdtempSync(path.join(dir, 'staging-'));
    const pool = new WorkerPool({
      keys,
      chunker: DEFAULT_CHUNKER,
      size: 2,
      staging: { dir: staging, sha256: false },
      onPack: async (p) => {
        packs.push({ blobs: blobsOf(p.entries), data: fs.readFileSync(p.file!) });
      },
    });
    try {
      const small = path.join(dir, 'small-2');
      fs.writeFileSync(small, 'warm-up');
      await pool.chunkFile(Buffer.from(small), 'auto');
      await pool.flushPacks();
      // One file per thread: each hands chunks to the other, whose queue has its own
      // file first, so what it handed is still waiting when its window fills again.
      // The second file is short: that thread then gets to the messages for chunks
      // the first took back while the first is still handing chunks over through
      // the same slots (a late message must not seal whatever is there now).
      const files = [96, 12].map((mib, i) => {
        const f = path.join(dir, `busy-${i}`);
        const data = crypto.randomBytes(mib << 20);
        fs.writeFileSync(f, data);
        return { f, data };
      });
      const results = await Promise.all(files.map(({ f, data }) => pool.chunkFile(Buffer.from(f), 'auto', data.length)));
      await pool.flushPacks();
      expect(pool.handedOver).toBeGreaterThan(0);
      expect(pool.takenBack).toBeGreaterThan(0);

      const where = new Map<string, { pack: StoredPack; offset: number; length: number }>();
      let stored = 0;
      for (const pack of packs) {
        for (const b of pack.blobs) {
          where.set(b.id.toString('hex'), { pack, offset: b.offset, length: b.length });
          stored++;
        }
      }
      expect(stored, 'no chunk stored twice').toBe(where.size);
      results.forEach((result, i) => {
        const parts = result.content.map((id) => {
          const loc = where.get(id);
          expect(loc, `chunk ${id} was stored`).toBeDefined();
          return openBlob(keys, BlobType.Data, Buffer.from(id, 'hex'), loc!.pack.data.subarray(loc!.offset, loc!.offset + loc!.length));
        });
        expect(Buffer.concat(parts).equals(files[i]!.data)).toBe(true);
        expect(result.content).toEqual(referenceContent(keys, files[i]!.data));
      });
    } finally {
      await pool.close();
    }
  });

  it('opens the blobs of a range it reads from a pack file itself: each its own buffer, a damaged one named, an unreadable range null', async () => {
    const keys: MasterKeys = { encryption: crypto.randomBytes(32), id: crypto.randomBytes(32), chunker: crypto.randomBytes(32) };
    // Compressible, incompressible (stored raw), and small (below the Buffer pool's 4 KiB).
    const plains = [Buffer.alloc(300_000, 'text, text and more text '), crypto.randomBytes(200_000), Buffer.from('a small one'), crypto.randomBytes(150_000)];
    const ids = plains.map((p) => blobId(keys, BlobType.Data, p));
    const sealed = plains.map((p, i) => sealBlobWithId(keys, BlobType.Data, ids[i]!, p, 'auto').sealed);
    expect(sealed[0]!.length).toBeLessThan(plains[0]!.length / 10);
    expect(sealed[1]!.length).toBeGreaterThan(plains[1]!.length);
    const gap = Buffer.alloc(100, 7);
    const file = path.join(dir, 'pack-range');
    fs.writeFileSync(file, Buffer.concat([gap, ...sealed.flatMap((s) => [s, gap])]));
    const blobs = sealed.map((s, i) => ({ type: BlobType.Data, id: ids[i]!, offset: sealed.slice(0, i).reduce((n, b) => n + b.length + gap.length, 0), length: s.length }));
    const length = blobs.at(-1)!.offset + blobs.at(-1)!.length;
    const pool = new WorkerPool({ keys, chunker: DEFAULT_CHUNKER, size: 1 });
    try {
      for (let round = 0; round < 2; round++) {
        // The second round reads into the thread's reused buffer again: the first round's blobs must not change.
        const opened = await pool.openRangeFromFile('pack', { file, offset: gap.length, length }, blobs);
        expect(opened).not.toBeNull();
        opened!.forEach((r, i) => {
          expect(r.error).toBeUndefined();
          expect(r.plain!.equals(plains[i]!)).toBe(true);
          expect(r.plain!.buffer.byteLength - r.plain!.length, 'a buffer of its own').toBeLessThanOrEqual(64);
        });
        if (round === 0) {
          const kept = opened!.map((r) => r.plain!);
          const again = await pool.openRangeFromFile('pack', { file, offset: gap.length, length }, blobs);
          expect(again!.length).toBe(plains.length);
          kept.forEach((p, i) => expect(p.equals(plains[i]!)).toBe(true));
        }
      }

      const damaged = Buffer.from(fs.readFileSync(file));
      damaged[gap.length + blobs[1]!.offset + 40]! ^= 1;
      fs.writeFileSync(file, damaged);
      const some = await pool.openRangeFromFile('pack', { file, offset: gap.length, length }, blobs);
      expect(some!.map((r) => r.error === undefined)).toEqual([true, false, true, true]);
      expect(some![1]!.error).toMatch(/authentication failed/);
      expect(some![3]!.plain!.equals(plains[3]!)).toBe(true);

      expect(await pool.openRangeFromFile('pack', { file, offset: gap.length, length: length + 10_000 }, blobs)).toBeNull();
      expect(await pool.openRangeFromFile('pack', { file: path.join(dir, 'no-such-pack'), offset: 0, length }, blobs)).toBeNull();
    } finally {
      await pool.close();
    }
  });
});
