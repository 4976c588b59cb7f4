import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { backup } from '../src/engine/backup.js';
import { restore } from '../src/engine/restore.js';
import { Repository } from '../src/repo/repository.js';
import { LocalStorage } from '../src/storage/local.js';
import { WorkerPool } from '../src/workers/pool.js';
import { TargetDirs } from '../src/workers/target-dirs.js';
import { saveEnv } from './helpers/env.js';

/**
 * A restore run as root into a tree someone else can write (a user's home)
 * must not write, chown or chmod through a directory that user swaps for a
 * symlink while the restore runs. The swap is made at an exact point: right
 * after the restore opened the directory on this thread (TargetDirs.dir is
 * wrapped), so every later step, on this thread and on the worker threads,
 * comes after it.
 */
describe('a directory swapped for a symlink during a restore', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-restore-swap-'));
  const src = path.join(dir, 'src');
  const outside = path.join(dir, 'outside');
  const target = path.join(dir, 'target');
  const restoreStateDir = saveEnv('AEGIS_STATE_DIR');
  const realDir = TargetDirs.prototype.dir;
  let repo: Repository;
  let tree: string;
  let runs = 0;

  beforeAll(async () => {
    process.env.AEGIS_STATE_DIR = path.join(dir, 'state');
    fs.mkdirSync(path.join(src, 'd', 'sub'), { recursive: true });
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(src, 'd', `f${i}.txt`), `file ${i}\n`.repeat(i + 1));
    fs.writeFileSync(path.join(src, 'd', 'sub', 'deep.txt'), 'deep\n');
    fs.symlinkSync('f0.txt', path.join(src, 'd', 'link'));
    fs.writeFileSync(path.join(src, 'top.txt'), 'top\n');
    fs.chmodSync(path.join(src, 'd'), 0o777);
    repo = await Repository.init(new LocalStorage(path.join(dir, 'repo')), 'pw');
    tree = (await backup(repo, { paths: [src], threads: 1 })).snapshot.tree;
  });
  beforeEach(() => {
    runs++;
    fs.rmSync(target, { recursive: true, force: true });
    fs.rmSync(outside, { recursive: true, force: true });
    fs.mkdirSync(outside, { mode: 0o700 });
    fs.chmodSync(outside, 0o700);
    // `d` is there already, as in a home being restored into.
    fs.mkdirSync(path.join(target, 'd'), { recursive: true });
  });
  afterEach(() => {
    TargetDirs.prototype.dir = realDir;
  });
  afterAll(async () => {
    await repo.close();
    restoreStateDir();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Right after `rel` is first opened on this thread, move it away and put a symlink to `outside` in its place. */
  function swapAfterOpening(rel: string): string {
    const moved = path.join(dir, `moved-${runs}`);
    let done = false;
    TargetDirs.prototype.dir = function (this: TargetDirs, r: string): number {
      const fd = realDir.call(this, r);
      if (!done && r === rel) {
        done = true;
        fs.renameSync(path.join(target, rel), moved);
        fs.symlinkSync(outside, path.join(target, rel));
      }
      return fd;
    };
    return moved;
  }

  for (const threads of [0, 2]) {
    it(`writes nothing through it and changes nothing it points to (${threads ? 'worker threads' : 'this thread'})`, async () => {
      const moved = swapAfterOpening('d');
      const pool = threads ? new WorkerPool({ keys: repo.keys, chunker: repo.config.chunker, size: threads }) : undefined;
      const warnings: string[] = [];
      try {
        await restore(repo, tree, { target, subpath: src, pool, onWarning: (m) => warnings.push(m) });
      } finally {
        await pool?.close();
      }
      // Nothing landed in, or was changed in, what the symlink points to.
      expect(fs.readdirSync(outside)).toEqual([]);
      expect(fs.statSync(outside).mode & 0o7777).toBe(0o700);
      // The symlink is still the user's; the restore did not replace or follow it.
      expect(fs.readlinkSync(path.join(target, 'd'))).toBe(outside);
      // Outside the swapped directory, everything is restored.
      expect(fs.readFileSync(path.join(target, 'top.txt'), 'utf8')).toBe('top\n');
      // Whatever went into `d` went into the directory that was opened (now moved) or was reported, never elsewhere.
      const landed = fs.readdirSync(moved).filter((n) => !n.startsWith('.aegis-restore-'));
      for (const n of landed.filter((x) => x.startsWith('f'))) expect(fs.readFileSync(path.join(moved, n), 'utf8')).toBe(fs.readFileSync(path.join(src, 'd', n), 'utf8'));
      const expected = fs.readdirSync(path.join(src, 'd'));
      const missing = expected.filter((n) => !landed.includes(n));
      for (const n of missing) expect(warnings.some((w) => w.includes(`/d/${n}`) || w.includes(`/d: `)), `${n} neither restored nor reported: ${warnings.join('\n')}`).toBe(true);
      if (missing.length > 0) expect(warnings.join('\n')).toContain('refusing to restore through it');
      // The opened directory got the snapshot's mode through its descriptor, not the symlink's target.
      expect(fs.statSync(moved).mode & 0o7777).toBe(0o777);
    });
  }

  it('a symlink already where a directory goes, or a directory where a file goes, is reported once and left; the rest is restored', async () => {
    fs.rmSync(path.join(target, 'd'), { recursive: true });
    fs.symlinkSync(outside, path.join(target, 'd'));
    fs.mkdirSync(path.join(target, 'top.txt'));
    fs.writeFileSync(path.join(src, 'other.txt'), 'other\n');
    const again = (await backup(repo, { paths: [src], threads: 1 })).snapshot.tree;
    const warnings: string[] = [];
    const s = await restore(repo, again, { target, subpath: src, onWarning: (m) => warnings.push(m) });
    expect(warnings).toEqual([
      `${path.join(src, 'd')}: ${path.join(target, 'd')} exists and is not a directory; refusing to restore through it (nothing under it is restored)`,
      `${path.join(src, 'top.txt')}: ${path.join(target, 'top.txt')} is a directory; the snapshot has a file there; left as it is`,
    ]);
    expect(s.errors).toBe(2);
    expect(fs.readdirSync(outside)).toEqual([]);
    expect(fs.readdirSync(path.join(target, 'top.txt'))).toEqual([]);
    expect(fs.readFileSync(path.join(target, 'other.txt'), 'utf8')).toBe('other\n');
    fs.rmSync(path.join(src, 'other.txt'));
  });
});
