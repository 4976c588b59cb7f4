import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { FILE_CACHE_SCHEMA, dropOldFileTables } from './filecache.js';
import { TREE_MEMO_SCHEMA } from './treememo.js';

/**
 * The local state database: a cache of what earlier backups saw, so unchanged
 * files are not read again. It is disposable: deleting it only makes the next
 * backup read every file. Location: $AEGIS_STATE_DIR, else $XDG_STATE_HOME/aegis,
 * else ~/.local/state/aegis.
 */
export function stateDir(): string {
  if (process.env.AEGIS_STATE_DIR) return process.env.AEGIS_STATE_DIR;
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'aegis');
}

export function openStateDb(): Database.Database {
  const dir = stateDir();
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const db = new Database(path.join(dir, 'state.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec(FILE_CACHE_SCHEMA);
  db.exec(TREE_MEMO_SCHEMA);
  dropOldFileTables(db);
  db.exec(`
    CREATE TABLE IF NOT EXISTS jobs (
      id INTEGER PRIMARY KEY,
      repo TEXT NOT NULL,
      kind TEXT NOT NULL,
      started TEXT NOT NULL,
      finished TEXT,
      status TEXT,
      snapshot TEXT,
      summary TEXT
    );
  `);
  return db;
}
