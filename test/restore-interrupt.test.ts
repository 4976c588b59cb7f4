import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Workspace, exited, lastJson, sh, whenStatus, workspace } from './helpers/cli.js';
import { deterministicBytes } from './helpers/tree.js';

// Small files are one blob each (made under their final name inside one addon
// call); the large ones are several blobs (a temporary name, then a rename).
const SMALL = 240;
const SMALL_SIZE = 16 * 1024;
const LARGE = 8;
const LARGE_SIZE = 12 * 1024 * 1024;
const TOTAL = SMALL * SMALL_SIZE + LARGE * LARGE_SIZE;
const TEMPORARY = /^\.aegis-restore-/;

/** Every regular file under `root`, relative paths. */
function filesUnder(root: string): string[] {
  return (fs.readdirSync(root, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)));
}

describe('interrupted restores', () => {
  let ws: Workspace;
  let src: string;
  const env = { AEGIS_PROGRESS_INTERVAL_MS: '10' };

  beforeAll(async () => {
    ws = workspace('restore-interrupt');
    src = path.join(ws.dir, 'source');
    for (let d = 0; d < 3; d++) fs.mkdirSync(path.join(src, `dir${d}`), { recursive: true });
    for (let i = 0; i < SMALL; i++) fs.writeFileSync(path.join(src, `dir${i % 3}`, `small-${i}.bin`), deterministicBytes(`s${i}`, SMALL_SIZE));
    for (let i = 0; i < LARGE; i++) fs.writeFileSync(path.join(src, `large-${i}.bin`), deterministicBytes(`l${i}`, LARGE_SIZE));
    await ws.ok(['init']);
    await ws.ok(['backup', src]);
  });
  afterAll(() => ws.cleanup());

  /** Start a restore into `target` and send `signal` once 40% of the bytes are written. */
  const interruptedRestore = async (target: string, signal: NodeJS.Signals) => {
    const child = ws.spawn(['restore', `latest:${src}`, '--target', target, '--json'], { env });
    const done = exited(child);
    await whenStatus(child, (s) => s.bytes_restored >= 0.4 * TOTAL);
    child.kill(signal);
    return done;
  };
  /** rsync -aHn and diff -r between the source and `target` see no difference (`extra`: a file only in the target). */
  const expectSameTree = async (target: string, extra?: string) => {
    const rsync = await sh('rsync', ['-aHAXn', '--numeric-ids', '--itemize-changes', ...(extra ? [`--exclude=/${extra}`] : []), `${src}/`, `${target}/`]);
    expect(rsync.stdout).toBe('');
    expect((await sh('diff', ['-r', ...(extra ? ['-x', extra] : []), src, target])).code).toBe(0);
  };

  it('SIGINT: exit 130, no temporary file left, every file under its real name complete; the rerun skips those and finishes', async () => {
    const target = path.join(ws.dir, 'restored-int');
    expect((await interruptedRestore(target, 'SIGINT')).code).toBe(130);

    const present = filesUnder(target);
    expect(present.filter((f) => TEMPORARY.test(path.basename(f)))).toEqual([]);
    const complete = present.length;
    expect(complete).toBeLessThan(SMALL + LARGE); // it was interrupted
    for (const f of present) {
      if (!fs.readFileSync(path.join(target, f)).equals(fs.readFileSync(path.join(src, f)))) throw new Error(`${f} is under its real name but not complete`);
    }

    const rerun = lastJson((await ws.ok(['restore', `latest:${src}`, '--target', target, '--json'])).stdout);
    expect(rerun.skipped).toBe(complete);
    expect(rerun.bytes).toBeLessThan(TOTAL);
    await expectSameTree(target);
  });

  it('SIGKILL: the rerun removes the temporary files the killed run left (and nothing else) and restores every file exactly', async () => {
    const target = path.join(ws.dir, 'restored-kill');
    expect((await interruptedRestore(target, 'SIGKILL')).signal).toBe('SIGKILL');

    // Whatever the kill left, plus temporaries as a killed run names them (in the
    // target itself and below it) and a user's file that only looks like one.
    const planted = [path.join(target, '.aegis-restore-0123456789ab-7'), path.join(target, 'dir1', '.aegis-restore-0123456789ab-z9')];
    for (const p of planted) fs.writeFileSync(p, 'partial');
    fs.writeFileSync(path.join(target, '.aegis-restore-notes.txt'), 'mine\n');

    await ws.ok(['restore', `latest:${src}`, '--target', target]);
    for (const p of planted) expect(fs.existsSync(p)).toBe(false);
    expect(fs.readFileSync(path.join(target, '.aegis-restore-notes.txt'), 'utf8')).toBe('mine\n');
    expect(filesUnder(target).filter((f) => TEMPORARY.test(path.basename(f)))).toEqual(['.aegis-restore-notes.txt']);
    await expectSameTree(target, '.aegis-restore-notes.txt');
  });
});
