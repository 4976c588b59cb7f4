import fs, { constants as fsc } from 'node:fs';
import { type MasterKeys } from '../crypto/keys.js';
import { BlobType, DamagedBlobError, openBlob, openBlobTransient } from '../repo/blob.js';
import { describeErrno, nativeSyscalls } from '../native/syscalls.js';
import { type NodeType } from '../snapshot/tree.js';
import { type Xattr, packXattrs, settableXattrs, unpackXattrs } from '../snapshot/xattrs.js';
import { TargetDirs } from './target-dirs.js';

/**
 * Writing restored files: blob contents into a file's temporary name, and the
 * finish (size, owner, mode, times, rename into place). Used by the restore on
 * the main thread and by worker threads, which write the blobs they decrypt
 * themselves: the plaintext never crosses threads, and the file system calls of
 * a restore of many small files are spread over every core.
 *
 * The calls are synchronous: writes land in the page cache in microseconds,
 * while each promise-based call queues on libuv's four-thread pool. No fsync per
 * file: like restic, a restore relies on the rename being last, not on
 * per-file durability.
 */

/** The metadata a restored file or directory gets (a TreeNode is one). */
export interface RestoredMeta {
  type: NodeType;
  uid: number;
  gid: number;
  mode: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  xattrs?: Xattr[];
}

/**
 * A restore's target: its descriptor (open for the whole restore) and its path
 * for messages (latin1). Paths in requests are relative to it (TargetDirs).
 */
export interface RestoreRoot {
  fd: number;
  path: string;
}

/** For a file written in one piece: everything needed to finish it at once. */
export interface FinishSpec {
  /** Relative to the target, like every path here. */
  dest: Uint8Array;
  size: number;
  meta: RestoredMeta;
}

/** One place a blob's plaintext goes: a file's temporary name and an offset, or the whole file. */
export interface BlobWrite {
  tmp: Uint8Array;
  offset: number;
  finish?: FinishSpec;
}

export interface RangeBlobWrites {
  id: Uint8Array;
  /** Of the sealed blob within the range's data. */
  offset: number;
  length: number;
  writes: BlobWrite[];
}

/**
 * RangeBlobWrites in one buffer, for a worker thread. As objects, every path
 * was a Buffer cut from Node's shared 8 KiB pool, and a message copied each
 * pool slab it touched and made an ArrayBuffer of it on the other side: for
 * 30,000 small files, ~0.1 s of serializing on the main thread and as much of
 * deserializing and collecting on the workers.
 */
export function encodeRangeWrites(blobs: RangeBlobWrites[]): Uint8Array {
  const NONE = new Uint8Array(0);
  // Packed once here, for the size and the write below (in write order).
  const packed: Uint8Array[] = [];
  let size = 4;
  for (const b of blobs) {
    size += 32 + 8 + 8 + 4;
    for (const w of b.writes) {
      size += 1 + 4 + w.tmp.length + 8;
      if (!w.finish) continue;
      const xattrs = w.finish.meta.xattrs ? packXattrs(w.finish.meta.xattrs) : NONE;
      packed.push(xattrs);
      size += 4 + w.finish.dest.length + 8 + 12 + 16 + 4 + xattrs.length;
    }
  }
  let finished = 0;
  // Its own ArrayBuffer (not the pool's), so it can be moved instead of copied.
  const out = Buffer.from(new ArrayBuffer(size));
  let at = out.writeUInt32LE(blobs.length, 0);
  const bytesOf = (u: Uint8Array) => {
    at = out.writeUInt32LE(u.length, at);
    out.set(u, at);
    at += u.length;
  };
  for (const b of blobs) {
    out.set(b.id.subarray(0, 32), at);
    at = out.writeDoubleLE(b.offset, at + 32);
    at = out.writeDoubleLE(b.length, at);
    at = out.writeUInt32LE(b.writes.length, at);
    for (const w of b.writes) {
      at = out.writeUInt8(w.finish ? 1 : 0, at);
      bytesOf(w.tmp);
      at = out.writeDoubleLE(w.offset, at);
      if (!w.finish) continue;
      const { dest, size: fileSize, meta } = w.finish;
      bytesOf(dest);
      at = out.writeDoubleLE(fileSize, at);
      at = out.writeUInt32LE(meta.uid, at);
      at = out.writeUInt32LE(meta.gid, at);
      at = out.writeUInt32LE(meta.mode, at);
      at = out.writeBigInt64LE(meta.atimeNs, at);
      at = out.writeBigInt64LE(meta.mtimeNs, at);
      bytesOf(packed[finished++]!);
    }
  }
  return out;
}

/** The inverse of encodeRangeWrites; IDs and paths are views of `u`. */
export function decodeRangeWrites(u: Uint8Array): RangeBlobWrites[] {
  const buf = bytes(u);
  let at = 0;
  const bytesAt = () => {
    const n = buf.readUInt32LE(at);
    at += 4 + n;
    return buf.subarray(at - n, at);
  };
  const count = buf.readUInt32LE(at);
  at += 4;
  const blobs: RangeBlobWrites[] = [];
  for (let i = 0; i < count; i++) {
    const id = buf.subarray(at, at + 32);
    const offset = buf.readDoubleLE(at + 32);
    const length = buf.readDoubleLE(at + 40);
    const n = buf.readUInt32LE(at + 48);
    at += 52;
    const writes: BlobWrite[] = [];
    for (let j = 0; j < n; j++) {
      const whole = buf[at++] === 1;
      const tmp = bytesAt();
      const woffset = buf.readDoubleLE(at);
      at += 8;
      if (!whole) {
        writes.push({ tmp, offset: woffset });
        continue;
      }
      const dest = bytesAt();
      const size = buf.readDoubleLE(at);
      const uid = buf.readUInt32LE(at + 8);
      const gid = buf.readUInt32LE(at + 12);
      const mode = buf.readUInt32LE(at + 16);
      const atimeNs = buf.readBigInt64LE(at + 20);
      const mtimeNs = buf.readBigInt64LE(at + 28);
      at += 36;
      const packed = bytesAt();
      const meta: RestoredMeta = { type: 'file', uid, gid, mode, atimeNs, mtimeNs };
      if (packed.length > 0) meta.xattrs = unpackXattrs(packed);
      writes.push({ tmp, offset: woffset, finish: { dest, size, meta } });
    }
    blobs.push({ id, offset, length, writes });
  }
  return blobs;
}

/** Why a write failed: the message (real paths), and the errno's code when there is one (ENOSPC…). */
export interface WriteFailure {
  message: string;
  code?: string;
}

/**
 * Per blob: why it could not be opened, or per write: null when done, else why
 * it failed; `warnings` for files restored without all their metadata.
 */
export type RangeWriteResult = Array<{ damaged: string; writes?: undefined; warnings?: undefined } | { damaged?: undefined; writes: Array<WriteFailure | null>; warnings?: string[] }>;

/** Whether this process restores owners (and trusted.* and security.* attributes): only root may set them. */
export const isRoot = process.getuid?.() === 0;
const wholeFileNative = nativeSyscalls()?.restoreWholeFile;
const dirDoneNative = nativeSyscalls()?.restoreDirDone;

function bytes(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/**
 * Decrypt and verify every blob of one ranged pack read, and write each where it
 * goes. `owned`: `data` is this call's alone (moved to a worker thread), so the
 * blobs are decrypted in place instead of into new buffers.
 */
export function writeRangeBlobs(keys: MasterKeys, packId: string, data: Buffer, blobs: RangeBlobWrites[], root: RestoreRoot, owned = false): RangeWriteResult {
  // Directories are opened afresh per request: a descriptor number is never
  // trusted past the request that opened it. The addon keeps the last directory
  // it was given open between files; it lets go before any is closed, and at the end.
  const dirs = new TargetDirs(root.fd, root.path, 64, dirDoneNative);
  try {
    return writeBlobs(keys, packId, data, blobs, owned, dirs);
  } finally {
    dirs.close();
  }
}

function writeBlobs(keys: MasterKeys, packId: string, data: Buffer, blobs: RangeBlobWrites[], owned: boolean, dirs: TargetDirs): RangeWriteResult {
  const openOne = owned ? openBlobTransient : openBlob;
  const out: RangeWriteResult = [];
  for (const b of blobs) {
    let plain: Buffer;
    try {
      plain = openOne(keys, BlobType.Data, bytes(b.id), data.subarray(b.offset, b.offset + b.length), packId);
    } catch (err) {
      // Anything else is not the blob's fault: it fails the whole request.
      if (!(err instanceof DamagedBlobError)) throw err;
      out.push({ damaged: err.detail });
      continue;
    }
    // All-zero blobs are not written: the final truncate leaves a hole there.
    const zero = isAllZero(plain);
    let warnings: string[] | undefined;
    const writes = b.writes.map((w) => {
      const tmp = bytes(w.tmp).toString('latin1');
      try {
        if (w.finish) {
          const warning = writeWholeFile(dirs, tmp, zero ? null : plain, w.finish);
          if (warning) (warnings ??= []).push(dirs.explain(warning));
        } else if (!zero) writeAt(dirs.at(tmp), plain, w.offset);
        return null;
      } catch (err) {
        return { message: dirs.explain((err as Error).message), code: (err as NodeJS.ErrnoException).code };
      }
    });
    out.push(warnings ? { writes, warnings } : { writes });
  }
  return out;
}

/** Part of a file of several blobs; the temporary file is created by whichever write comes first. */
function writeAt(tmp: Buffer, data: Buffer, offset: number): void {
  const fd = fs.openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
  try {
    ensureMadeHere(fd, tmp);
    writeAll(fd, data, offset);
  } finally {
    fs.closeSync(fd);
  }
}

function writeAll(fd: number, data: Buffer, offset: number): void {
  let done = 0;
  while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, offset + done);
}

/**
 * A file whose content is one blob (or none), with one open. One call into the
 * addon creates it under its final name when nothing is there yet (O_EXCL) and
 * writes and finishes it: no temporary name and no rename, ~0.25 s less system
 * time over the bench tree's 30,000 files. The file is complete before control
 * comes back here, so an interrupted restore never leaves one half written (a
 * process killed inside the call can; its time is then not the snapshot's, so
 * `--overwrite if-changed` writes it again). If that fails (something is there
 * already, or an error, after removing what it created), the usual path runs
 * with Node's calls: a temporary name, then a rename that replaces what is
 * there, and errors in Node's words.
 */
function writeWholeFile(dirs: TargetDirs, tmp: string, data: Buffer | null, spec: FinishSpec): string | undefined {
  const { meta } = spec;
  // The file and its temporary name share a directory, so one descriptor serves both.
  const dest = dirs.at(bytes(spec.dest).toString('latin1'));
  // A file with extended attributes takes the path below: they are set through its descriptor.
  if (!meta.xattrs && wholeFileNative?.(dest, data, spec.size, isRoot, meta.uid, meta.gid, meta.mode, meta.atimeNs, meta.mtimeNs) === 0) return undefined;
  const written = data?.length ?? 0;
  return finishOpen(dirs.at(tmp), fsc.O_EXCL, dest, spec.size, meta, written, (fd) => {
    if (data) writeAll(fd, data, 0);
  });
}

/**
 * The end of a file of several blobs: truncate to the full size (zero blobs
 * become holes), finish, rename. `tmp` and `dest` are relative to `dirs`' target.
 * Returns a warning if the file is restored without all its extended attributes.
 */
export function finishFile(dirs: TargetDirs, tmp: string, dest: string, size: number, meta: RestoredMeta): string | undefined {
  const tmpPath = dirs.at(tmp);
  const destPath = dirs.at(dest);
  let warning: string | undefined;
  try {
    warning = finishOpen(tmpPath, 0, destPath, size, meta, -1);
  } catch (err) {
    throw dirs.explained(err, tmp);
  }
  return warning && dirs.explain(warning);
}

/**
 * Open `tmp` (with `flags` beyond write/create/no-follow), let `write` fill it,
 * set its size unless `written` already is it, owner and mode on the open file,
 * then times and the rename into place.
 */
function finishOpen(tmp: Buffer, flags: number, dest: Buffer, size: number, meta: RestoredMeta, written: number, write?: (fd: number) => void): string | undefined {
  const fd = fs.openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_NOFOLLOW | flags, 0o600);
  let problem: string | undefined;
  try {
    if (!(flags & fsc.O_EXCL)) ensureMadeHere(fd, tmp);
    write?.(fd);
    if (written !== size) fs.ftruncateSync(fd, size);
    ownerAndMode(fd, meta);
    // After chown, which drops security.capability.
    problem = setXattrs(fd, meta.xattrs);
  } finally {
    fs.closeSync(fd);
  }
  setTimes(tmp, meta.atimeNs, meta.mtimeNs);
  fs.renameSync(tmp, dest);
  return problem && `${dest.toString()}: ${problem}`;
}

const setPacked = nativeSyscalls()?.setXattrs;

/** The end of the warning for an entry whose attributes the target's file system cannot keep. */
export const XATTRS_UNSUPPORTED = 'extended attributes not restored: the target file system does not support them';

/**
 * Set extended attributes on a descriptor, or on a path (`follow`: through a
 * last symlink, for the /proc link of a descriptor). Not as root, trusted.* and
 * security.* are left out, as the owner is (settableXattrs). What failed
 * comes back as a warning, never thrown: the file itself is restored.
 */
function setXattrs(target: number | Buffer, xattrs: Xattr[] | undefined, follow = false): string | undefined {
  const settable = settableXattrs(xattrs, isRoot);
  if (settable.length === 0) return undefined;
  if (!setPacked) return 'extended attributes not restored: the native addon is not built';
  const errno = setPacked(target, packXattrs(settable), follow);
  if (errno === 0) return undefined;
  const [code, text] = describeErrno(errno);
  // libuv words EOPNOTSUPP "operation not supported on socket", which would mislead here.
  if (code === 'EOPNOTSUPP' || code === 'ENOTSUP') return XATTRS_UNSUPPORTED;
  return `extended attributes not restored: ${code}: ${text}`;
}

const euid = process.geteuid?.() ?? -1;

/**
 * A temporary file opened again by name (a file of several blobs is written in
 * pieces, on any thread) must be the one this restore made: ours and not linked
 * elsewhere. Someone who can write its directory could otherwise put a file of
 * their own there, get the snapshot's bytes written into it, and as root even
 * have it given the snapshot's owner and setuid bit. Their file cannot be ours.
 */
function ensureMadeHere(fd: number, tmp: Buffer): void {
  const st = fs.fstatSync(fd);
  if ((euid >= 0 && st.uid !== euid) || st.nlink !== 1) throw new Error(`${tmp.toString()} was replaced by another file during the restore; not written`);
}

function ownerAndMode(fd: number, meta: RestoredMeta): void {
  if (isRoot) fs.fchownSync(fd, meta.uid, meta.gid);
  // chmod after chown: chown clears setuid/setgid bits.
  fs.fchmodSync(fd, meta.mode);
}

/** Linux's O_PATH: a descriptor that names an object without opening it (no device is touched). */
const O_PATH = 0o10000000;

/**
 * Owner (when root), mode and times of a symlink, FIFO or device just made at
 * `p`. Owner and mode go through a descriptor of what is there, checked to be
 * of `meta`'s type: a name swapped in the meantime (in a directory someone else
 * can write) gets neither, and nothing is ever followed.
 */
export function applyMetadata(p: Buffer, meta: RestoredMeta | null): string | undefined {
  if (!meta) return undefined;
  let problem: string | undefined;
  if (!TargetDirs.guarded) {
    // Without /proc there is no way to a descriptor's object from Node: by path, never following the last name.
    if (isRoot) fs.lchownSync(p, meta.uid, meta.gid);
    if (meta.type !== 'symlink') fs.chmodSync(p, meta.mode);
    problem = setXattrs(p, meta.xattrs);
    setTimes(p, meta.atimeNs, meta.mtimeNs);
    return problem;
  }
  const fd = fs.openSync(p, O_PATH | fsc.O_NOFOLLOW);
  try {
    const st = fs.fstatSync(fd);
    const kind = st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'chardev' : st.isBlockDevice() ? 'blockdev' : st.isFile() ? 'file' : 'other';
    if (kind !== meta.type) throw new Error(`${p.toString()} is no longer the ${meta.type} this restore made`);
    // The descriptor's /proc link leads to the object itself, a symlink included.
    const self = `/proc/self/fd/${fd}`;
    if (isRoot) fs.chownSync(self, meta.uid, meta.gid);
    if (meta.type !== 'symlink') fs.chmodSync(self, meta.mode);
    problem = setXattrs(Buffer.from(self), meta.xattrs, true);
  } finally {
    fs.closeSync(fd);
  }
  setTimes(p, meta.atimeNs, meta.mtimeNs);
  return problem;
}

/**
 * Owner (when root), mode, extended attributes and times of a directory,
 * through its descriptor. Returns a warning if attributes could not be set.
 */
export function applyDirMetadata(fd: number, meta: RestoredMeta): string | undefined {
  if (isRoot) fs.fchownSync(fd, meta.uid, meta.gid);
  fs.fchmodSync(fd, meta.mode);
  const problem = setXattrs(fd, meta.xattrs);
  const futimens = nativeSyscalls()?.futimens;
  if (futimens) futimens(fd, meta.atimeNs, meta.mtimeNs);
  else fs.futimesSync(fd, secondsOf(meta.atimeNs), secondsOf(meta.mtimeNs));
  return problem;
}

function secondsOf(ns: bigint): number {
  return Number(ns / 1000n) / 1e6;
}

/** Set times without following a symlink: to the nanosecond with the addon, else to about a microsecond. */
function setTimes(p: Buffer, atimeNs: bigint, mtimeNs: bigint): void {
  const native = nativeSyscalls();
  if (native) native.utimens(p, atimeNs, mtimeNs, false);
  else fs.lutimesSync(p, secondsOf(atimeNs), secondsOf(mtimeNs));
}

function isAllZero(b: Buffer): boolean {
  if (b.length === 0) return true;
  if (b[0] !== 0 || b[b.length - 1] !== 0) return false;
  // Compare against itself shifted by one: all bytes equal and the first is zero.
  return b.subarray(1).equals(b.subarray(0, b.length - 1));
}
