import path from 'node:path';
import Database from 'better-sqlite3';
import { FILE_CACHE_SCHEMA, dropOldFileTables } from './filecache.js';
import { TREE_MEMO_SCHEMA } from './treememo.js';
import { STALE_AFTER_MS, stateDir } from './state-dir.js';
import { makeDirsSync } from '../util/make-dirs.js';
import { UserError } from '../errors.js';

/**
 * The local state database: a cache of what earlier backups saw, so unchanged
 * files are not read again. It is disposable: deleting it only makes the next
 * backup read every file. It lives in stateDir().
 */
export function openStateDb(): Database.Database {
  const dir = stateDir();
  try {
    makeDirsSync(dir, 0o700);
  } catch (err) {
    throw new UserError(`cannot create the state directory ${dir} (AEGIS_STATE_DIR): ${(err as Error).message}`);
  }
  const db = new Database(path.join(dir, 'state.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  // better-sqlite3 builds SQLite with a 16 MB page cache; this database reads
  // each directory's row once per backup and writes rows in batches, so the
  // cache only grew with what was written. 1 MiB: first backup of the bench
  // tree, four alternating runs, peak RSS 245-257 MiB against 257-276 MiB at
  // the same speed; an unchanged backup no slower (docs/DECISIONS.md, "Memory").
  db.pragma('cache_size = -1024');
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
    CREATE TABLE IF NOT EXISTS repos (
      repo TEXT PRIMARY KEY,
      last_backup INTEGER NOT NULL
    );
  `);
  return db;
}

export { STALE_AFTER_MS };

const STATE_TABLES = ['dir_files', 'dir_trees'] as const;

/** Record that a backup of `repo` just used its state. */
export function noteBackup(db: Database.Database, repo: string, now = Date.now()): void {
  db.prepare('INSERT INTO repos (repo, last_backup) VALUES (?, ?) ON CONFLICT (repo) DO UPDATE SET last_backup = excluded.last_backup').run(repo, now);
}

/** The repositories `table` has rows of: one index seek each, however many rows. */
function reposIn(db: Database.Database, table: (typeof STATE_TABLES)[number]): string[] {
  const next = db.prepare(`SELECT repo FROM ${table} WHERE repo > ? ORDER BY repo LIMIT 1`).pluck();
  const out: string[] = [];
  for (let r = next.get('') as string | undefined; r !== undefined; r = next.get(r) as string | undefined) out.push(r);
  return out;
}

/**
 * Delete the rows of repositories no backup has used for `staleAfterMs`, and
 * return their IDs. Rows of a repository with no record yet (state written
 * before records were kept) start their time now. Only speed is at stake: a
 * backup of a repository whose rows went reads its files again.
 */
export function forgetStaleRepos(db: Database.Database, now = Date.now(), staleAfterMs = STALE_AFTER_MS): string[] {
  const recorded = new Set(db.prepare('SELECT repo FROM repos').pluck().all() as string[]);
  for (const table of STATE_TABLES) {
    for (const repo of reposIn(db, table)) {
      if (recorded.has(repo)) continue;
      noteBackup(db, repo, now);
      recorded.add(repo);
    }
  }
  const stale = db.prepare('SELECT repo FROM repos WHERE last_backup < ?').pluck().all(now - staleAfterMs) as string[];
  if (stale.length === 0) return stale;
  const deletes = [...STATE_TABLES, 'repos'].map((table) => db.prepare(`DELETE FROM ${table} WHERE repo = ?`));
  const forget = db.transaction((repos: string[]) => {
    for (const repo of repos) for (const del of deletes) del.run(repo);
  });
  forget(stale);
  // Freed pages stay in the file for later rows; when they are most of it, give them back.
  const free = db.pragma('freelist_count', { simple: true }) as number;
  const pages = db.pragma('page_count', { simple: true }) as number;
  if (free * 2 > pages) db.exec('VACUUM');
  return stale;
}
