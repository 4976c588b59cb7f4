import fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fusermountUnmount, mountAt } from './mounts.js';
import { TRACE, traceMemory } from './trace.js';
import { type Attr, EIO, FsError, type Listing } from './types.js';

/**
 * The only file that touches the FUSE binding (native/aegis_fuse.c, libfuse 3).
 * Everything above it works with promises, typed attributes and errno numbers;
 * this file answers the binding's requests with them, and builds the mount options.
 *
 * Facts this relies on (docs/MOUNT.md, checked by test/mount-fuse.test.ts):
 *  - every request reaches the main JavaScript thread, so nothing here blocks;
 *  - a request waits as long as its answer takes (no per-operation timeout);
 *  - each request is answered exactly once: after the answer the binding's
 *    request is gone, so every handler below replies last, outside its try;
 *  - a listing may carry its entries' attributes: they reach the kernel with the
 *    names (READDIRPLUS), so `ls -l` afterwards costs no request per entry.
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
  /**
   * `path` was opened as handle `fd`: the binding has answered the kernel
   * already (native/aegis_fuse.c, op_open), so what goes wrong here shows at
   * the first read on the handle.
   */
  open(path: string, flags: number, fd: number): void | Promise<void>;
  read(path: string, fd: number, buf: Buffer, len: number, pos: number): number | Promise<number>;
  release(path: string, fd: number): void | Promise<void>;
  statfs(path: string): Statfs;
  /**
   * An extended attribute's value (FsError ENODATA if there is none by that
   * name). Asked only for entries whose attributes said they have some: the
   * binding answers the others itself.
   */
  getxattr(path: string, name: Buffer): Promise<Buffer>;
  /** The names of the extended attributes, each followed by a NUL. */
  listxattr(path: string): Promise<Buffer>;
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

/** The "-o…" argument handed to libfuse for these options (the read-ahead goes separately, to INIT). */
export function optionString(_mountpoint: string, opts: KernelOptions): string {
  const list = [
    'ro',
    `fsname=${cleanFsname(opts.fsname)}`,
    'subtype=aegis',
    `entry_timeout=${opts.entryTimeout}`,
    `attr_timeout=${opts.attrTimeout}`,
  ];
  if (opts.allowOther) list.push('allow_other');
  if (opts.defaultPermissions) list.push('default_permissions');
  if (opts.kernelCache) list.push('kernel_cache');
  if (opts.autoUnmount) list.push('auto_unmount');
  if (opts.debug) list.push('debug');
  return `-o${list.join(',')}`;
}

function cleanFsname(s: string): string {
  return s.replace(/[,\s\\=]/g, '_').slice(0, 200) || 'aegis';
}

const enum Op {
  Getattr = 1,
  Readdir,
  Readlink,
  Open,
  Read,
  Release,
  Statfs,
  Getxattr,
  Listxattr,
}
const OP_NAMES = ['', 'getattr', 'readdir', 'readlink', 'open', 'read', 'release', 'statfs', 'getxattr', 'listxattr'];
const EV_INIT = 1;
const EV_EXIT = 2;

/** A request of the binding: opaque, valid until it is answered. */
type Request = object;

type Dispatch = (op: Op, req: Request, path: string, fh: number, size: number, offsetOrFlags: number, buf: Buffer | undefined) => void;

interface FuseBinding {
  mount(mountpoint: string, options: string, dispatch: Dispatch, onEvent: (event: number) => void, maxReadahead: number): object;
  reply(req: Request, result: number): void;
  replyAttr(req: Request, attr: Float64Array): void;
  replyStatfs(req: Request, statfs: Float64Array): void;
  replyLink(req: Request, target: string): void;
  /** A getxattr's value or a listxattr's names (the binding handles the size rules). */
  replyBytes(req: Request, bytes: Buffer): void;
  replyDir(req: Request, names: string[], modes: number[], inos: number[], attrs: Float64Array | null): void;
  invalidate(session: object, paths: string[]): Promise<void>;
}

let loaded: FuseBinding | undefined;

function fuseBinding(): FuseBinding {
  if (!loaded) {
    // mount/fuse.ts under vitest, dist/mount/fuse.js when built.
    const here = path.dirname(fileURLToPath(import.meta.url));
    const root = path.basename(path.dirname(here)) === 'dist' ? path.dirname(path.dirname(here)) : path.dirname(here);
    const file = path.join(root, 'native', 'build', 'Release', 'aegis_fuse.node');
    try {
      loaded = createRequire(import.meta.url)(file) as FuseBinding;
    } catch (err) {
      throw new Error(`the FUSE module ${file} cannot be loaded (${(err as Error).message.split('\n')[0]}); run "npm run setup"`);
    }
  }
  return loaded;
}

// Field order shared with native/aegis_fuse.c (A_* and S_*).
const ATTR_FIELDS = 13;

function putAttr(out: Float64Array, at: number, a: Attr): void {
  out[at] = a.mode;
  out[at + 1] = a.uid;
  out[at + 2] = a.gid;
  out[at + 3] = a.size;
  out[at + 4] = a.nlink;
  out[at + 5] = a.ino;
  out[at + 6] = a.rdev;
  out[at + 7] = a.blocks;
  out[at + 8] = 128 * 1024;
  out[at + 9] = a.atimeMs;
  out[at + 10] = a.mtimeMs;
  out[at + 11] = a.ctimeMs;
  out[at + 12] = a.hasXattrs ? 1 : 0;
}

function statfsArray(s: Statfs): Float64Array {
  return Float64Array.of(s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail, s.fsid, s.flag, s.namemax);
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

/** The binding's one entry point into JavaScript: run the request, answer it once. */
function dispatcher(fs: FsOperations, report: ErrorReporter, b: FuseBinding): Dispatch {
  const fail = (req: Request, op: Op, p: string) => (err: unknown) => b.reply(req, errnoOf(err, OP_NAMES[op]!, p, report));
  const attrOut = new Float64Array(ATTR_FIELDS);
  const replyAttr = (req: Request, a: Attr) => {
    putAttr(attrOut, 0, a);
    b.replyAttr(req, attrOut);
  };
  const replyDir = (req: Request, l: Listing) => {
    let attrs: Float64Array | null = null;
    if (l.attrs) {
      attrs = new Float64Array(l.names.length * ATTR_FIELDS).fill(NaN);
      for (let i = 0; i < l.names.length; i++) {
        const a = l.attrs[i];
        if (a) putAttr(attrs, i * ATTR_FIELDS, a);
      }
    }
    b.replyDir(req, l.names, l.modes, l.inos, attrs);
  };
  return (op, req, p, fh, size, offsetOrFlags, buf) => {
    if (TRACE) opCounts[OP_NAMES[op]!] = (opCounts[OP_NAMES[op]!] ?? 0) + 1;
    let pending: Promise<unknown>;
    switch (op) {
      case Op.Getattr: {
        let r: Attr | Promise<Attr>;
        try {
          r = fs.getattr(p);
        } catch (err) {
          return fail(req, op, p)(err);
        }
        if (!isPromise(r)) return replyAttr(req, r);
        pending = r.then((a) => replyAttr(req, a));
        break;
      }
      case Op.Read: {
        let r: number | Promise<number>;
        try {
          r = fs.read(p, fh, buf!, size, offsetOrFlags);
        } catch (err) {
          return fail(req, op, p)(err);
        }
        if (!isPromise(r)) return b.reply(req, r);
        pending = r.then((n) => b.reply(req, n));
        break;
      }
      case Op.Readdir:
        pending = fs.readdir(p).then((l) => replyDir(req, l));
        break;
      case Op.Readlink:
        pending = fs.readlink(p).then((t) => b.replyLink(req, t));
        break;
      case Op.Getxattr:
        // The binding passes the attribute's name in the buffer argument.
        pending = fs.getxattr(p, buf!).then((v) => b.replyBytes(req, v));
        break;
      case Op.Listxattr:
        pending = fs.listxattr(p).then((v) => b.replyBytes(req, v));
        break;
      case Op.Open:
      case Op.Release:
        // Answered by the binding already: whatever happens here, the reply only frees the request.
        pending = Promise.resolve()
          .then(() => (op === Op.Open ? fs.open(p, offsetOrFlags, fh) : fs.release(p, fh)))
          .then(
            () => b.reply(req, 0),
            () => b.reply(req, 0),
          );
        break;
      case Op.Statfs: {
        let s: Statfs;
        try {
          s = fs.statfs(p);
        } catch (err) {
          return fail(req, op, p)(err);
        }
        return b.replyStatfs(req, statfsArray(s));
      }
      default:
        return b.reply(req, -EIO);
    }
    pending.catch(fail(req, op, p));
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

/** How long an unmount waits for the binding's loop to end (requests still being answered). */
const EXIT_WAIT_MS = 5000;

export class FuseSession {
  private unmounted = false;

  private constructor(
    private readonly handle: object,
    readonly mountpoint: string,
    /** Settles when the binding's loop has ended (after any unmount). */
    readonly exited: Promise<void>,
  ) {}

  /** Mount and resolve once the kernel has sent INIT (the file system answers from then on). */
  static mount(mountpoint: string, fs: FsOperations, opts: KernelOptions, report: ErrorReporter): Promise<FuseSession> {
    const b = fuseBinding();
    if (TRACE) setInterval(() => process.stderr.write(traceLine()), 2000).unref();
    return new Promise((resolve, reject) => {
      let session: FuseSession | undefined;
      let onExit!: () => void;
      const exited = new Promise<void>((r) => (onExit = r));
      const onEvent = (event: number) => {
        if (event === EV_INIT && session) resolve(session);
        else if (event === EV_EXIT) {
          onExit();
          // Unmounted before INIT arrived: there will be no session.
          reject(new Error(`cannot mount at ${mountpoint}: the kernel ended the connection`));
        }
      };
      try {
        const readahead = Math.max(4096, Math.floor(opts.maxReadahead));
        const handle = b.mount(mountpoint, optionString(mountpoint, opts), dispatcher(fs, report, b), onEvent, readahead);
        session = new FuseSession(handle, mountpoint, exited);
      } catch (err) {
        reject(new Error(`cannot mount at ${mountpoint}: ${(err as Error).message}`));
      }
    });
  }

  /**
   * Have the kernel forget what it cached of these paths (attributes, a
   * symlink's target): the made-up links whose target just changed. Resolves
   * once the kernel has been told, so an access after that asks anew.
   */
  invalidate(paths: string[]): Promise<void> {
    if (this.unmounted || paths.length === 0) return Promise.resolve();
    return fuseBinding().invalidate(this.handle, paths);
  }

  /** Unmount (lazily, so a busy mount detaches too). Safe to call twice, or after an external unmount. */
  async unmount(): Promise<void> {
    if (this.unmounted) return;
    this.unmounted = true;
    if (await mountAt(this.mountpoint)) {
      const r = await fusermountUnmount(this.mountpoint, true);
      // Someone else (aegis umount) may have unmounted it in the meantime: that is success too.
      if (!r.ok && (await mountAt(this.mountpoint))) throw new Error(`unmounting ${this.mountpoint} failed: ${r.message}`);
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.exited, new Promise<void>((r) => (timer = setTimeout(r, EXIT_WAIT_MS)))]);
    clearTimeout(timer);
  }
}
