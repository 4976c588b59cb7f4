import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Workspace, workspace } from './helpers/cli.js';
import { type MountProcess, childPids, forceUnmount, isMounted, run, startMount, errnoOf } from './helpers/mount.js';


describe('aegis mount: life cycle', () => {
  let ws: Workspace;
  let src: string;
  let mnt: string;
  let m: MountProcess | undefined;

  beforeAll(async () => {
    ws = workspace('mount-life');
    src = path.join(ws.dir, 'source');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'a.txt'), 'first\n');
    mnt = path.join(ws.dir, 'mnt');
    await ws.ok(['init']);
    await ws.ok(['backup', src, '--tag', 'one']);
    fs.writeFileSync(path.join(src, 'a.txt'), 'second\n');
    await ws.ok(['backup', src, '--tag', 'two', '--host', 'otherhost']);
  });

  afterEach(async () => {
    if (m && m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGKILL');
    m = undefined;
    await forceUnmount(mnt);
  });

  afterAll(async () => {
    await forceUnmount(mnt);
    ws?.cleanup();
  });

  const readLatest = () => fs.readFileSync(path.join(mnt, 'snapshots', 'latest', src, 'a.txt'), 'utf8');

  it('unmounts cleanly on SIGINT and on SIGTERM', async () => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      m = await startMount(ws, mnt);
      expect(isMounted(mnt)).toBe(true);
      expect(readLatest()).toBe('second\n');
      m.child.kill(sig);
      const { code } = await m.exited;
      expect(code).toBe(0);
      expect(m.stdout()).toContain(`unmounted ${mnt}`);
      expect(isMounted(mnt)).toBe(false);
      expect(fs.readdirSync(mnt)).toEqual([]);
    }
    // The shared lock is gone with it.
    expect(fs.readdirSync(path.join(ws.repo, 'locks'))).toEqual([]);
  });

  it('"aegis umount" from another shell unmounts, and the mount process exits by itself', async () => {
    m = await startMount(ws, mnt);
    const r = await ws.run(['umount', mnt]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`unmounted ${mnt}`);
    const { code } = await m.exited;
    expect(code).toBe(0);
    expect(isMounted(mnt)).toBe(false);
    // Mounting again at once is safe: the old mount's auto-unmount helper is gone too.
    m = await startMount(ws, mnt);
    expect(readLatest()).toBe('second\n');
    expect(isMounted(mnt)).toBe(true);
  });

  it('after kill -9 of the mount process, mounting again works', async () => {
    m = await startMount(ws, mnt);
    process.kill(m.pid, 'SIGKILL');
    await m.exited;
    m = await startMount(ws, mnt);
    expect(readLatest()).toBe('second\n');
    await m.stop();
  });

  it('recovers a stale mountpoint ("Transport endpoint is not connected") and says so', async () => {
    m = await startMount(ws, mnt);
    // Kill the helper that would unmount on exit too, so the mount is left stale.
    const helpers = await childPids(m.pid);
    for (const pid of helpers) process.kill(pid, 'SIGKILL');
    process.kill(m.pid, 'SIGKILL');
    await m.exited;
    expect(errnoOf(() => fs.readdirSync(mnt))).toBe('ENOTCONN');
    m = await startMount(ws, mnt);
    expect(m.stderr()).toMatch(/was left mounted by a process that is gone \("Transport endpoint is not connected"\); unmounted it/);
    expect(readLatest()).toBe('second\n');
    await m.stop();
  });

  it('"aegis umount" also clears a stale mountpoint', async () => {
    m = await startMount(ws, mnt);
    for (const pid of await childPids(m.pid)) process.kill(pid, 'SIGKILL');
    process.kill(m.pid, 'SIGKILL');
    await m.exited;
    expect(errnoOf(() => fs.readdirSync(mnt))).toBe('ENOTCONN');
    const r = await ws.run(['umount', mnt]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('stale');
    expect(fs.readdirSync(mnt)).toEqual([]);
  });

  it('filters snapshots and builds views from --path-template', async () => {
    m = await startMount(ws, mnt, ['--tag', 'two', '--path-template', 'by-user/%u/%T', '--path-template', 'short/%i']);
    expect(fs.readdirSync(mnt).sort()).toEqual(['by-user', 'history', 'short', 'snapshots']);
    const snaps = fs.readdirSync(path.join(mnt, 'snapshots'));
    expect(snaps.length).toBe(2); // one snapshot and latest
    const user = os.userInfo().username;
    expect(fs.readdirSync(path.join(mnt, 'by-user', user))).toEqual([...snaps].sort());
    const [short] = fs.readdirSync(path.join(mnt, 'short'));
    expect(fs.readFileSync(path.join(mnt, 'short', short!, src, 'a.txt'), 'utf8')).toBe('second\n');
    await m.stop();
    m = await startMount(ws, mnt, ['--host', os.hostname()]);
    expect(fs.readdirSync(path.join(mnt, 'hosts'))).toEqual([os.hostname()]);
    expect(readLatest()).toBe('first\n');
  });

  it('refuses bad mountpoints and options with one line and a non-zero exit', async () => {
    const missing = await ws.run(['mount', path.join(ws.dir, 'no-such-dir')]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr.trim()).toMatch(/^aegis: mountpoint .*no-such-dir does not exist/);
    expect(missing.stderr.trim().split('\n').length).toBe(1);

    const full = path.join(ws.dir, 'not-empty');
    fs.mkdirSync(full);
    fs.writeFileSync(path.join(full, 'x'), 'x');
    const notEmpty = await ws.run(['mount', full]);
    expect(notEmpty.code).not.toBe(0);
    expect(notEmpty.stderr).toMatch(/is not empty/);

    const badTemplate = await ws.run(['mount', mnt, '--path-template', 'x/%q']);
    expect(badTemplate.code).not.toBe(0);
    expect(badTemplate.stderr).toMatch(/unknown placeholder "%q"/);

    const notMounted = await ws.run(['umount', mnt]);
    expect(notMounted.code).not.toBe(0);
    expect(notMounted.stderr).toMatch(/is not mounted/);

    m = await startMount(ws, mnt);
    const twice = await ws.run(['mount', mnt]);
    expect(twice.code).not.toBe(0);
    expect(twice.stderr).toMatch(/is already a mount point/);
    expect(readLatest()).toBe('second\n');
  });

  it('--allow-other lets other users in, with the stored permissions checked', async () => {
    // The stored directories on the way must be open to others (mkdtemp makes 0700 ones);
    // the kernel checks every component against what was backed up.
    fs.chmodSync(ws.dir, 0o755);
    fs.writeFileSync(path.join(src, 'private.txt'), 'secret\n');
    fs.chmodSync(path.join(src, 'private.txt'), 0o600);
    await ws.ok(['backup', src, '--tag', 'perm']);
    const asNobody = (cmd: string[]) => run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...cmd]);
    m = await startMount(ws, mnt, ['--tag', 'perm']);
    expect((await asNobody(['ls', mnt])).code).not.toBe(0); // without --allow-other only the mounting user gets in
    await m.stop();
    m = await startMount(ws, mnt, ['--tag', 'perm', '--allow-other']);
    const dir = path.join(mnt, 'snapshots', 'latest', src);
    const ok = await asNobody(['cat', path.join(dir, 'a.txt')]);
    expect(ok.stdout).toBe('second\n');
    const denied = await asNobody(['cat', path.join(dir, 'private.txt')]);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/Permission denied/);
    expect(fs.readFileSync(path.join(dir, 'private.txt'), 'utf8')).toBe('secret\n'); // root still can
  });
});
