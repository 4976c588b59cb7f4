import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Workspace, workspace } from './helpers/cli.js';
import { type MountProcess, forceUnmount, run, startMount, waitFor } from './helpers/mount.js';

/**
 * Extended attributes through the mount, and the switch that keeps them from
 * costing anything where no snapshot has any (docs/MOUNT.md, "What files show").
 */
describe('aegis mount: extended attributes', () => {
  let ws: Workspace;
  let src: string;
  let mnt: string;
  let m: MountProcess | undefined;
  const hasXattrs = async () => (JSON.parse((await ws.ok(['snapshots', '--json'])).stdout) as Array<{ has_xattrs?: boolean }>).map((s) => s.has_xattrs === true);
  const getfattr = (...args: string[]) => run('getfattr', ['--absolute-names', ...args]);

  beforeAll(async () => {
    ws = workspace('mount-xattrs');
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
