import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Workspace, sh, workspace } from './helpers/cli.js';
import { aegis, lastJson } from './helpers/errors.js';
import { NON_UTF8, allFiles, deterministicBytes } from './helpers/tree.js';

/** An unprivileged user: root reads anything, so unreadable files need someone else. */
const NOBODY = 65534;


/** Every path below a snapshot directory (`ls SNAPSHOT PATH --recursive --json`). */
async function snapshotPaths(ws: Workspace, args: string[] = ['latest']): Promise<string[]> {
  const r = await ws.ok(['ls', ...args, '--recursive', '--json']);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((n) => n.struct_type === 'node')
    .map((n) => n.path as string);
}

describe('files that cannot be read', () => {
  let ws: Workspace;
  let src: string;
  const asNobody = (args: string[]) => aegis(['-r', ws.repo, ...args], { env: ws.env, uid: NOBODY, gid: NOBODY });
  const newlineName = 'bad\nname.txt';
  let nonUtf8: Buffer;

  beforeAll(async () => {
    ws = workspace('unreadable');
    src = path.join(ws.dir, 'src');
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(src, 'ok.txt'), 'readable\n');
    fs.writeFileSync(path.join(src, 'sub', 'deep.txt'), 'deep and readable\n');
    fs.writeFileSync(path.join(src, 'secret.txt'), 'only for root\n');
    fs.mkdirSync(path.join(src, 'closed'));
    fs.writeFileSync(path.join(src, 'closed', 'inside.txt'), 'behind a closed door\n');
    fs.writeFileSync(path.join(src, newlineName), 'newline in the name\n');
    nonUtf8 = Buffer.concat([Buffer.from(`${src}/`), NON_UTF8]);
    fs.writeFileSync(nonUtf8, 'not UTF-8 name\n');
    await sh('chown', ['-R', `${NOBODY}:${NOBODY}`, ws.dir]);
    for (const p of [path.join(src, 'secret.txt'), path.join(src, 'closed'), path.join(src, newlineName)]) fs.chmodSync(p, 0o000);
    fs.chmodSync(nonUtf8, 0o000);
    const init = await asNobody(['init']);
    expect(init.code, init.stderr).toBe(0);
  });
  afterAll(() => ws.cleanup());

  it('backup goes on, exits 3, names each unreadable file and directory on its own line, and writes the snapshot', async () => {
    const r = await asNobody(['backup', src]);
    expect(r.code, r.stderr).toBe(3);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines.filter((l) => l.startsWith('warning: ')).sort(), r.stderr).toEqual(
      [
        `warning: ${src}/closed: permission denied`,
        `warning: ${src}/secret.txt: permission denied`,
        `warning: ${src}/bad\\nname.txt: permission denied`,
        `warning: ${src}/bad\\xff\\xfe-\\xc3(: permission denied`,
      ].sort(),
    );
    expect(lines.filter((l) => !l.startsWith('warning: ')), r.stderr).toEqual(['aegis: backup is incomplete: 4 file(s) could not be read']);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toMatch(/snapshot [0-9a-f]{8} saved/);

    const snaps = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout);
    expect(snaps).toHaveLength(1);
    expect(snaps[0].summary.errors).toBe(4);

    // The readable files restore; the unreadable ones are not in the snapshot; the closed directory is, empty.
    const target = path.join(ws.dir, 'restored');
    await ws.ok(['restore', `latest:${src}`, '--target', target]);
    expect(fs.readFileSync(path.join(target, 'ok.txt'), 'utf8')).toBe('readable\n');
    expect(fs.readFileSync(path.join(target, 'sub', 'deep.txt'), 'utf8')).toBe('deep and readable\n');
    expect(fs.existsSync(path.join(target, 'secret.txt'))).toBe(false);
    expect(fs.existsSync(path.join(target, newlineName))).toBe(false);
    expect(fs.readdirSync(path.join(target, 'closed'))).toEqual([]);
  });

  it('--json: one error message per unreadable file, every line valid JSON, exit 3', async () => {
    const r = await asNobody(['backup', src, '--json']);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toBe('');
    const messages = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    const errors = messages.filter((m) => m.message_type === 'error');
    expect(errors.map((e) => e.path).sort()).toEqual(
      [`${src}/closed`, `${src}/secret.txt`, `${src}/${newlineName}`, nonUtf8.toString('utf8')].sort(),
    );
    for (const e of errors) {
      expect(e.kind).toBe('unreadable');
      expect(e.error).toBe(`${e.path}: permission denied`);
    }
    const summary = lastJson(r.stdout);
    expect(summary.message_type).toBe('summary');
    expect(summary.errors).toBe(4);
    expect(summary.snapshot_id).toMatch(/^[0-9a-f]{64}$/);
  });

  it('--quiet keeps the warnings and the exit code', async () => {
    const r = await asNobody(['backup', src, '--quiet']);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(5);
  });
});

/**
 * Append a line to `file` about every millisecond until killed; resolves once the
 * first append is on disk. Continuous, so the file changes during the whole
 * backup, and modest, so a reader on a busy machine always reaches the end.
 */
function startAppender(file: string): Promise<ChildProcess> {
  const code = `
    const fs = require('node:fs');
    const fd = fs.openSync(process.argv[1], 'a');
    const line = Buffer.from('appended while the backup reads\\n');
    fs.writeSync(fd, line);
    process.stdout.write('started\\n', () => setInterval(() => fs.writeSync(fd, line), 1));
  `;
  const child = spawn(process.execPath, ['-e', code, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout! });
    rl.once('line', () => resolve(child));
    child.once('exit', (c) => reject(new Error(`appender exited ${c}`)));
  });
}

describe('a file that changes while it is read', () => {
  let ws: Workspace;
  let appender: ChildProcess | undefined;
  beforeAll(async () => {
    ws = workspace('changing');
    await ws.ok(['init']);
  });
  afterAll(() => {
    appender?.kill('SIGKILL');
    ws.cleanup();
  });

  it('is noted, the backup succeeds (exit 0), and the file is in the snapshot', async () => {
    const src = path.join(ws.dir, 'src');
    fs.mkdirSync(src);
    const big = path.join(src, 'growing.log');
    const fd = fs.openSync(big, 'w');
    for (let i = 0; i < 25; i++) fs.writeSync(fd, deterministicBytes(`growing-${i}`, 8 * 1024 * 1024));
    fs.closeSync(fd);
    fs.writeFileSync(path.join(src, 'still.txt'), 'does not change\n');

    // The appender writes from before the backup opens the file until after the backup has exited.
    appender = await startAppender(big);
    const exited = new Promise((resolve) => appender!.once('exit', resolve));
    let r;
    try {
      r = await ws.run(['backup', src]);
    } finally {
      appender.kill('SIGKILL');
      await exited;
      appender = undefined;
    }
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe(`note: ${big}: changed while being read; the snapshot holds the bytes as read\n`);
    const ls = (await ws.ok(['ls', 'latest', big, '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l));
    const node = ls.find((n) => n.struct_type === 'node');
    expect(node.path).toBe(big);
    expect(node.size).toBeGreaterThanOrEqual(200 * 1024 * 1024);
    expect(node.size).toBeLessThanOrEqual(fs.statSync(big).size);
    // What was stored is a prefix of the file as it is now: the original bytes, then whole appended lines.
    const target = path.join(ws.dir, 'restored');
    await ws.ok(['restore', `latest:${src}`, '--target', target]);
    const restored = fs.readFileSync(path.join(target, 'growing.log'));
    expect(restored.length).toBe(node.size);
    const now = fs.readFileSync(big);
    expect(now.subarray(0, restored.length).equals(restored)).toBe(true);
    const snaps = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout);
    expect(snaps[0].summary.errors).toBe(0);
  });
});

describe('what gets backed up', () => {
  let ws: Workspace;
  let mounted: string | undefined;
  beforeAll(async () => {
    ws = workspace('selection');
    await ws.ok(['init']);
  });
  afterAll(async () => {
    if (mounted) await sh('umount', [mounted]);
    ws.cleanup();
  });

  it('--exclude and --exclude-file (globs on base names and whole paths, comments, re-include)', async () => {
    const src = path.join(ws.dir, 'ex');
    for (const d of ['cache', 'sub/cache', 'sub/deeper', 'build']) fs.mkdirSync(path.join(src, d), { recursive: true });
    for (const f of ['keep.txt', 'skip.log', 'cache/c.bin', 'sub/keep.txt', 'sub/skip.tmp', 'sub/cache/c.bin', 'sub/deeper/important.log', 'build/out.o', 'build/keep.me']) {
      fs.writeFileSync(path.join(src, f), f);
    }
    const excludeFile = path.join(ws.dir, 'excludes.txt');
    fs.writeFileSync(excludeFile, `# temporary files\n*.tmp\n\n${src}/build/*.o\n`);
    const r = await ws.ok(['backup', src, '--exclude', '*.log', '-e', 'cache', '--exclude', '!important.log', '--exclude-file', excludeFile, '--json']);
    const summary = lastJson(r.stdout);
    const paths = (await snapshotPaths(ws, [summary.snapshot_id, src])).map((p) => path.relative(src, p)).filter(Boolean).sort();
    expect(paths).toEqual(['build', 'build/keep.me', 'keep.txt', 'sub', 'sub/deeper', 'sub/deeper/important.log', 'sub/keep.txt'].sort());
    const snap = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout).find((s: { id: string }) => s.id === summary.snapshot_id);
    expect(snap.excludes).toEqual(['*.log', 'cache', '!important.log', '*.tmp', `${src}/build/*.o`]);
  });

  it('--one-file-system does not descend into a mount point, but records it', async () => {
    const src = path.join(ws.dir, 'fs');
    fs.mkdirSync(path.join(src, 'mnt'), { recursive: true });
    fs.writeFileSync(path.join(src, 'here.txt'), 'same file system\n');
    const m = await sh('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'none', path.join(src, 'mnt')]);
    expect(m.code, m.stderr).toBe(0);
    mounted = path.join(src, 'mnt');
    fs.writeFileSync(path.join(src, 'mnt', 'elsewhere.txt'), 'another file system\n');
    expect(fs.statSync(mounted).dev).not.toBe(fs.statSync(src).dev);

    await ws.ok(['backup', src, '--tag', 'crossing']);
    const crossing = (await snapshotPaths(ws, ['latest', src])).map((p) => path.relative(src, p)).filter(Boolean).sort();
    expect(crossing).toEqual(['here.txt', 'mnt', 'mnt/elsewhere.txt']);

    await ws.ok(['backup', src, '-x', '--tag', 'one-fs']);
    const oneFs = (await snapshotPaths(ws, ['latest', src])).map((p) => path.relative(src, p)).filter(Boolean).sort();
    expect(oneFs).toEqual(['here.txt', 'mnt']);
    const target = path.join(ws.dir, 'restored-one-fs');
    await ws.ok(['restore', `latest:${src}`, '--target', target]);
    expect(fs.statSync(path.join(target, 'mnt')).isDirectory()).toBe(true);
    expect(fs.readdirSync(path.join(target, 'mnt'))).toEqual([]);
  });

  it('--dry-run reports what it would add and writes nothing to the repository', async () => {
    const src = path.join(ws.dir, 'dry');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'new.bin'), deterministicBytes('dry-run', 3 * 1024 * 1024));
    const before = allFiles(ws.repo).map((f) => `${f}:${fs.statSync(f).size}`);
    const r = await ws.ok(['backup', src, '--dry-run', '--json']);
    const summary = lastJson(r.stdout);
    expect(summary.dry_run).toBe(true);
    expect(summary.snapshot_id).toBeNull();
    expect(summary.files_new).toBe(1);
    expect(summary.data_added).toBe(3 * 1024 * 1024);
    expect(allFiles(ws.repo).map((f) => `${f}:${fs.statSync(f).size}`)).toEqual(before);
    const human = await ws.ok(['backup', src, '-n']);
    expect(human.stdout).toMatch(/dry run: nothing was written/);
    expect(allFiles(ws.repo).map((f) => `${f}:${fs.statSync(f).size}`)).toEqual(before);
    // The real backup afterwards still stores everything.
    const real = lastJson((await ws.ok(['backup', src, '--json'])).stdout);
    expect(real.data_added).toBe(3 * 1024 * 1024);
    const target = path.join(ws.dir, 'restored-dry');
    await ws.ok(['restore', `latest:${src}`, '--target', target, '--verify']);
    expect(fs.readFileSync(path.join(target, 'new.bin')).equals(fs.readFileSync(path.join(src, 'new.bin')))).toBe(true);
  });

  it('--tag and --host are recorded; --host, --tag and --path filter snapshots and pick "latest"', async () => {
    const a = path.join(ws.dir, 'host-a');
    const b = path.join(ws.dir, 'host-b');
    fs.mkdirSync(a);
    fs.mkdirSync(b);
    const version = async (dir: string, text: string, args: string[]) => {
      fs.writeFileSync(path.join(dir, 'version.txt'), text);
      return lastJson((await ws.ok(['backup', dir, '--json', ...args])).stdout).snapshot_id as string;
    };
    const a1 = await version(a, 'a1', ['--host', 'alpha', '--tag', 'daily', '--tag', 'web']);
    const b1 = await version(b, 'b1', ['--host', 'beta', '--tag', 'daily']);
    const a2 = await version(a, 'a2', ['--host', 'alpha', '--tag', 'weekly']);
    const b2 = await version(b, 'b2', ['--host', 'beta', '--tag', 'web']);

    const all = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout);
    const byId = new Map(all.map((s: { id: string }) => [s.id, s]));
    expect(byId.get(a1)).toMatchObject({ hostname: 'alpha', tags: ['daily', 'web'], paths: [a] });
    expect(byId.get(b1)).toMatchObject({ hostname: 'beta', tags: ['daily'], paths: [b] });
    expect(byId.get(a2)).toMatchObject({ hostname: 'alpha', tags: ['weekly'], paths: [a], parent: a1 });

    const ids = async (args: string[]) => JSON.parse((await ws.ok(['snapshots', '--json', ...args])).stdout).map((s: { id: string }) => s.id);
    expect(await ids(['--host', 'alpha'])).toEqual([a1, a2]);
    expect(await ids(['--host', 'beta'])).toEqual([b1, b2]);
    expect(await ids(['--tag', 'daily'])).toEqual([a1, b1]);
    expect(await ids(['--tag', 'daily,web'])).toEqual([a1]);
    expect(await ids(['--tag', 'weekly', '--tag', 'daily,web'])).toEqual([a1, a2]);
    expect(await ids(['--path', b])).toEqual([b1, b2]);
    expect(await ids(['--host', 'alpha', '--tag', 'web'])).toEqual([a1]);
    expect(await ids(['--host', 'nobody-here'])).toEqual([]);
    expect((await ws.ok(['snapshots', '--host', 'nobody-here'])).stdout).toMatch(/^0 snapshots$/m);

    const latest = async (args: string[], dir: string) => {
      const target = path.join(ws.dir, `latest-${args.join('-').replace(/[^a-z0-9-]/gi, '_')}`);
      await ws.ok(['restore', `latest:${dir}`, '--target', target, ...args]);
      return fs.readFileSync(path.join(target, 'version.txt'), 'utf8');
    };
    expect(await latest(['--host', 'alpha'], a)).toBe('a2');
    expect(await latest(['--host', 'beta'], b)).toBe('b2');
    expect(await latest(['--tag', 'daily'], b)).toBe('b1');
    expect(await latest(['--tag', 'web', '--host', 'alpha'], a)).toBe('a1');
    expect(await latest(['--path', a], a)).toBe('a2');
  });
});
