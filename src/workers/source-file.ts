import fs, { constants as fsc } from 'node:fs';
import { nativeSyscalls } from '../native/syscalls.js';

// Fields of the stat arrays the addon fills (native/aegis_native.c, backupOpen).
const SIZE = 0;
const MTIME_S = 1;
const MTIME_NS = 2;
const CTIME_S = 3;
const CTIME_NS = 4;
const FD = 5;
const COLD = 6;
const FIELDS = 7;

const native = nativeSyscalls();
const backupOpen = native?.backupOpen;
const backupStat = native?.backupStat;
const closeFd = native?.closeFd;

/** The stat fields after reading: compared at once, so one array serves every file of this thread. */
const after = new Float64Array(FIELDS);

/**
 * A path the scan found to be a regular file is something else when opened: a
 * symlink, a FIFO, a directory or another file swapped in since. It is left out
 * (restic does the same for a change of type); following a symlink here would
 * let whoever can write the backed-up directory have a root backup read any
 * file, and opening a FIFO would block.
 */
export class ChangedTypeError extends Error {
  readonly code = 'ECHANGEDTYPE';

  constructor(now: string, was = 'the regular file') {
    super(`is now ${now}, not ${was} the scan found; left out`);
    this.name = 'ChangedTypeError';
  }
}

/** Which file a scan found at a path (lstat's device and inode). */
export interface FileIdentity {
  dev: bigint;
  ino: bigint;
}

/**
 * A file being read for a backup: opened without touching its access time,
 * with the size and times it had when opened, so that one that changed while
 * it was read is noticed (`changed`); never through a symlink, and never
 * anything but a regular file (ChangedTypeError).
 *
 * A small file costs two calls into the addon (open, fstat and the first read;
 * then fstat and close) instead of five through Node's fs, whose fstat builds a
 * BigIntStats with four Dates each time. Whenever the addon reports a failure,
 * the step is repeated with Node's calls, which word the error as everywhere
 * else (and succeed if the file was only in the way for a moment).
 */
export class SourceFile {
  private closed = false;

  /**
   * `native`: opened by the addon, which closes it too (Node's fs warns about
   * descriptors it did not open). `before`: the stat fields when it was opened.
   */
  private constructor(
    readonly fd: number,
    private readonly native: boolean,
    private readonly before: Float64Array,
  ) {}

  /**
   * Open `path` and read once into bytes[at…]: the file, how many bytes came,
   * and whether that read had to wait for the disk (`cold`: the file was not
   * in the page cache; see prefetch). Given the scan's `identity`, another
   * file found there (a directory above it swapped for a symlink since the
   * scan) is not read.
   */
  static open(path: Buffer, bytes: Buffer, at: number, identity?: FileIdentity): { file: SourceFile; read: number; cold: boolean } {
    const stat = new Float64Array(FIELDS);
    if (backupOpen && backupStat && closeFd) {
      const n = backupOpen(path, bytes, at, stat, identity?.dev, identity?.ino);
      if (n >= 0) return { file: new SourceFile(stat[FD]!, true, stat), read: n, cold: stat[COLD] === 1 };
    }
    const file = new SourceFile(openWithNode(path), false, stat);
    try {
      const st = statWithNode(file.fd, file.before);
      if (!st.isFile()) throw new ChangedTypeError(kindOf(st));
      if (identity && (st.dev !== identity.dev || st.ino !== identity.ino)) throw new ChangedTypeError('another file');
      return { file, read: fs.readSync(file.fd, bytes, at, bytes.length - at, null), cold: false };
    } catch (err) {
      file.close();
      throw err;
    }
  }

  /** The size fstat gave when the file was opened. */
  get size(): number {
    return this.before[SIZE]!;
  }

  read(bytes: Buffer, at: number): number {
    return fs.readSync(this.fd, bytes, at, bytes.length - at, null);
  }

  /**
   * Whether the file's size or times moved since it was opened, or it is not
   * `size` bytes long (what was read). Closes the file.
   */
  finish(size: number): boolean {
    if (this.native && backupStat!(this.fd, after, true) === 0) {
      this.closed = true;
    } else {
      try {
        statWithNode(this.fd, after);
      } finally {
        this.close();
      }
    }
    const b = this.before;
    return (
      after[SIZE] !== size ||
      after[MTIME_S] !== b[MTIME_S] ||
      after[MTIME_NS] !== b[MTIME_NS] ||
      after[CTIME_S] !== b[CTIME_S] ||
      after[CTIME_NS] !== b[CTIME_NS]
    );
  }

  /** Close it unless `finish` did. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.native) closeFd!(this.fd);
    else fs.closeSync(this.fd);
  }
}

const prefetchFiles = native?.prefetchFiles;

/**
 * Have the kernel start reading paths[from…] into the page cache, without
 * waiting (nothing without the addon). A worker reads the files of a batch one
 * after another; once one of them was cold, it asks for the rest of the batch
 * here, so that the disk serves them in parallel instead of one wait each.
 */
export function prefetch(paths: Uint8Array[], from: number): void {
  if (!prefetchFiles || from >= paths.length) return;
  prefetchFiles(paths.slice(from).map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
}

const OPEN_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK;

function openWithNode(path: Buffer): number {
  // O_NOATIME keeps the backup from touching the source's access times; only the
  // owner (or root) may use it, so fall back to a plain open.
  try {
    try {
      return fs.openSync(path, OPEN_FLAGS | fsc.O_NOATIME);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
      return fs.openSync(path, OPEN_FLAGS);
    }
  } catch (err) {
    // O_NOFOLLOW refuses a symlink with ELOOP, which would read as a loop of links.
    if ((err as NodeJS.ErrnoException).code === 'ELOOP' && isSymlink(path)) throw new ChangedTypeError('a symbolic link');
    throw err;
  }
}

function isSymlink(path: Buffer): boolean {
  try {
    return fs.lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function kindOf(st: fs.BigIntStats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'something other than a regular file';
}

const NS = 1_000_000_000n;

/** Seconds and nanoseconds as struct stat has them: the nanoseconds are never negative. */
function splitNs(ns: bigint, out: Float64Array, at: number): void {
  let s = ns / NS;
  let rest = ns % NS;
  if (rest < 0n) {
    rest += NS;
    s -= 1n;
  }
  out[at] = Number(s);
  out[at + 1] = Number(rest);
}

function statWithNode(fd: number, out: Float64Array): fs.BigIntStats {
  const st = fs.fstatSync(fd, { bigint: true });
  out[SIZE] = Number(st.size);
  splitNs(st.mtimeNs, out, MTIME_S);
  splitNs(st.ctimeNs, out, CTIME_S);
  return st;
}
