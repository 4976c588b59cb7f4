import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FsOperations, FuseSession, type KernelOptions } from '../mount/fuse.js';
import { type Attr, ENODATA, ENOENT, FsError, type Listing, S_IFDIR, S_IFLNK, S_IFREG } from '../mount/types.js';
import { FAKE_STATFS, type InProcessMount, mountInProcess, run } from './helpers/mount.js';

/**
 * Symlinks through the FUSE binding (mount/fuse.ts, native/aegis_fuse.c): the
 * kernel keeps a link's target, so paths through snapshots/latest do not cost
 * a READLINK each, and a link whose target changes is made to be read again.
 * A fake file system in this process; the mount is touched only through
 * promises and child processes (a synchronous call here would deadlock).
 */
const KOPTS: KernelOptions = {
  fsname: 'aegis:links',
  // Long, as the mount's are: the kernel would keep a stale target this long without invalidate().
  entryTimeout: 60,
  attrTimeout: 60,
  maxReadahead: 1024 * 1024,
  kernelCache: true,
  autoUnmount: true,
};

const FILES = 200;

function attr(mode: number, size: number, ino: number): Attr {
  return { mode, uid: 0, gid: 0, size, nlink: 1, ino, rdev: 0, blocks: 0, atimeMs: 1_700_000_000_000, mtimeMs: 1_700_000_000_000, ctimeMs: 1_700_000_000_000 };
}

describe('mount: symlinks are cached by the kernel, and invalidated when they change', () => {
  let mnt: string;
  let session: FuseSession | undefined;
  let target = 'dir-a';
  let readlinks = 0;
  const names = Array.from({ length: FILES }, (_, i) => `f${i}`);

  const nodeAt = (p: string): Attr | undefined => {
    if (p === '/') return attr(S_IFDIR | 0o555, 0, 1);
    if (p === '/latest') return attr(S_IFLNK | 0o777, Buffer.byteLength(target), 2);
    const m = /^\/(dir-[ab])(?:\/f(\d+))?$/.exec(p);
    if (!m) return undefined;
    const base = m[1] === 'dir-a' ? 1000 : 2000;
    if (m[2] === undefined) return attr(S_IFDIR | 0o555, 0, base);
    return Number(m[2]) < FILES ? attr(S_IFREG | 0o444, 0, base + 1 + Number(m[2])) : undefined;
  };

  const ops: FsOperations = {
    getattr(p) {
      const a = nodeAt(p);
      if (!a) throw new FsError(ENOENT, 'no');
      return a;
    },
    async readdir(p): Promise<Listing> {
      const list = p === '/' ? ['latest', 'dir-a', 'dir-b'] : names;
      const attrs = list.map((n) => nodeAt(p === '/' ? `/${n}` : `${p}/${n}`)!);
      return {
        names: ['.', '..', ...list],
        modes: [S_IFDIR, S_IFDIR, ...attrs.map((a) => a.mode & 0o170000)],
        inos: [1, 1, ...attrs.map((a) => a.ino)],
        attrs: [undefined, undefined, ...attrs],
      };
    },
    async readlink() {
      readlinks++;
      return target;
    },
    open() {},
    read: () => 0,
    release() {},
    statfs: () => FAKE_STATFS,
    getxattr: () => Promise.reject(new FsError(ENODATA, 'none')),
    listxattr: () => Promise.resolve(Buffer.alloc(0)),
  };

  let m: InProcessMount | undefined;
  beforeAll(async () => {
    m = await mountInProcess('aegis-links-', ops, KOPTS);
    mnt = m.mnt;
    session = m.session;
  });

  afterAll(async () => {
    await m?.close();
  });

  it('ls -l through a link reads the link once, not once or twice per entry', async () => {
    const ls = await run('ls', ['-l', path.join(mnt, 'latest') + '/']);
    expect(ls.code).toBe(0);
    expect(ls.stdout.split('\n').filter((l) => / f\d+$/.test(l)).length).toBe(FILES);
    const stats = await run('stat', ['-c', '%i', ...names.map((n) => path.join(mnt, 'latest', n))]);
    expect(stats.stdout.trim().split('\n').map(Number)).toEqual(names.map((_, i) => 1001 + i));
    // Without the kernel keeping the target: ~3 * FILES.
    expect(readlinks).toBeGreaterThanOrEqual(1);
    expect(readlinks).toBeLessThanOrEqual(2);
  });

  it('after invalidate(), the changed target is read again at once', async () => {
    expect((await run('readlink', [path.join(mnt, 'latest')])).stdout.trim()).toBe('dir-a');
    target = 'dir-b';
    await session!.invalidate(['/latest']);
    expect((await run('readlink', [path.join(mnt, 'latest')])).stdout.trim()).toBe('dir-b');
    expect((await run('stat', ['-c', '%i', path.join(mnt, 'latest', 'f0')])).stdout.trim()).toBe('2001');
    // A path the kernel never looked up is no error.
    await session!.invalidate(['/no/such/path']);
  });
});
