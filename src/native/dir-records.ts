import { nativeSyscalls } from './syscalls.js';

/**
 * A directory read in one native call (`scanDir` in native/aegis_native.c):
 * every entry's name and lstat, packed in one Buffer. An unchanged backup of
 * 30,000 files spent ~0.2 s in Node's `lstatSync` and about as much again in
 * garbage collection of the `BigIntStats` objects; the packed records are read
 * where they lie, and a file's size, mtime, ctime and inode are compared with
 * the file cache as bytes.
 *
 * Record after each name (little-endian): see the field offsets below.
 */
export const REC = {
  ERRNO: 0,
  MODE: 4,
  UID: 8,
  GID: 12,
  NLINK: 16,
  DEV: 24,
  RDEV: 32,
  /** size ‖ mtime ns ‖ ctime ns ‖ inode: the file cache's 32 stat bytes. */
  CACHE_STAT: 40,
  SIZE: 40,
  MTIME: 48,
  CTIME: 56,
  INO: 64,
  ATIME: 72,
  LENGTH: 80,
} as const;

export type ScanDir = (path: Buffer, dev?: bigint, ino?: bigint) => Buffer | number;

let scanFn: ScanDir | null | undefined;

/** The native scanner, or undefined when the addon is missing or older than it. */
export function nativeScanDir(): ScanDir | undefined {
  if (scanFn === undefined) {
    scanFn = nativeSyscalls()?.scanDir ?? null;
  }
  return scanFn ?? undefined;
}

/** Allow tests to exercise the fallback (Node's readdir and lstat). */
export function setNativeScanDir(fn: ScanDir | null | undefined): void {
  scanFn = fn;
}

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;

const TWO32 = 2 ** 32;

/** An unsigned 64-bit field as a Number (exact below 2^53, which sizes and link counts are). */
export function u64(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * TWO32;
}

/** The device and inode a scan recorded for the entry at `r`: which file or directory it found there. */
export function identityAt(buf: Buffer, r: number): { dev: bigint; ino: bigint } {
  return { dev: buf.readBigUInt64LE(r + REC.DEV), ino: buf.readBigUInt64LE(r + REC.INO) };
}

/** Each entry of a scan: its name (a view of `buf`) and where its record starts. */
export function* scanEntries(buf: Buffer): Generator<{ name: Buffer; r: number }> {
  for (let o = 0; o < buf.length; ) {
    const nameLength = buf.readUInt16LE(o);
    const r = o + 2 + nameLength;
    yield { name: buf.subarray(o + 2, r), r };
    o = r + REC.LENGTH;
  }
}
