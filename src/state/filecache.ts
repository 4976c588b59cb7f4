import type Database from 'better-sqlite3';
import { type BigIntStats } from 'node:fs';

interface Row {
  name: Buffer;
  size: number;
  mtime_ns: string;
  ctime_ns: string;
  inode: string;
  content: Buffer;
}

/**
 * What the last backup saw of each file: if size, mtime, ctime and inode are the
 * same, the file is taken as unchanged and its content list reused without
 * reading it. The caller must still check that every listed blob is in the
 * repository's index: a prune may have removed them.
 *
 * Rows are keyed by (repository, directory, name) and a directory's rows are
 * read in one query when the backup first asks about it: one query per
 * directory instead of one per file.
 */
export class FileCache {
  private readonly dirStmt: Database.Statement;
  private readonly putStmt: Database.Statement;
  private pending: Array<[Buffer, BigIntStats, string[]]> = [];
  private readonly dirs = new Map<string, Map<string, Row>>();

  constructor(private readonly db: Database.Database, private readonly repoId: string) {
    this.dirStmt = db.prepare('SELECT name, size, mtime_ns, ctime_ns, inode, content FROM files WHERE repo = ? AND dir = ?');
    this.putStmt = db.prepare(
      'INSERT OR REPLACE INTO files (repo, dir, name, size, mtime_ns, ctime_ns, inode, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
  }

  private static split(p: Buffer): [Buffer, Buffer] {
    const slash = p.lastIndexOf(0x2f);
    return [p.subarray(0, Math.max(slash, 1)), p.subarray(slash + 1)];
  }

  lookup(p: Buffer, st: BigIntStats): string[] | undefined {
    const [dir, name] = FileCache.split(p);
    const dirKey = dir.toString('latin1');
    let rows = this.dirs.get(dirKey);
    if (!rows) {
      rows = new Map();
      for (const r of this.dirStmt.all(this.repoId, dir) as Row[]) rows.set(r.name.toString('latin1'), r);
      this.dirs.set(dirKey, rows);
      // Directories are visited depth first: keep only a few around.
      if (this.dirs.size > 64) this.dirs.delete(this.dirs.keys().next().value!);
    }
    const row = rows.get(name.toString('latin1'));
    if (!row) return undefined;
    if (
      BigInt(row.size) !== st.size ||
      row.mtime_ns !== st.mtimeNs.toString() ||
      row.ctime_ns !== st.ctimeNs.toString() ||
      row.inode !== st.ino.toString()
    ) {
      return undefined;
    }
    const ids: string[] = [];
    for (let o = 0; o + 32 <= row.content.length; o += 32) ids.push(row.content.toString('hex', o, o + 32));
    return ids;
  }

  /** Remember a file; written in batches by `commit`. */
  record(p: Buffer, st: BigIntStats, content: string[]): void {
    this.pending.push([p, st, content]);
    if (this.pending.length >= 2000) this.commit();
  }

  commit(): void {
    if (this.pending.length === 0) return;
    const rows = this.pending;
    this.pending = [];
    this.db.transaction(() => {
      for (const [p, st, content] of rows) {
        const [dir, name] = FileCache.split(p);
        this.putStmt.run(this.repoId, dir, name, Number(st.size), st.mtimeNs.toString(), st.ctimeNs.toString(), st.ino.toString(), Buffer.from(content.join(''), 'hex'));
      }
    })();
  }
}

export const FILE_CACHE_SCHEMA = `
  CREATE TABLE IF NOT EXISTS files (
    repo TEXT NOT NULL,
    dir BLOB NOT NULL,
    name BLOB NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns TEXT NOT NULL,
    ctime_ns TEXT NOT NULL,
    inode TEXT NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (repo, dir, name)
  ) WITHOUT ROWID;
  DROP TABLE IF EXISTS file_cache;
`;
