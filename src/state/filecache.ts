import type Database from 'better-sqlite3';
import { RowBatch } from './row-batch.js';
import { type BigIntStats } from 'node:fs';

/** What the cache needs to know of a file the backup stored. */
export interface CachedFile {
  name: Buffer;
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  inode: bigint;
  content: string[];
}

// An entry of a directory's row: u16le name length ‖ name ‖ u64le size ‖
// i64le mtime ns ‖ i64le ctime ns ‖ u64le inode ‖ u32le ID count ‖ 32-byte IDs.
// The 32 bytes from size to inode are compared with the file's lstat as bytes.
const STAT_BYTES = 32;

/**
 * What the last backup saw of each file: if size, mtime, ctime and inode are the
 * same, the file is taken as unchanged and its content list reused without
 * reading it, as long as every listed blob is still in the repository.
 *
 * One row per directory, holding all its files packed in one blob: one query
 * and one small parse per directory instead of a row object (and its Buffers)
 * per file, which cost a quarter of an unchanged backup. A directory's row is
 * rewritten when its files are saved, and only if it changed.
 */
interface DirRow {
  row: Buffer | undefined;
  /** Where each name's entry starts (after the name). */
  at: Map<string, number>;
  /** Lookups that found their file unchanged. */
  hits: number;
}

export class FileCache {
  private readonly dirStmt: Database.Statement;
  private readonly rows: RowBatch;
  private readonly dirs = new Map<string, DirRow>();
  private readonly probe = Buffer.alloc(STAT_BYTES);

  constructor(db: Database.Database, private readonly repoId: string) {
    this.dirStmt = db.prepare('SELECT entries FROM dir_files WHERE repo = ? AND dir = ?').pluck();
    this.rows = new RowBatch(db, repoId, 'INSERT OR REPLACE INTO dir_files (repo, dir, entries) VALUES (?, ?, ?)');
  }

  private static split(p: Buffer): [Buffer, Buffer] {
    const slash = p.lastIndexOf(0x2f);
    return [p.subarray(0, Math.max(slash, 1)), p.subarray(slash + 1)];
  }

  private load(dir: Buffer): DirRow {
    const dirKey = dir.toString('latin1');
    let d = this.dirs.get(dirKey);
    if (!d) {
      const row = this.dirStmt.get(this.repoId, dir) as Buffer | undefined;
      const at = new Map<string, number>();
      for (let o = 0; row && o + 2 <= row.length; ) {
        const nameLength = row.readUInt16LE(o);
        at.set(row.toString('latin1', o + 2, o + 2 + nameLength), o + 2 + nameLength);
        const ids = row.readUInt32LE(o + 2 + nameLength + STAT_BYTES);
        o += 2 + nameLength + STAT_BYTES + 4 + 32 * ids;
      }
      d = { row, at, hits: 0 };
      this.dirs.set(dirKey, d);
      // Directories are visited depth first: keep only a few around.
      if (this.dirs.size > 64) this.dirs.delete(this.dirs.keys().next().value!);
    }
    return d;
  }

  /** What the last backup saw in directory `dir`, for lookups of its entries by name. */
  dir(dir: Buffer): CachedDir {
    return new CachedDir(this.load(dir));
  }

  /**
   * The content of an unchanged file, if every blob of it is still stored
   * (`isStoredAt`, by the ID's bytes: a prune may have removed some since).
   */
  lookup(p: Buffer, st: BigIntStats, isStoredAt: (buf: Buffer, at: number) => boolean): string[] | undefined {
    const [dir, name] = FileCache.split(p);
    writeStat(this.probe, 0, st.size, st.mtimeNs, st.ctimeNs, st.ino);
    return lookupIn(this.load(dir), name.toString('latin1'), this.probe, 0, isStoredAt);
  }

  /** Whether the last backup saw a file at `p` (changed since, if lookup found nothing). */
  knows(p: Buffer): boolean {
    const [dir, name] = FileCache.split(p);
    return this.load(dir).at.has(name.toString('latin1'));
  }

  /**
   * Whether `recordDir(dir, files)` with `fileCount` files would rewrite the row
   * as it is: every file of the row was found unchanged, and there is no other.
   * Saves building the list when it would be thrown away.
   */
  unchanged(dir: Buffer, fileCount: number, handle?: CachedDir): boolean {
    const known = handle?.row ?? this.dirs.get(dir.toString('latin1'));
    return known?.row !== undefined && known.hits === fileCount && known.at.size === fileCount;
  }

  /**
   * Remember the files of directory `dir` that the backup stored (not those that
   * changed while being read); replaces what was known of that directory.
   * Written in batches by `commit`.
   */
  recordDir(dir: Buffer, files: CachedFile[], handle?: CachedDir): void {
    const known = handle?.row ?? this.dirs.get(dir.toString('latin1'));
    let length = 0;
    for (const f of files) length += 2 + f.name.length + STAT_BYTES + 4 + 32 * f.content.length;
    const row = Buffer.allocUnsafe(length);
    let o = 0;
    for (const f of files) {
      o = row.writeUInt16LE(f.name.length, o);
      o += f.name.copy(row, o);
      o = writeStat(row, o, BigInt(f.size), f.mtimeNs, f.ctimeNs, f.inode);
      o = row.writeUInt32LE(f.content.length, o);
      for (const id of f.content) o += row.write(id, o, 'hex');
    }
    if (known?.row?.equals(row)) return;
    this.rows.add(dir, row);
  }

  commit(): void {
    this.rows.commit();
  }
}

/** The cache's row of one directory (see FileCache.dir). */
export class CachedDir {
  constructor(/** @internal */ readonly row: DirRow) {}

  /**
   * The content of the file `name` (latin1 of its bytes) if the 32 bytes at
   * `stat[at]` (u64le size ‖ i64le mtime ns ‖ i64le ctime ns ‖ u64le inode) are
   * what the last backup recorded, and every blob of it is still stored.
   */
  lookup(name: string, stat: Buffer, at: number, isStoredAt: (buf: Buffer, at: number) => boolean): string[] | undefined {
    return lookupIn(this.row, name, stat, at, isStoredAt);
  }

  knows(name: string): boolean {
    return this.row.at.has(name);
  }
}

function lookupIn(d: DirRow, name: string, stat: Buffer, statAt: number, isStoredAt: (buf: Buffer, at: number) => boolean): string[] | undefined {
  const { row, at } = d;
  const o = at.get(name);
  if (row === undefined || o === undefined) return undefined;
  if (row.compare(stat, statAt, statAt + STAT_BYTES, o, o + STAT_BYTES) !== 0) return undefined;
  const count = row.readUInt32LE(o + STAT_BYTES);
  const first = o + STAT_BYTES + 4;
  // Checked by their bytes first: a hex string is made only for a file that is reused.
  for (let i = 0, p = first; i < count; i++, p += 32) if (!isStoredAt(row, p)) return undefined;
  const ids: string[] = new Array(count);
  for (let i = 0, p = first; i < count; i++, p += 32) ids[i] = row.toString('hex', p, p + 32);
  d.hits++;
  return ids;
}

// The four fields through a DataView: Buffer's writeBigInt64LE splits a value
// with BigInt arithmetic, a new BigInt per step (12 MB of garbage on the main
// thread in a first backup of the bench tree).
const statView = new DataView(new ArrayBuffer(STAT_BYTES));
const statBytes = new Uint8Array(statView.buffer);

function writeStat(out: Buffer, o: number, size: bigint, mtimeNs: bigint, ctimeNs: bigint, inode: bigint): number {
  statView.setBigUint64(0, size, true);
  statView.setBigInt64(8, mtimeNs, true);
  statView.setBigInt64(16, ctimeNs, true);
  statView.setBigUint64(24, inode, true);
  out.set(statBytes, o);
  return o + STAT_BYTES;
}

export const FILE_CACHE_SCHEMA = `
  CREATE TABLE IF NOT EXISTS dir_files (
    repo TEXT NOT NULL,
    dir BLOB NOT NULL,
    entries BLOB NOT NULL,
    PRIMARY KEY (repo, dir)
  ) WITHOUT ROWID;
`;

/**
 * Earlier layouts kept a row per file. Dropping them leaves their pages in the
 * file (a development database had grown to 232 MB around 70 MB of rows, and
 * an unchanged backup read it 0.2 s slower when it was not in the page cache),
 * so the database is compacted once, when they go.
 */
export function dropOldFileTables(db: Database.Database): void {
  const old = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('files', 'file_cache')").pluck().all() as string[];
  if (old.length === 0) return;
  for (const name of old) db.exec(`DROP TABLE ${name}`);
  db.exec('VACUUM');
}
