/**
 * Types for fuse-native 2.2.6, which ships none. Only what mount/fuse.ts uses is
 * declared; everything here was read from node_modules/fuse-native/index.js.
 *
 * Callbacks take a negative errno (or 0) first. Paths arrive as JavaScript strings
 * decoded from UTF-8 by N-API (invalid bytes become U+FFFD), and strings handed
 * back (readdir names, readlink targets) are encoded as UTF-8: see docs/MOUNT.md.
 */
declare module 'fuse-native' {
  /** What getattr answers; times are milliseconds since the epoch (or Dates). */
  export interface FuseStat {
    mode: number;
    uid?: number;
    gid?: number;
    size?: number;
    dev?: number;
    nlink?: number;
    ino?: number;
    rdev?: number;
    blksize?: number;
    blocks?: number;
    atime?: number | Date;
    mtime?: number | Date;
    ctime?: number | Date;
  }

  export interface FuseStatfs {
    bsize?: number;
    frsize?: number;
    blocks?: number;
    bfree?: number;
    bavail?: number;
    files?: number;
    ffree?: number;
    favail?: number;
    fsid?: number;
    flag?: number;
    namemax?: number;
  }

  type Done = (err: number) => void;

  export interface FuseOperations {
    init?(cb: Done): void;
    statfs?(path: string, cb: (err: number, st?: FuseStatfs) => void): void;
    getattr?(path: string, cb: (err: number, st?: FuseStat) => void): void;
    fgetattr?(path: string, fd: number, cb: (err: number, st?: FuseStat) => void): void;
    readdir?(path: string, cb: (err: number, names?: string[], stats?: FuseStat[]) => void): void;
    readlink?(path: string, cb: (err: number, target?: string) => void): void;
    open?(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
    opendir?(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
    release?(path: string, fd: number, cb: Done): void;
    releasedir?(path: string, fd: number, cb: Done): void;
    /** cb(bytesRead) on success, cb(negative errno) on failure. */
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (result: number) => void): void;
    write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (result: number) => void): void;
    create?(path: string, mode: number, cb: (err: number, fd?: number) => void): void;
    truncate?(path: string, size: number, cb: Done): void;
    ftruncate?(path: string, fd: number, size: number, cb: Done): void;
    utimens?(path: string, atime: number, mtime: number, cb: Done): void;
    chown?(path: string, uid: number, gid: number, cb: Done): void;
    chmod?(path: string, mode: number, cb: Done): void;
    mknod?(path: string, mode: number, dev: number, cb: Done): void;
    setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: Done): void;
    removexattr?(path: string, name: string, cb: Done): void;
    unlink?(path: string, cb: Done): void;
    rename?(src: string, dest: string, cb: Done): void;
    link?(src: string, dest: string, cb: Done): void;
    symlink?(src: string, dest: string, cb: Done): void;
    mkdir?(path: string, mode: number, cb: Done): void;
    rmdir?(path: string, cb: Done): void;
  }

  export interface FuseOptions {
    /** Per-operation timeout in ms, or false for none (default 15000 → ETIMEDOUT). */
    timeout?: number | false | Record<string, number | false>;
    force?: boolean;
    mkdir?: boolean;
    debug?: boolean;
    allowOther?: boolean;
    allowRoot?: boolean;
    autoUnmount?: boolean;
    defaultPermissions?: boolean;
    maxRead?: number;
    fsname?: string;
    subtype?: string;
    kernelCache?: boolean;
    autoCache?: boolean;
    entryTimeout?: number;
    attrTimeout?: number;
    acAttrTimeout?: number;
    uid?: number;
    gid?: number;
  }

  class Fuse {
    constructor(mountpoint: string, ops: FuseOperations, opts?: FuseOptions);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    /** Builds the single "-o…" argument passed to libfuse. */
    _fuseOptions(): string;
    static unmount(mountpoint: string, cb: (err: Error | null) => void): void;
    static readonly ENOENT: number;
    static readonly EIO: number;
    static readonly EROFS: number;
  }
  export default Fuse;
}
