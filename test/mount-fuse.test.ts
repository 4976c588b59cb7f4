import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FsOperations, FuseSession, type KernelOptions, optionString } from '../mount/fuse.js';
import { mountAt } from '../mount/mounts.js';
import { type Attr, ENODATA, ENOENT, FsError, type Listing, S_IFDIR, S_IFREG } from '../mount/types.js';
import { FAKE_STATFS, type InProcessMount, mountInProcess, run, waitFor } from './helpers/mount.js';

/**
 * mount/fuse.ts against the real FUSE binding and kernel, in this process. The
 * handlers run on this thread, so the test only touches the mount through
 * promises and child processes (a synchronous fs call here would deadlock).
 */
const KOPTS: KernelOptions = {
  fsname: 'aegis:/some repo,with comma',
  entryTimeout: 1,
  attrTimeout: 1,
  maxReadahead: 4 * 1024 * 1024,
  kernelCache: true,
  autoUnmount: true,
};

const SLOW_MS = 16_000; // longer than the 15 s per-operation timeout of fuse-native, the binding used before

function attr(mode: number, size: number, ino: number): Attr {
  return { mode, uid: 0, gid: 0, size, nlink: 1, ino, rdev: 0, blocks: 1, atimeMs: 1_700_000_000_123, mtimeMs: 1_700_000_000_123, ctimeMs: 1_700_000_000_123 };
}

describe('mount/fuse.ts: the FUSE binding', () => {
  let mnt: string;
  let session: FuseSession | undefined;
  const seenPaths: string[] = [];
  /** What open, read and release were told, in order: [op, path, handle]. */
  const handleLog: Array<[string, string, number]> = [];
  const files = new Map<string, { data: Buffer; ino: number; slow?: boolean }>([
    ['/plain', { data: Buffer.from('plain\n'), ino: 4242 }],
    ['/slow', { data: Buffer.from('worth the wait\n'), ino: 4343, slow: true }],
    ['/caf\u00e9 \uefff', { data: Buffer.from('mapped\n'), ino: 4444 }],
    ['/listed', { data: Buffer.from('listed with its attributes\n'), ino: 4545 }],
    ['/opened-a', { data: Buffer.from('first\n'), ino: 4646 }],
    ['/opened-b', { data: Buffer.from('second\n'), ino: 4747 }],
    ['/tagged', { data: Buffer.from('has extended attributes\n'), ino: 4848 }],
  ]);
  const tagged = [
    { name: Buffer.from('user.binary'), value: Buffer.of(0x00, 0xff, 0x0a) },
    { name: Buffer.from('user.note'), value: Buffer.from('a note') },
  ];
  /** What getxattr and listxattr were asked: [op, path]. */
  const xattrCalls: Array<[string, string]> = [];

  const ops: FsOperations = {
    getattr(p) {
      seenPaths.push(p);
      if (p === '/') return attr(S_IFDIR | 0o555, 0, 1);
      const f = files.get(p);
      if (!f) throw new FsError(ENOENT, 'no');
      return { ...attr(S_IFREG | 0o444, f.data.length, f.ino), hasXattrs: p === '/tagged' };
    },
    async getxattr(p, name) {
      xattrCalls.push(['getxattr', p]);
      const found = p === '/tagged' ? tagged.find((x) => x.name.equals(name)) : undefined;
      if (!found) throw new FsError(ENODATA, 'no such attribute');
      return found.value;
    },
    async listxattr(p) {
      xattrCalls.push(['listxattr', p]);
      return p === '/tagged' ? Buffer.concat(tagged.flatMap((x) => [x.name, Buffer.of(0)])) : Buffer.alloc(0);
    },
    async readdir(): Promise<Listing> {
      const names = [...files.keys()].map((k) => k.slice(1));
      // Only /listed comes with its attributes, which say something getattr would not.
      const attrs = names.map((n) => (n === 'listed' ? { ...attr(S_IFREG | 0o400, files.get('/listed')!.data.length, 4545), uid: 77, mtimeMs: -86_400_500 } : undefined));
      return {
        names: ['.', '..', ...names],
        modes: [S_IFDIR, S_IFDIR, ...names.map(() => S_IFREG)],
        inos: [1, 1, ...names.map((n) => files.get(`/${n}`)!.ino)],
        attrs: [undefined, undefined, ...attrs],
      };
    },
    async readlink() {
      throw new FsError(22, 'not a link');
    },
    open(p, _flags, fd) {
      handleLog.push(['open', p, fd]);
    },
    read(p, fd, buf, len, pos) {
      handleLog.push(['read', p, fd]);
      const f = files.get(p)!;
      const n = f.data.copy(buf, 0, pos, Math.min(f.data.length, pos + len));
      if (!f.slow) return n;
      return new Promise((resolve) => setTimeout(() => resolve(n), SLOW_MS));
    },
    release(p, fd) {
      handleLog.push(['release', p, fd]);
    },
    statfs: () => FAKE_STATFS,
  };

  let m: InProcessMount | undefined;
  beforeAll(async () => {
    m = await mountInProcess('aegis-fuse-', ops, KOPTS);
    mnt = m.mnt;
    session = m.session;
  });

  afterAll(async () => {
    await m?.close();
  });

  it('passes ro, our file system name and the timeouts to libfuse', () => {
    const s = optionString('/mnt/x', KOPTS);
    expect(s.startsWith('-o')).toBe(true);
    const list = s.slice(2).split(',');
    for (const o of ['ro', 'fsname=aegis:/some_repo_with_comma', 'subtype=aegis', 'auto_unmount', 'kernel_cache', 'entry_timeout=1', 'attr_timeout=1']) {
      expect(list).toContain(o);
    }
    expect(list).not.toContain('allow_other');
    expect(optionString('/mnt/x', { ...KOPTS, allowOther: true, defaultPermissions: true }).slice(2).split(',')).toEqual(expect.arrayContaining(['allow_other', 'default_permissions']));
  });

  it('the kernel mounts read-only, with our file system name and our inode numbers', async () => {
    const m = await mountAt(mnt);
    expect(m).toMatchObject({ fstype: 'fuse.aegis', source: 'aegis:/some_repo_with_comma' });
    const info = (await fsp.readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === mnt)!;
    expect(info.split(' ')[5]!.split(',')).toContain('ro');
    const st = await fsp.stat(path.join(mnt, 'plain'));
    expect(st.ino).toBe(4242);
    expect(st.mtimeMs).toBe(1_700_000_000_123);
    expect(await fsp.readFile(path.join(mnt, 'plain'), 'utf8')).toBe('plain\n');
    await expect(fsp.writeFile(path.join(mnt, 'plain'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
    await expect(fsp.writeFile(path.join(mnt, 'new'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
  });

  it('the handle the binding gives at open reaches open, every read and the release of that file, in that order', async () => {
    handleLog.length = 0;
    const a = await fsp.open(path.join(mnt, 'opened-a'));
    const b = await fsp.open(path.join(mnt, 'opened-b'));
    expect(await a.readFile('utf8')).toBe('first\n');
    expect(await b.readFile('utf8')).toBe('second\n');
    await a.close();
    await b.close();
    // The kernel sends a release after close(2) has returned.
    await waitFor('both releases', () => handleLog.filter(([op]) => op === 'release').length === 2);
    const handleOf = (p: string) => handleLog.find(([op, q]) => op === 'open' && q === p)![2];
    expect(handleOf('/opened-a')).not.toBe(handleOf('/opened-b'));
    for (const p of ['/opened-a', '/opened-b']) {
      const mine = handleLog.filter(([, q]) => q === p);
      expect(mine.every(([, , fd]) => fd === handleOf(p))).toBe(true);
      const ops = mine.map(([op]) => op);
      expect(ops[0]).toBe('open');
      expect(ops.at(-1)).toBe('release');
      expect(ops.filter((op) => op === 'read').length).toBeGreaterThan(0);
    }
  });

  it('names: the shown form of mount/names.ts reaches the kernel as the bytes it stands for, and back', async () => {
    const names = (await fsp.readdir(mnt, { encoding: 'buffer' })).map((b) => b.toString('hex'));
    // U+EFFF stands for byte 0xff: the kernel sees "café " and that byte.
    const raw = Buffer.concat([Buffer.from('caf\u00e9 ', 'utf8'), Buffer.of(0xff)]);
    expect(names).toContain(raw.toString('hex'));
    expect(await fsp.readFile(Buffer.concat([Buffer.from(`${mnt}/`), raw]), 'utf8')).toBe('mapped\n');
    // A path with bytes that are not UTF-8 arrives in the shown form, byte for byte reversible.
    const odd = Buffer.concat([Buffer.from(`${mnt}/x`), Buffer.of(0xfe, 0xc3), Buffer.from('\uef80', 'utf8')]);
    await expect(fsp.stat(odd)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(seenPaths).toContain('/x\ueffe\uefc3\uefee\uefbe\uef80');
  });

  it('a stat after a listing is answered from the attributes the listing carried (READDIRPLUS), without asking getattr', async () => {
    await fsp.readdir(mnt);
    const st = await fsp.lstat(path.join(mnt, 'listed'));
    expect(seenPaths).not.toContain('/listed');
    expect(st.uid).toBe(77);
    expect(st.mode).toBe(S_IFREG | 0o400);
    // Times before 1970 come through too (fuse-native showed them as 1970).
    expect(st.mtimeMs).toBe(-86_400_500);
    expect(await fsp.readFile(path.join(mnt, 'listed'), 'utf8')).toBe('listed with its attributes\n');
    // Entries listed without attributes still go to getattr.
    const seen = seenPaths.length;
    await fsp.lstat(path.join(mnt, 'slow'));
    expect(seenPaths.slice(seen)).toContain('/slow');
  });

  it('extended attributes: an entry that has some is asked about; one whose attributes said it has none is answered by the binding alone', async () => {
    const dump = await run('getfattr', ['--absolute-names', '-d', '-m', '-', '-e', 'hex', path.join(mnt, 'tagged')]);
    expect(dump.stdout.split('\n').filter((l) => l.startsWith('user.'))).toEqual(['user.binary=0x00ff0a', 'user.note=0x61206e6f7465']);
    const one = await run('getfattr', ['--absolute-names', '--only-values', '-n', 'user.note', path.join(mnt, 'tagged')]);
    expect(one.stdout).toBe('a note');
    const absent = await run('getfattr', ['--absolute-names', '-n', 'user.absent', path.join(mnt, 'tagged')]);
    expect(absent.code).not.toBe(0);
    expect(absent.stderr).toMatch(/No such attribute/);
    expect(xattrCalls.filter(([, p]) => p === '/tagged').map(([op]) => op)).toEqual(expect.arrayContaining(['listxattr', 'getxattr']));
    // /plain's getattr said it has none; /listed's attributes came with a listing and said the same.
    await fsp.lstat(path.join(mnt, 'plain'));
    await fsp.readdir(mnt);
    xattrCalls.length = 0;
    for (const name of ['plain', 'listed']) {
      const none = await run('getfattr', ['--absolute-names', '-d', '-m', '-', path.join(mnt, name)]);
      expect(none).toMatchObject({ code: 0, stdout: '' });
      const acl = await run('getfattr', ['--absolute-names', '-n', 'system.posix_acl_access', path.join(mnt, name)]);
      expect(acl.stderr).toMatch(/No such attribute/);
    }
    expect(xattrCalls).toEqual([]);
  });

  it('a read slower than 15 seconds still completes (no ETIMEDOUT)', async () => {
    const r = await run('cat', [path.join(mnt, 'slow')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('worth the wait\n');
  }, 60_000);

  it('unmounts', async () => {
    await session!.unmount();
    session = undefined;
    expect(await mountAt(mnt)).toBeUndefined();
  });
});
