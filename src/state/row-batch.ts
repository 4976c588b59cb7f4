import type Database from 'better-sqlite3';

/**
 * Rows keyed by (repository, directory) written in batches of 500 in one
 * transaction each: one transaction per directory cost more than building the
 * row. Rows not yet committed are lost if the process dies, which only makes
 * the next backup slower.
 */
export class RowBatch {
  private pending: Array<[Buffer, Buffer]> = [];
  private readonly put: Database.Statement;

  /** `insert` takes (repo, dir, row) parameters. */
  constructor(
    private readonly db: Database.Database,
    private readonly repoId: string,
    insert: string,
  ) {
    this.put = db.prepare(insert);
  }

  add(dir: Buffer, row: Buffer): void {
    this.pending.push([dir, row]);
    if (this.pending.length >= 500) this.commit();
  }

  commit(): void {
    if (this.pending.length === 0) return;
    const rows = this.pending;
    this.pending = [];
    this.db.transaction(() => {
      for (const [dir, row] of rows) this.put.run(this.repoId, dir, row);
    })();
  }
}
