import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_CHUNKER } from '../src/chunker/fastcdc.js';
import { type MasterKeys } from '../src/crypto/keys.js';
import { BlobType, openBlob } from '../src/repo/blob.js';
import { type FinishedPack, WorkerPool } from '../src/workers/pool.js';

describe('worker pool', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-pool-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('seals the chunks of a large file on both threads when one is idle, and every chunk reads back', async () => {
    const keys: MasterKeys = { encryption: crypto.randomBytes(32), id: crypto.randomBytes(32), chunker: crypto.randomBytes(32) };
    const packs: FinishedPack[] = [];
    const pool = new WorkerPool({ keys, chunker: DEFAULT_CHUNKER, size: 2, onPack: async (p) => {
        // The buffer goes back to its thread for the next pack once this resolves: keep a copy.
        packs.push({ ...p, data: Buffer.from(p.data) });
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

      const where = new Map<string, { pack: FinishedPack; offset: number; length: number }>();
      for (const pack of packs) for (const b of pack.blobs) where.set(b.id.toString('hex'), { pack, offset: b.offset, length: b.length });
      const parts = result.content.map((id) => {
        const loc = where.get(id);
        expect(loc, `chunk ${id} was stored`).toBeDefined();
        return openBlob(keys, BlobType.Data, Buffer.from(id, 'hex'), loc!.pack.data.subarray(loc!.offset, loc!.offset + loc!.length));
      });
      expect(Buffer.concat(parts).equals(data)).toBe(true);
    } finally {
      await pool.close();
    }
  });
});
