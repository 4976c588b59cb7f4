import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { openStateDb } from '../src/state/statedb.js';

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
});
