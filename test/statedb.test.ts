import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { backup } from '../src/engine/backup.js';
import { Repository } from '../src/repo/repository.js';
import { STALE_AFTER_MS, forgetStaleRepos, noteBackup, openStateDb } from '../src/state/statedb.js';
import { LocalStorage } from '../src/storage/local.js';

describe('state database', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-state-'));
  const saved = process.env.AEGIS_STATE_DIR;
  afterAll(() => {
    if (saved === undefined) delete process.env.AEGIS_STATE_DIR;
    else process.env.AEGIS_STATE_DIR = saved;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('drops the per-file table of earlier versions and gives its space back', () => {
    const file = path.join(dir, 'state.sqlite');
    const old = new Database(file);
    old.exec('CREATE TABLE files (repo TEXT, dir BLOB, name BLOB, content BLOB, PRIMARY KEY (repo, dir, name)) WITHOUT ROWID');
    const put = old.prepare('INSERT INTO files VALUES (?, ?, ?, ?)');
    old.transaction(() => {
      for (let i = 0; i < 20_000; i++) put.run('r', Buffer.from(`/d${i % 100}`), Buffer.from(`f${i}`), Buffer.alloc(200, i));
    })();
    old.close();
    const before = fs.statSync(file).size;

    process.env.AEGIS_STATE_DIR = dir;
    const db = openStateDb();
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all();
    db.close();
    expect(tables).toContain('dir_files');
    expect(tables).not.toContain('files');
    expect(fs.statSync(file).size).toBeLessThan(before / 4);
  });

  it("forgets the rows of repositories no backup has used for 30 days, and gives their space back", () => {
    process.env.AEGIS_STATE_DIR = path.join(dir, 'stale');
    const db = openStateDb();
    const rows = (repo: string, n: number) => {
      const files = db.prepare('INSERT INTO dir_files (repo, dir, entries) VALUES (?, ?, ?)');
      const trees = db.prepare('INSERT INTO dir_trees (repo, dir, memo) VALUES (?, ?, ?)');
      db.transaction(() => {
        for (let i = 0; i < n; i++) {
          files.run(repo, Buffer.from(`/d${i}`), Buffer.alloc(2000, i));
          trees.run(repo, Buffer.from(`/d${i}`), Buffer.alloc(500, i));
        }
      })();
    };
    const count = (repo: string) =>
      [db.prepare('SELECT count(*) FROM dir_files WHERE repo = ?').pluck().get(repo), db.prepare('SELECT count(*) FROM dir_trees WHERE repo = ?').pluck().get(repo)];
    const now = Date.UTC(2026, 10, 24);
    rows('used', 100);
    rows('old', 5000);
    rows('unrecorded', 100);
    noteBackup(db, 'used', now - 1000);
    noteBackup(db, 'old', now - STALE_AFTER_MS - 1000);
    const before = fs.statSync(path.join(dir, 'stale', 'state.sqlite')).size;

    expect(forgetStaleRepos(db, now)).toEqual(['old']);
    expect(count('old')).toEqual([0, 0]);
    expect(count('used')).toEqual([100, 100]);
    // Rows from before records were kept: their 30 days start now.
    expect(count('unrecorded')).toEqual([100, 100]);
    expect(db.prepare("SELECT last_backup FROM repos WHERE repo = 'unrecorded'").pluck().get()).toBe(now);
    db.pragma('wal_checkpoint(TRUNCATE)');
    expect(fs.statSync(path.join(dir, 'stale', 'state.sqlite')).size).toBeLessThan(before / 4);

    noteBackup(db, 'used', now + STALE_AFTER_MS);
    expect(forgetStaleRepos(db, now + STALE_AFTER_MS + 1000).sort()).toEqual(['unrecorded']);
    expect(count('used')).toEqual([100, 100]);
    db.close();
  });

  it('a backup records that it used its repository', async () => {
    const state = path.join(dir, 'after-backup');
    process.env.AEGIS_STATE_DIR = state;
    const src = path.join(dir, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'a.txt'), 'a\n');
    const repo = await Repository.init(new LocalStorage(path.join(dir, 'repo')), 'pw');
    try {
      const before = Date.now();
      await backup(repo, { paths: [src], threads: 1 });
      const db = new Database(path.join(state, 'state.sqlite'), { readonly: true });
      const last = db.prepare('SELECT last_backup FROM repos WHERE repo = ?').pluck().get(repo.config.id) as number;
      db.close();
      expect(last).toBeGreaterThanOrEqual(before);
      expect(last).toBeLessThanOrEqual(Date.now());
    } finally {
      await repo.close();
    }
  });
});
