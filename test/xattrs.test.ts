import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Workspace, sh, workspace } from './helpers/cli.js';
import { type FsOperations } from '../mount/fuse.js';
import { type Attr, EIO, ENODATA, ENOENT, FsError, S_IFDIR, S_IFREG } from '../mount/types.js';
import { aegis } from './helpers/errors.js';
import { FAKE_STATFS, type MountProcess, forceUnmount, mountInProcess, run, startMount, waitFor } from './helpers/mount.js';

/**
 * Extended attributes beyond the round trip (test/roundtrip.test.ts): a restore
 * by someone other than root, and the mount, with the switch that keeps them
 * from costing anything where no snapshot has any (docs/MOUNT.md, "What files show").
 */

/** An unprivileged user, to restore as. */
const NOBODY = 65534;

describe('backup of a file whose extended attributes cannot be read', () => {
  // A file system that fails listxattr for one file (as a damaged disk or a
  // network file system may): this process serves it through FUSE.
  const content = Buffer.from('the file itself reads fine\n');
  const attrOf = (mode: number, size: number, ino: number, hasXattrs = false): Attr => ({ mode, uid: 0, gid: 0, size, nlink: 1, ino, rdev: 0, blocks: 1, atimeMs: 1_700_000_000_000, mtimeMs: 1_700_000_000_000, ctimeMs: 1_700_000_000_000, hasXattrs });
  const nodes: Record<string, Attr> = {
    '/': attrOf(S_IFDIR | 0o755, 0, 1),
    '/fine.txt': attrOf(S_IFREG | 0o644, content.length, 2),
    '/failing.txt': attrOf(S_IFREG | 0o644, content.length, 3, true),
  };
  const ops: FsOperations = {
    getattr(p) {
      const a = nodes[p];
      if (!a) throw new FsError(ENOENT, 'no');
      return a;
    },
    async readdir() {
      const names = ['fine.txt', 'failing.txt'];
      return { names: ['.', '..', ...names], modes: [S_IFDIR, S_IFDIR, S_IFREG, S_IFREG], inos: [1, 1, 2, 3], attrs: [undefined, undefined, ...names.map((n) => nodes[`/${n}`])] };
    },
    async readlink() {
      throw new FsError(22, 'not a link');
    },
    open() {},
    read(_p, _fd, buf, len, pos) {
      return content.copy(buf, 0, pos, Math.min(content.length, pos + len));
    },
    release() {},
    statfs: () => FAKE_STATFS,
    async getxattr(p) {
      if (p === '/failing.txt') throw new FsError(EIO, 'the disk said no');
      throw new FsError(ENODATA, 'none');
    },
    async listxattr(p) {
      if (p === '/failing.txt') throw new FsError(EIO, 'the disk said no');
      return Buffer.alloc(0);
    },
  };
  let ws: Workspace;
  let m: Awaited<ReturnType<typeof mountInProcess>> | undefined;

  beforeAll(async () => {
    ws = workspace('xattrs-unreadable');
    m = await mountInProcess('aegis-xattr-fail-', ops, { fsname: 'failing', entryTimeout: 1, attrTimeout: 1, maxReadahead: 131072, kernelCache: false, autoUnmount: true });
  });
  afterAll(async () => {
    await m?.close();
    ws?.cleanup();
  });

  it('is reported, the backup goes on and says it is partial (exit 3), and the file is kept with its content', async () => {
    await ws.ok(['init']);
    const r = await ws.run(['backup', m!.mnt]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`${m!.mnt}/failing.txt: cannot read its extended attributes: i/o error`);
    const restored = path.join(ws.dir, 'restored');
    await ws.ok(['restore', `latest:${m!.mnt}`, '--target', restored]);
    expect(fs.readFileSync(path.join(restored, 'failing.txt'))).toEqual(content);
    expect(fs.readFileSync(path.join(restored, 'fine.txt'))).toEqual(content);
  });
});

describe.skipIf(process.getuid?.() !== 0)('restore of extended attributes by someone other than root', () => {
  let ws: Workspace;

  beforeAll(() => {
    ws = workspace('xattrs-user');
  });
  afterAll(() => ws?.cleanup());

  it('sets user.* ones and ACLs, leaves out trusted.* (root only, as owners are) without a warning', async () => {
    const src = path.join(ws.dir, 'source');
    fs.mkdirSync(src);
    const file = path.join(src, 'notes.txt');
    fs.writeFileSync(file, 'notes\n');
    execFileSync('setfattr', ['-n', 'user.topic', '-v', 'recipes', file]);
    execFileSync('setfattr', ['-n', 'trusted.only-root', '-v', 'x', file]);
    execFileSync('setfacl', ['-m', 'u:1234:r--', file]);
    await ws.ok(['init']);
    await ws.ok(['backup', src]);
    const target = path.join(ws.dir, 'target');
    fs.mkdirSync(target);
    await sh('chown', ['-R', `${NOBODY}:${NOBODY}`, ws.dir]);
    const r = await aegis(['-r', ws.repo, 'restore', `latest:${src}`, '--target', target], { env: ws.env, uid: NOBODY, gid: NOBODY });
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const restored = path.join(target, 'notes.txt');
    const dump = await run('getfattr', ['--absolute-names', '-d', '-m', '-', restored]);
    expect(dump.stdout.split('\n').filter((l) => l.includes('=')).map((l) => l.split('=')[0])).toEqual(['system.posix_acl_access', 'user.topic']);
    expect(dump.stdout).toContain('user.topic="recipes"');
    expect((await run('getfacl', ['-p', '-c', restored])).stdout).toContain('user:1234:r--');
  });
});

describe('aegis ls -l', () => {
  let ws: Workspace;
  beforeAll(() => {
    ws = workspace('xattrs-ls');
  });
  afterAll(() => ws?.cleanup());

  it('marks an entry with a POSIX ACL with "+" after its mode, as GNU ls does; user attributes alone do not', async () => {
    const src = path.join(ws.dir, 'source');
    fs.mkdirSync(path.join(src, 'shared'), { recursive: true });
    for (const f of ['plain.txt', 'tagged.txt', 'shared/acl.txt']) fs.writeFileSync(path.join(src, f), 'x\n');
    execFileSync('setfattr', ['-n', 'user.topic', '-v', 'recipes', path.join(src, 'tagged.txt')]);
    execFileSync('setfacl', ['-m', 'u:1234:r--', path.join(src, 'shared', 'acl.txt')]);
    execFileSync('setfacl', ['-m', 'd:u:1234:rwx', path.join(src, 'shared')]);
    await ws.ok(['init']);
    await ws.ok(['backup', src]);
    const lines = (await ws.ok(['ls', 'latest', src, '-l', '--recursive'])).stdout.split('\n').filter(Boolean);
    const modeOf = (rel: string) => lines.find((l) => l.endsWith(` ${path.join(src, rel)}`))?.slice(0, 11);
    expect(modeOf('plain.txt')).toBe('-rw-r--r-- ');
    expect(modeOf('tagged.txt')).toBe('-rw-r--r-- ');
    expect(modeOf('shared/acl.txt')).toBe('-rw-r--r--+');
    expect(modeOf('shared')).toBe('drwxr-xr-x+');
  });
});

describe('aegis mount: extended attributes', () => {
  let ws: Workspace;
  let src: string;
  let mnt: string;
  let m: MountProcess | undefined;
  const hasXattrs = async () => (JSON.parse((await ws.ok(['snapshots', '--json'])).stdout) as Array<{ has_xattrs?: boolean }>).map((s) => s.has_xattrs === true);
  const getfattr = (...args: string[]) => run('getfattr', ['--absolute-names', ...args]);

  beforeAll(async () => {
    ws = workspace('xattrs-mount');
    src = path.join(ws.dir, 'source');
    mnt = path.join(ws.dir, 'mnt');
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(src, 'sub', 'photo.jpg'), 'not really a photo\n');
    await ws.ok(['init']);
    await ws.ok(['backup', src]);
  });

  afterAll(async () => {
    await m?.stop();
    await forceUnmount(mnt);
    ws?.cleanup();
  });

  it('no snapshot has any: getxattr is "not supported" (the kernel stops asking); one taken while mounted is announced', async () => {
    expect(await hasXattrs()).toEqual([false]);
    m = await startMount(ws, mnt);
    const file = path.join(mnt, 'snapshots', 'latest', src, 'sub', 'photo.jpg');
    const r = await getfattr('-d', '-m', '-', file);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Operation not supported/);
    expect((await run('ls', ['-lR', path.join(mnt, 'snapshots', 'latest', src)])).code).toBe(0);

    execFileSync('setfattr', ['-n', 'user.album', '-v', 'summer 2026', path.join(src, 'sub', 'photo.jpg')]);
    await ws.ok(['backup', src]);
    expect(await hasXattrs()).toEqual([false, true]);
    // Only the attribute changed (and so the ctime): a metadata-only change for diff.
    const ids = (JSON.parse((await ws.ok(['snapshots', '--json'])).stdout) as Array<{ id: string }>).map((s) => s.id);
    const diff = await ws.ok(['diff', ids[0]!, ids[1]!]);
    // (The workspace directory above the source changed too: the mount point was made in it.)
    expect(diff.stdout.split('\n').filter((l) => l.includes(src))).toEqual([`U    ${path.join(src, 'sub', 'photo.jpg')}`]);
    fs.readdirSync(path.join(mnt, 'snapshots'));
    await waitFor('the notice', () => m!.stderr().includes('a snapshot taken since this mount started has extended attributes; mount again to see them'));
    await m.stop();
    m = undefined;
  });

  it('a snapshot has some: they show in every view of it, and entries without any have none', async () => {
    // Nothing changed: the tree comes from this machine's memo, and the snapshot still says it has attributes.
    const third = await ws.ok(['backup', src, '--json']);
    expect(JSON.parse(third.stdout.trim().split('\n').pop()!).dirs_unmodified).toBeGreaterThan(0);
    expect(await hasXattrs()).toEqual([false, true, true]);
    m = await startMount(ws, mnt);
    const names = fs.readdirSync(path.join(mnt, 'snapshots')).filter((n) => n !== 'latest').sort();
    const inSnap = (name: string, ...rest: string[]) => path.join(mnt, 'snapshots', name, src, ...rest);
    for (const name of names.slice(1)) {
      const v = await getfattr('--only-values', '-n', 'user.album', inSnap(name, 'sub', 'photo.jpg'));
      expect(v).toMatchObject({ code: 0, stdout: 'summer 2026' });
    }
    // The first snapshot's file had none; nor has the directory.
    for (const p of [inSnap(names[0]!, 'sub', 'photo.jpg'), inSnap(names[2]!, 'sub')]) {
      expect(await getfattr('-d', '-m', '-', p)).toMatchObject({ code: 0, stdout: '' });
    }
    // cp -a out of the mount keeps it.
    const copy = path.join(ws.dir, 'copy');
    expect((await run('cp', ['-a', inSnap(names[2]!, 'sub'), copy])).code).toBe(0);
    expect((await getfattr('--only-values', '-n', 'user.album', path.join(copy, 'photo.jpg'))).stdout).toBe('summer 2026');
  });
});
