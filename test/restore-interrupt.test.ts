import { type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Workspace, sh, workspace } from './helpers/cli.js';
import { deterministicBytes } from './helpers/tree.js';

// Small files are one blob each (made under their final name inside one addon
// call); the large ones are several blobs (a temporary name, then a rename).
const SMALL = 240;
const SMALL_SIZE = 16 * 1024;
const LARGE = 8;
const LARGE_SIZE = 12 * 1024 * 1024;
const TOTAL = SMALL * SMALL_SIZE + LARGE * LARGE_SIZE;
const TEMPORARY = /^\.aegis-restore-/;

/** Resolve when the restore's JSON status says it has written at least `bytes`; reject if it ends first. */
function whenRestored(child: ChildProcess, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      try {
        const m = JSON.parse(line);
        if (m.message_type === 'status' && m.bytes_restored >= bytes) {
          rl.close();
          resolve();
        }
      } catch {
        /* not JSON */
      }
    });
    child.on('exit', () => reject(new Error('restore finished before the kill point')));
  });
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
}

/** Every regular file under `root`, relative paths. */
function filesUnder(root: string): string[] {
  return (fs.readdirSync(root, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)));
}

function lastJson(stdout: string): Record<string, any> {
  return JSON.parse(stdout.trim().split('\n').pop()!);
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

  const startRestore = (target: string) => ws.spawn(['restore', `latest:${src}`, '--target', target, '--json'], { env });

  it('SIGINT: exit 130, no temporary file left, every file under its real name complete; the rerun skips those and finishes', async () => {
    const target = path.join(ws.dir, 'restored-int');
    const child = startRestore(target);
    const done = exited(child);
    await whenRestored(child, 0.4 * TOTAL);
    child.kill('SIGINT');
    expect((await done).code).toBe(130);

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
    const rsync = await sh('rsync', ['-aHn', '--numeric-ids', '--itemize-changes', `${src}/`, `${target}/`]);
    expect(rsync.stdout).toBe('');
    expect((await sh('diff', ['-r', src, target])).code).toBe(0);
  });

  it('SIGKILL: the rerun removes the temporary files the killed run left (and nothing else) and restores every file exactly', async () => {
    const target = path.join(ws.dir, 'restored-kill');
    const child = startRestore(target);
    const done = exited(child);
    await whenRestored(child, 0.4 * TOTAL);
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');

    // Whatever the kill left, plus temporaries as a killed run names them (in the
    // target itself and below it) and a user's file that only looks like one.
    const planted = [path.join(target, '.aegis-restore-0123456789ab-7'), path.join(target, 'dir1', '.aegis-restore-0123456789ab-z9')];
    for (const p of planted) fs.writeFileSync(p, 'partial');
    fs.writeFileSync(path.join(target, '.aegis-restore-notes.txt'), 'mine\n');

    await ws.ok(['restore', `latest:${src}`, '--target', target]);
    for (const p of planted) expect(fs.existsSync(p)).toBe(false);
    expect(fs.readFileSync(path.join(target, '.aegis-restore-notes.txt'), 'utf8')).toBe('mine\n');
    expect(filesUnder(target).filter((f) => TEMPORARY.test(path.basename(f)))).toEqual(['.aegis-restore-notes.txt']);
    const rsync = await sh('rsync', ['-aHn', '--numeric-ids', '--itemize-changes', '--exclude=/.aegis-restore-notes.txt', `${src}/`, `${target}/`]);
    expect(rsync.stdout).toBe('');
    expect((await sh('diff', ['-r', '-x', '.aegis-restore-notes.txt', src, target])).code).toBe(0);
  });
});
