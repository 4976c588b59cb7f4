import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { backup } from '../src/engine/backup.js';
import { restore } from '../src/engine/restore.js';
import { Repository } from '../src/repo/repository.js';
import { LocalStorage } from '../src/storage/local.js';
import { saveEnv } from './helpers/env.js';

/**
 * A backup writes an index object once enough packs or enough blobs wait for
 * one, not only at the end: a pack of small files holds tens of thousands of
 * blobs, and waiting for 32 packs held all their entries in memory.
 */
describe('index checkpoints', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-index-checkpoints-'));
  const src = path.join(dir, 'src');
  const restoreStateDir = saveEnv('AEGIS_STATE_DIR');
  process.env.AEGIS_STATE_DIR = path.join(dir, 'state');
  fs.mkdirSync(src);
  // 3,000 small incompressible files, each its own blob: ~12 packs of 256 KiB.
  for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(src, `f${i}`), crypto.randomBytes(1000));
  afterAll(() => {
    restoreStateDir();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function backupWith(name: string, indexCheckpoint?: { packs: number; blobs: number }): Promise<{ repo: Repository; indexObjects: number; tree: string }> {
    const repo = await Repository.init(new LocalStorage(path.join(dir, name)), 'pw', { packSize: 256 * 1024 });
    const { snapshot, summary } = await backup(repo, { paths: [src], threads: 2, indexCheckpoint });
    expect(summary.data_blobs).toBe(3000);
    return { repo, indexObjects: fs.readdirSync(path.join(dir, name, 'index')).length, tree: snapshot.tree };
  }

  it('are written once the blobs waiting pass the limit, though fewer packs wait than the limit on packs', async () => {
    const whole = await backupWith('one', { packs: 1000, blobs: 1_000_000 });
    expect(whole.indexObjects).toBe(1);
    await whole.repo.close();

    const split = await backupWith('split', { packs: 1000, blobs: 1000 });
    // Each pack holds ~250 blobs: one index object per ~4 packs.
    expect(split.indexObjects).toBeGreaterThanOrEqual(3);
    await split.repo.close();

    // Everything is indexed and restores, read by a fresh process's view of the repository.
    const again = await Repository.open(new LocalStorage(path.join(dir, 'split')), 'pw');
    await again.loadIndex();
    expect(again.index.size).toBeGreaterThan(3000); // and the trees of the path
    const target = path.join(dir, 'target');
    await restore(again, split.tree, { target, subpath: src });
    for (let i = 0; i < 3000; i++) expect(fs.readFileSync(path.join(target, `f${i}`)).equals(fs.readFileSync(path.join(src, `f${i}`)))).toBe(true);
    await again.close();
  });
});
