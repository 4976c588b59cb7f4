import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Workspace, runAegis, sh, workspace } from './helpers/cli.js';
import { expectUserError } from './helpers/errors.js';

/**
 * The repository's disk fills up during a backup: one clear line, no snapshot,
 * nothing earlier damaged, no staging files left taking the space, and once
 * there is room again the next backup works. A real full file system: a small
 * tmpfs (needs root to mount).
 */
describe.skipIf(process.getuid?.() !== 0)('a full repository disk', () => {
  let ws: Workspace;
  let disk: string;
  let src: string;

  beforeAll(async () => {
    ws = workspace('disk-full');
    disk = path.join(ws.dir, 'disk');
    fs.mkdirSync(disk);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', disk]);
    src = path.join(ws.dir, 'src');
    fs.mkdirSync(src);
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(src, `f${i}.txt`), `small file ${i}\n`);
  });
  afterAll(() => {
    execFileSync('umount', [disk]);
    ws.cleanup();
  });

  /** aegis with the repository on the small disk. */
  const run = (args: string[]) => runAegis(['-r', path.join(disk, 'repo'), ...args], ws.env);

  it('fails the backup with one line, keeps the earlier snapshot, and the next backup with room succeeds', async () => {
    expect((await run(['init'])).code).toBe(0);
    expect((await run(['backup', src])).code).toBe(0);

    // 30 MB that does not compress, on a 12 MiB disk.
    fs.writeFileSync(path.join(src, 'big.bin'), crypto.randomBytes(30 * 1024 * 1024));
    const full = await run(['backup', src]);
    expectUserError(full, 1, /^aegis: storage error: cannot write a new pack at .*: ENOSPC: no space left on device/);
    const snaps = JSON.parse((await run(['snapshots', '--json'])).stdout) as unknown[];
    expect(snaps).toHaveLength(1);
    // The pack that did not fit was removed; whole packs stored before the failure stay for the next backup.
    const leftovers = (fs.readdirSync(disk, { recursive: true }) as string[]).filter((n) => /(^|\/)\.tmp-[0-9a-f]|\.tmp-staging\/./.test(n));
    expect(leftovers).toEqual([]);

    const target = path.join(ws.dir, 'restored');
    expect((await run(['restore', 'latest', '--target', target])).code).toBe(0);
    const diff = await sh('diff', ['-r', '-x', 'big.bin', src, path.join(target, src)]);
    expect(diff.stdout + diff.stderr).toBe('');

    fs.rmSync(path.join(src, 'big.bin'));
    fs.writeFileSync(path.join(src, 'new.txt'), 'after the disk was full\n');
    expect((await run(['backup', src])).code).toBe(0);
    expect(JSON.parse((await run(['snapshots', '--json'])).stdout)).toHaveLength(2);
  });

  it('a restore onto a disk that fills up stops with one line, leaves only whole files, and once there is room the same restore finishes', async () => {
    const many = path.join(ws.dir, 'many');
    fs.mkdirSync(many);
    // 24 files of 1 MiB that do not compress, onto a 12 MiB disk.
    for (let i = 0; i < 24; i++) fs.writeFileSync(path.join(many, `m${String(i).padStart(2, '0')}.bin`), crypto.randomBytes(1024 * 1024));
    const repo = path.join(ws.dir, 'repo-big');
    expect((await runAegis(['-r', repo, 'init'], ws.env)).code).toBe(0);
    expect((await runAegis(['-r', repo, 'backup', many], ws.env)).code).toBe(0);
    const target = path.join(disk, 'restore');
    const restore = () => runAegis(['-r', repo, 'restore', `latest:${many}`, '--target', target, '--json'], ws.env);
    const r = await restore();
    expectUserError(r, 1, /^aegis: restore stopped: no room left on the target \(ENOSPC: no space left on device, \w+\) for .*\/m\d\d\.bin; the files restored so far are complete; free space and run the same restore again to finish it$/);
    const present = fs.readdirSync(target);
    expect(present.filter((n) => n.startsWith('.aegis-restore-'))).toEqual([]);
    // Every file there is whole.
    for (const n of present) expect(fs.readFileSync(path.join(target, n)).equals(fs.readFileSync(path.join(many, n))), n).toBe(true);
    expect(present.length).toBeLessThan(24);
    // Room again: the same command skips what is there and restores the rest.
    execFileSync('mount', ['-o', 'remount,size=64m', disk]);
    const again = await restore();
    expect(again.code).toBe(0);
    const summary = JSON.parse(again.stdout.trim().split('\n').pop()!) as { files: number; skipped: number; errors: number };
    expect([summary.skipped, summary.files, summary.errors]).toEqual([present.length, 24 - present.length, 0]);
    for (const n of fs.readdirSync(many)) expect(fs.readFileSync(path.join(target, n)).equals(fs.readFileSync(path.join(many, n))), n).toBe(true);
  });
});
