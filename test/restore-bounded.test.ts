import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { backup } from '../src/engine/backup.js';
import { restore } from '../src/engine/restore.js';
import { Repository } from '../src/repo/repository.js';
import { LocalStorage } from '../src/storage/local.js';
import { WorkerPool } from '../src/workers/pool.js';
import { saveEnv } from './helpers/env.js';

/**
 * From a local repository the writes start while the walk goes on; the walk is
 * much faster than the writes, and each file it planned is held until written.
 * It must wait for the writers rather than plan the whole tree ahead of them.
 */
describe('a restore of many files', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-restore-bounded-'));
  const src = path.join(dir, 'src');
  const restoreEnv = [saveEnv('AEGIS_STATE_DIR'), saveEnv('AEGIS_PROGRESS_INTERVAL_MS')];
  afterAll(() => {
    for (const r of restoreEnv) r();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('plans at most a few thousand files ahead of the writers, and restores every one', async () => {
    process.env.AEGIS_STATE_DIR = path.join(dir, 'state');
    process.env.AEGIS_PROGRESS_INTERVAL_MS = '10';
    const files = 12_000;
    for (let d = 0; d < 16; d++) {
      fs.mkdirSync(path.join(src, `d${d}`), { recursive: true });
      for (let f = 0; f < files / 16; f++) fs.writeFileSync(path.join(src, `d${d}`, `f${f}`), `file ${d}/${f}\n`);
    }
    const repo = await Repository.init(new LocalStorage(path.join(dir, 'repo')), 'pw');
    const { snapshot } = await backup(repo, { paths: [src], threads: 2 });
    const pool = new WorkerPool({ keys: repo.keys, chunker: repo.config.chunker, size: 2 });
    let reports = 0;
    let mostAhead = 0;
    const target = path.join(dir, 'target');
    try {
      await restore(repo, snapshot.tree, {
        target,
        subpath: src,
        pool,
        onProgress: (p) => {
          reports++;
          mostAhead = Math.max(mostAhead, p.filesTotal - p.filesDone);
        },
      });
    } finally {
      await pool.close();
      await repo.close();
    }
    expect(reports).toBeGreaterThan(0);
    // 4,096 files at most before the walk waits, plus the batch it was planning.
    expect(mostAhead).toBeLessThanOrEqual(4096 + 1024);
    for (let d = 0; d < 16; d++) {
      for (let f = 0; f < files / 16; f++) expect(fs.readFileSync(path.join(target, `d${d}`, `f${f}`), 'utf8')).toBe(`file ${d}/${f}\n`);
    }
  });
});
