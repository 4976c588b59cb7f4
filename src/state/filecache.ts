import type Database from 'better-sqlite3';
import { type BigIntStats } from 'node:fs';

/**
 * What the last backup saw of each file: if size, mtime, ctime and inode are the
 * same, the file is taken as unchanged and its content list reused without
 * reading it. The caller must still check that every listed blob is in the
 * repository's index: a prune may have removed them.
 */
export class FileCache {
  private readonly getStmt: Database.Statement;
  private readonly putStmt: Database.Statement;
  private pending: Array<[Buffer, BigIntStats, string[]]> = [];

  constructor(private readonly db: Database.Database, private readonly repoId: string) {
    this.getStmt = db.prepare('SELECT size, mtime_ns, ctime_ns, inode, content FROM file_cache WHERE repo = ? AND path = ?');
    this.putStmt = db.prepare(
      'INSERT OR REPLACE INTO file_cache (repo, path, size, mtime_ns, ctime_ns, inode, content, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)',
    );
  }

  lookup(path: Buffer, st: BigIntStats): string[] | undefined {
    const row = this.getStmt.get(this.repoId, path) as
      | { size: number; mtime_ns: string; ctime_ns: string; inode: string; content: Buffer }
      | undefined;
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
  record(path: Buffer, st: BigIntStats, content: string[]): void {
    this.pending.push([path, st, content]);
    if (this.pending.length >= 2000) this.commit();
  }

  commit(): void {
    if (this.pending.length === 0) return;
    const rows = this.pending;
    this.pending = [];
    this.db.transaction(() => {
      for (const [p, st, content] of rows) {
        this.putStmt.run(this.repoId, p, Number(st.size), st.mtimeNs.toString(), st.ctimeNs.toString(), st.ino.toString(), Buffer.from(content.join(''), 'hex'));
      }
    })();
  }
}
