import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import util from 'node:util';

/**
 * The native addon in native/ (built by scripts/setup.sh): utimensat with
 * nanosecond times, and mknod for FIFOs and device nodes. Node's own fs.utimes
 * takes a double of seconds, which cannot hold a present-day time to the
 * nanosecond (about 240 ns steps), so restores need this to be exact.
 */
interface NativeSyscalls {
  utimens(path: Buffer, atimeNs: bigint, mtimeNs: bigint, follow: boolean): void;
  /** Absent in an addon built before it was added. */
  futimens?(fd: number, atimeNs: bigint, mtimeNs: bigint): void;
  mknod(path: Buffer, mode: number, dev: bigint): void;
  fastcdcCut(buf: Uint8Array, start: number, end: number, gear: Int32Array, min: number, avg: number, max: number, maskStrict: number, maskLoose: number): number;
  /** Absent in an addon built before it was added. */
  mallocTrim?(): boolean;
  /**
   * A directory's entries with their lstat, packed (src/engine/dirscan.ts), or
   * -errno if it cannot be read. Never through a symlink; given (dev, ino), a
   * directory of another identity is not read (-ESTALE).
   */
  scanDir?(path: Buffer, dev?: bigint, ino?: bigint): Buffer | number;
  /** mallopt(M_MMAP_THRESHOLD): blocks of at least `bytes` get their own mappings, unmapped when freed. */
  setMmapThreshold?(bytes: number): boolean;
  /** `size` bytes starting on an `align` boundary (for O_DIRECT), in a V8-owned ArrayBuffer. */
  alignedBytes?(size: number, align: number): Uint8Array;
  /** AES-256-GCM of a‖b into out[offset…] plus the 16-byte tag; returns the bytes written. */
  gcmSealInto?(key: Uint8Array, iv: Uint8Array, ad: Uint8Array, a: Uint8Array, b: Uint8Array, out: Uint8Array, offset: number): number;
  /** Decrypt `data` where it lies; false if `tag` does not authenticate it (data is then garbage). */
  gcmOpenInPlace?(key: Uint8Array, iv: Uint8Array, ad: Uint8Array, data: Uint8Array, tag: Uint8Array): boolean;
  /**
   * A restored file in one call, under its final name: create `dest` exclusively
   * (so only where nothing is), write `data`, size, owner (if `chown`), mode,
   * times. 0, or an errno after removing the file it created.
   */
  restoreWholeFile?(
    dest: Buffer,
    data: Buffer | null,
    size: number,
    chown: boolean,
    uid: number,
    gid: number,
    mode: number,
    atimeNs: bigint,
    mtimeNs: bigint,
  ): number;
  /** Close the directory restoreWholeFile keeps open for the next file in it. */
  restoreDirDone?(): void;
  /** posix_fadvise(WILLNEED): have the kernel start reading the range now; 0 or an errno. */
  willNeed?(fd: number, offset: number, length: number): number;
  /** source.copy(target, targetStart, sourceStart, sourceEnd) by memmove, for buffers in shared memory (src/native/copy-bytes.ts). */
  copyBytes?(source: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number): void;
  /** pread that never waits for the disk (RWF_NOWAIT): bytes read, or -errno (-EAGAIN: not all cached). */
  readCached?(fd: number, bytes: Uint8Array, offset: number): number;
  /** Fault in every whole page of `bytes` now (madvise MADV_POPULATE_WRITE); false if the kernel cannot. */
  prefault?(bytes: Uint8Array): boolean;
  /** Hand the whole pages inside `bytes` back to the system (madvise MADV_DONTNEED); they read as zeros after. */
  discard?(bytes: Uint8Array): boolean;
  /**
   * Open a file to back up (O_NOATIME where allowed), fstat it into `stat` (size,
   * mtime s and ns, ctime s and ns, the descriptor, 1 if the read waited for
   * the disk) and read once into
   * bytes[offset…]: the bytes read, or -errno with nothing left open. Never
   * through a symlink, only a regular file (-EINVAL), and given (dev, ino) only
   * that file (-ESTALE).
   */
  backupOpen?(path: Buffer, bytes: Uint8Array, offset: number, stat: Float64Array, dev?: bigint, ino?: bigint): number;
  /** fstat into `stat` as backupOpen does, then close if asked: 0, or -errno with the descriptor still open. */
  backupStat?(fd: number, stat: Float64Array, close: boolean): number;
  /** close(2) of a descriptor backupOpen opened: 0 or -errno. */
  closeFd?(fd: number): number;
  /** posix_fadvise(WILLNEED) of the first 4 MiB of each of `paths`: how many were asked for. */
  prefetchFiles?(paths: Buffer[]): number;
  /** A file's extended attributes packed (src/snapshot/xattrs.ts), null if none, or -errno; never follows a last symlink. */
  readXattrs?(path: Buffer): Buffer | null | number;
  /**
   * Set the packed attributes on a descriptor or a path (`follow`: setxattr,
   * else lsetxattr). 0, or the errno of the first that failed (the rest are still tried).
   */
  setXattrs?(target: number | Buffer, packed: Buffer, follow: boolean): number;
}

/**
 * An errno the addon returned (as -errno or errno) as Node names and words its
 * own errors: ['EACCES', 'permission denied'].
 */
export function describeErrno(errno: number): [code: string, text: string] {
  const n = Math.abs(errno);
  return util.getSystemErrorMap().get(-n) ?? [`errno ${n}`, 'unknown error'];
}

function projectRoot(): string {
  // src/native/syscalls.ts under vitest, dist/src/native/syscalls.js when built.
  const here = path.dirname(fileURLToPath(import.meta.url));
  const parts = here.split(path.sep);
  const i = parts.lastIndexOf('src');
  const root = parts.slice(0, i).join(path.sep) || '/';
  return path.basename(root) === 'dist' ? path.dirname(root) : root;
}

let loaded: NativeSyscalls | null | undefined;

export function nativeSyscalls(): NativeSyscalls | null {
  if (loaded === undefined) {
    try {
      loaded = createRequire(import.meta.url)(path.join(projectRoot(), 'native', 'build', 'Release', 'aegis_native.node')) as NativeSyscalls;
    } catch {
      loaded = null;
    }
  }
  return loaded;
}
