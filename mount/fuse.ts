import fsp from 'node:fs/promises';
import Fuse, { type FuseOperations, type FuseOptions, type FuseStat } from 'fuse-native';
import { mountAt } from './mounts.js';
import { TRACE, traceMemory } from './trace.js';
import { type Attr, EIO, EROFS, FsError, type Listing } from './types.js';

/**
 * The only file that touches fuse-native (2.2.6, libfuse 2). Everything above it
 * works with promises, typed attributes and errno numbers; this file turns them
 * into fuse-native's callbacks, and builds the mount options.
 *
 * Facts this relies on (docs/MOUNT.md, checked by test/mount-fuse.test.ts):
 *  - every handler runs on the main JavaScript thread, so nothing here blocks;
 *  - `timeout: false`, or fuse-native fails any request slower than 15 s;
 *  - fuse-native knows no `ro`, `use_ino` or `max_readahead` option, but joins
 *    its option list unescaped into one "-o…" argument, so extra options ride in
 *    the value of `fsname` (the passthrough below, in one place only).
 */

export interface Statfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  fsid: number;
  flag: number;
  namemax: number;
}

/** The file system as mount/index.ts implements it; fuse.ts adds the plumbing. */
export interface FsOperations {
  getattr(path: string): Attr | Promise<Attr>;
  /** The full listing, "." and ".." included. */
  readdir(path: string): Promise<Listing>;
  readlink(path: string): Promise<string>;
  open(path: string, flags: number): Promise<number>;
  read(path: string, fd: number, buf: Buffer, len: number, pos: number): number | Promise<number>;
  release(path: string, fd: number): void | Promise<void>;
  statfs(path: string): Statfs;
}

export interface KernelOptions {
  /** Shown as the mount's source in /proc/mounts (commas and spaces are replaced). */
  fsname: string;
  allowOther?: boolean;
  /** Let the kernel check permissions against the stored mode and owner. */
  defaultPermissions?: boolean;
  /** Seconds the kernel may trust a name lookup / attributes without asking again. */
  entryTimeout: number;
  attrTimeout: number;
  /** Largest read-ahead the kernel may use for this mount, in bytes. */
  maxReadahead: number;
  /** Keep file pages in the kernel's page cache across opens (contents never change). */
  kernelCache: boolean;
  /** Have fusermount unmount when this process dies, even by kill -9. */
  autoUnmount: boolean;
  debug?: boolean;
}

/** Options fuse-native does not know, passed through libfuse's -o list. */
export function passthroughOptions(opts: KernelOptions): string[] {
  return ['ro', 'use_ino', `max_readahead=${Math.max(4096, Math.floor(opts.maxReadahead))}`];
}

function cleanFsname(s: string): string {
  return s.replace(/[,\s\\=]/g, '_').slice(0, 200) || 'aegis';
}

/** The option object for fuse-native, with the passthrough options inside `fsname`. */
export function fuseNativeOptions(opts: KernelOptions): FuseOptions {
  return {
    timeout: false,
    fsname: [cleanFsname(opts.fsname), ...passthroughOptions(opts)].join(','),
    subtype: 'aegis',
    allowOther: Boolean(opts.allowOther),
    defaultPermissions: Boolean(opts.defaultPermissions),
    kernelCache: opts.kernelCache,
    autoUnmount: opts.autoUnmount,
    entryTimeout: opts.entryTimeout,
    attrTimeout: opts.attrTimeout,
    debug: Boolean(opts.debug),
  };
}

/** The "-o…" argument fuse-native will hand to libfuse for these options (no mount). */
export function optionString(mountpoint: string, opts: KernelOptions): string {
  return new Fuse(mountpoint, {}, fuseNativeOptions(opts))._fuseOptions();
}

function toFuseStat(a: Attr): FuseStat {
  return {
    mode: a.mode,
    uid: a.uid,
    gid: a.gid,
    size: a.size,
    nlink: a.nlink,
    ino: a.ino,
    rdev: a.rdev,
    blksize: 128 * 1024,
    blocks: a.blocks,
    // fuse-native carries milliseconds in unsigned 64-bit: times before 1970 show as 1970.
    atime: a.atimeMs > 0 ? a.atimeMs : 0,
    mtime: a.mtimeMs > 0 ? a.mtimeMs : 0,
    ctime: a.ctimeMs > 0 ? a.ctimeMs : 0,
  };
}

export type ErrorReporter = (op: string, path: string, err: unknown) => void;

function errnoOf(err: unknown, op: string, p: string, report: ErrorReporter): number {
  if (err instanceof FsError) return -err.errno;
  report(op, p, err);
  return -EIO;
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as Promise<T>)?.then === 'function';
}

/**
 * AEGIS_MOUNT_TRACE=1: every 2 s, request counts and memory (MiB) on stderr, for
 * looking into performance (docs/MOUNT.md). Off by default: no cost.
 */
export const opCounts: Record<string, number> = {};

function traceLine(): string {
  const mem = Object.fromEntries(Object.entries(process.memoryUsage()).map(([k, v]) => [k, Math.round(v / 1048576)]));
  for (const [k, f] of Object.entries(traceMemory)) mem[k] = Math.round(f() / 1048576);
  return `aegis mount trace: requests ${JSON.stringify(opCounts)} memory ${JSON.stringify(mem)}\n`;
}

function operations(fs: FsOperations, report: ErrorReporter): FuseOperations {
  if (TRACE) setInterval(() => process.stderr.write(traceLine()), 2000).unref();
  const rofs = (...args: unknown[]) => (args[args.length - 1] as (e: number) => void)(-EROFS);
  return {
    getattr(p, cb) {
      if (TRACE) opCounts.getattr = (opCounts.getattr ?? 0) + 1;
      let r: Attr | Promise<Attr>;
      try {
        r = fs.getattr(p);
      } catch (err) {
        return cb(errnoOf(err, 'getattr', p, report));
      }
      if (isPromise(r)) r.then((a) => cb(0, toFuseStat(a)), (err) => cb(errnoOf(err, 'getattr', p, report)));
      else cb(0, toFuseStat(r));
    },
    readdir(p, cb) {
      if (TRACE) opCounts.readdir = (opCounts.readdir ?? 0) + 1;
      fs.readdir(p).then(
        (l) => {
          const stats: FuseStat[] = new Array(l.names.length);
          for (let i = 0; i < l.names.length; i++) stats[i] = { mode: l.modes[i]!, ino: l.inos[i]!, atime: 0, mtime: 0, ctime: 0 };
          cb(0, l.names, stats);
        },
        (err) => cb(errnoOf(err, 'readdir', p, report)),
      );
    },
    readlink(p, cb) {
      fs.readlink(p).then(
        (t) => cb(0, t),
        (err) => cb(errnoOf(err, 'readlink', p, report)),
      );
    },
    open(p, flags, cb) {
      if (TRACE) opCounts.open = (opCounts.open ?? 0) + 1;
      fs.open(p, flags).then(
        (fd) => cb(0, fd),
        (err) => cb(errnoOf(err, 'open', p, report)),
      );
    },
    read(p, fd, buf, len, pos, cb) {
      if (TRACE) opCounts.read = (opCounts.read ?? 0) + 1;
      let r: number | Promise<number>;
      try {
        r = fs.read(p, fd, buf, len, pos);
      } catch (err) {
        return cb(errnoOf(err, 'read', p, report));
      }
      if (isPromise(r)) r.then((n) => cb(n), (err) => cb(errnoOf(err, 'read', p, report)));
      else cb(r);
    },
    release(p, fd, cb) {
      try {
        const r = fs.release(p, fd);
        if (isPromise(r)) r.then(() => cb(0), () => cb(0));
        else cb(0);
      } catch {
        cb(0);
      }
    },
    statfs(p, cb) {
      cb(0, fs.statfs(p));
    },
    // Read-only: the mount is also mounted "ro", so the kernel refuses these before
    // they reach us; the handlers are the second line.
    write: (_p, _fd, _buf, _len, _pos, cb) => cb(-EROFS),
    create: rofs,
    truncate: rofs,
    ftruncate: rofs,
    utimens: rofs,
    chown: rofs,
    chmod: rofs,
    mknod: rofs,
    setxattr: rofs,
    removexattr: rofs,
    unlink: rofs,
    rename: rofs,
    link: rofs,
    symlink: rofs,
    mkdir: rofs,
    rmdir: rofs,
  };
}

function devMajorMinor(dev: number): [number, number] {
  const major = ((dev >>> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >>> 12) & 0xfff00);
  return [major, minor];
}

/**
 * The kernel's read-ahead for a FUSE mount is capped by its backing device info
 * (128 KiB by default) whatever max_readahead says; raising read_ahead_kb lets
 * one sequential reader keep up to 12 requests in flight instead of 2. Best effort
 * (needs root); changes only this mount's own device entry.
 */
export async function tuneReadahead(mountpoint: string, bytes: number): Promise<boolean> {
  try {
    const st = await fsp.stat(mountpoint);
    const [major, minor] = devMajorMinor(st.dev);
    await fsp.writeFile(`/sys/class/bdi/${major}:${minor}/read_ahead_kb`, String(Math.floor(bytes / 1024)));
    return true;
  } catch {
    return false;
  }
}

export class FuseSession {
  private unmounted = false;

  private constructor(
    private readonly fuse: Fuse,
    readonly mountpoint: string,
  ) {}

  /** Mount and resolve once the kernel has sent INIT (the file system answers from then on). */
  static mount(mountpoint: string, fs: FsOperations, opts: KernelOptions, report: ErrorReporter): Promise<FuseSession> {
    const fuse = new Fuse(mountpoint, operations(fs, report), fuseNativeOptions(opts));
    return new Promise((resolve, reject) => {
      fuse.mount((err) => {
        if (err) reject(new Error(`cannot mount at ${mountpoint}: ${err.message === 'fuse failed' ? 'libfuse refused (its message is above)' : err.message}`));
        else resolve(new FuseSession(fuse, fuse.mnt));
      });
    });
  }

  /** Unmount (lazily, so a busy mount detaches too). Safe to call twice, or after an external unmount. */
  async unmount(): Promise<void> {
    if (this.unmounted) return;
    this.unmounted = true;
    if (!(await mountAt(this.mountpoint))) return;
    const err = await new Promise<Error | null>((resolve) => this.fuse.unmount((e) => resolve(e)));
    // Someone else (aegis umount) may have unmounted it in the meantime: that is success too.
    if (err && (await mountAt(this.mountpoint))) throw new Error(`unmounting ${this.mountpoint} failed: ${err.message}`);
  }
}
