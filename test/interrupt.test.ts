import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Workspace, exited, lastJson, sh, whenStatus, workspace } from './helpers/cli.js';
import { deterministicBytes } from './helpers/tree.js';

const FILES = 12;
const FILE_SIZE = 12 * 1024 * 1024;

describe('interrupted backups', () => {
  let ws: Workspace;
  let src: string;
  let small: string;
  const env = { AEGIS_PROGRESS_INTERVAL_MS: '10' };

  beforeAll(async () => {
    ws = workspace('interrupt');
    small = path.join(ws.dir, 'small');
    fs.mkdirSync(small);
    fs.writeFileSync(path.join(small, 'keep.txt'), 'the earlier snapshot\n');
    src = path.join(ws.dir, 'big');
    fs.mkdirSync(src);
    for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(src, `f${i}.bin`), deterministicBytes(`f${i}`, FILE_SIZE));
    await ws.ok(['init', '--pack-size', '1']);
    await ws.ok(['backup', small]);
  });
  afterAll(() => ws.cleanup());

  it.each([0.1, 0.5, 0.9])('SIGKILL after %s of the data leaves an intact repository, and the rerun reuses uploaded packs', async (fraction) => {
    const snapshotsBefore = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout).length;
    const child = ws.spawn(['backup', src, '--json'], { env });
    const done = exited(child);
    await whenStatus(child, (s) => s.bytes_read >= fraction * FILES * FILE_SIZE);
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');

    // No snapshot from the killed run; the earlier one restores exactly.
    expect(JSON.parse((await ws.ok(['snapshots', '--json'])).stdout)).toHaveLength(snapshotsBefore);
    const target = path.join(ws.dir, `restore-${fraction}`);
    await ws.ok(['restore', `latest:${small}`, '--path', small, '--target', target, '--verify']);
    expect((await sh('diff', ['-r', small, target])).code).toBe(0);

    // The stale lock of the killed process does not block, and uploaded data is reused.
    const rerun = lastJson((await ws.ok(['backup', src, '--json'], { env })).stdout);
    expect(rerun.data_added).toBeLessThan(FILES * FILE_SIZE);
    const all = path.join(ws.dir, `restore-all-${fraction}`);
    await ws.ok(['restore', `latest:${src}`, '--path', src, '--target', all, '--verify']);
    expect((await sh('diff', ['-r', src, all])).code).toBe(0);
    // Make the next case back up new data again.
    for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(src, `f${i}.bin`), deterministicBytes(`f${i}-${fraction}`, FILE_SIZE));
  });

  it('SIGINT stops cleanly with exit 130, writes no snapshot, and indexes what was uploaded', async () => {
    const snapshotsBefore = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout).length;
    const indexBefore = fs.readdirSync(path.join(ws.repo, 'index')).length;
    const child = ws.spawn(['backup', src, '--json'], { env });
    const done = exited(child);
    await whenStatus(child, (s) => s.bytes_read >= 0.5 * FILES * FILE_SIZE);
    child.kill('SIGINT');
    const { code } = await done;
    expect(code).toBe(130);
    expect(JSON.parse((await ws.ok(['snapshots', '--json'])).stdout)).toHaveLength(snapshotsBefore);
    expect(fs.readdirSync(path.join(ws.repo, 'index')).length).toBeGreaterThan(indexBefore);
    expect(fs.readdirSync(path.join(ws.repo, 'locks'))).toEqual([]);
    const rerun = lastJson((await ws.ok(['backup', src, '--json'], { env })).stdout);
    expect(rerun.data_added).toBeLessThan(FILES * FILE_SIZE);
  });

  it('SIGINT while the last packs are stored writes no snapshot either, and what was stored is indexed', async () => {
    for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(src, `f${i}.bin`), deterministicBytes(`f${i}-finishing`, FILE_SIZE));
    const snapshotsBefore = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout).length;
    const indexBefore = fs.readdirSync(path.join(ws.repo, 'index')).length;
    // Writing the index stalls, so the backup is still finishing when the signal comes:
    // the status line saying every file is done is printed as the walk ends.
    const slow = { ...env, AEGIS_FAULTS: 'op=put,name=index/*,stall=2s' };
    const child = ws.spawn(['backup', src, '--json'], { env: slow });
    const done = exited(child);
    await whenStatus(child, (s) => s.files_done === FILES);
    child.kill('SIGINT');
    expect((await done).code).toBe(130);
    expect(JSON.parse((await ws.ok(['snapshots', '--json'])).stdout)).toHaveLength(snapshotsBefore);
    expect(fs.readdirSync(path.join(ws.repo, 'index')).length).toBeGreaterThan(indexBefore);
    const rerun = lastJson((await ws.ok(['backup', src, '--json'], { env })).stdout);
    expect(rerun.data_added).toBe(0);
  });

  it('a clean stop that storage never lets finish gives up after AEGIS_STOP_GRACE, keeps the repository intact, and the next backup runs', async () => {
    for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(src, `f${i}.bin`), deterministicBytes(`f${i}-stalled`, FILE_SIZE));
    const snapshotsBefore = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout).length;
    // Every pack upload and the lock's removal hang, as with a server that stopped
    // answering: the clean stop waits for the packs in flight (if any were sealed
    // yet) and then for the lock, neither of which ever comes back.
    const stalled = { ...env, AEGIS_FAULTS: 'op=put,name=data/*,stall=10m; op=delete,name=locks/*,stall=10m', AEGIS_STOP_GRACE: '1' };
    const child = ws.spawn(['backup', src, '--json'], { env: stalled });
    const stderr: Buffer[] = [];
    child.stderr!.on('data', (d: Buffer) => stderr.push(d));
    const done = exited(child);
    await whenStatus(child, (s) => s.current_file !== undefined);
    child.kill('SIGINT');
    expect((await done).code).toBe(130);
    const said = Buffer.concat(stderr).toString();
    expect(said).toMatch(/stopping cleanly within 1 s/);
    expect(said).toMatch(/still not stopped after 1 s .*stopping now: what was stored is kept/);
    expect(JSON.parse((await ws.ok(['snapshots', '--json'])).stdout)).toHaveLength(snapshotsBefore);
    // The lock it left is stale (its process is gone), and the repository takes the next backup.
    expect(fs.readdirSync(path.join(ws.repo, 'locks')).length).toBe(1);
    await ws.ok(['backup', src, '--json'], { env });
    const target = path.join(ws.dir, 'restore-after-stall');
    await ws.ok(['restore', `latest:${src}`, '--path', src, '--target', target, '--verify']);
    expect((await sh('diff', ['-r', src, target])).code).toBe(0);
  });
});
