import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { displayName } from '../mount/names.js';
import { type Workspace, workspace } from './helpers/cli.js';
import { type MountProcess, forceUnmount, run, startMount, timeNameOf } from './helpers/mount.js';
import { NON_UTF8, makeGnarlyTree } from './helpers/tree.js';

/** Names of the snapshots as the mount shows them, oldest first. */
async function snapshotNames(ws: Workspace): Promise<Array<{ id: string; name: string }>> {
  const list = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout) as Array<{ id: string; time: string }>;
  list.sort((a, b) => a.time.localeCompare(b.time) || a.id.localeCompare(b.id));
  const used = new Map<string, number>();
  return list.map((s) => {
    const base = timeNameOf(s.time);
    const n = used.get(base) ?? 0;
    used.set(base, n + 1);
    return { id: s.id, name: n === 0 ? base : `${base}-${n}` };
  });
}

const join = (base: Buffer, rel: Buffer) => (rel.length ? Buffer.concat([base, Buffer.from('/'), rel]) : base);

/**
 * lstat metadata of every entry of `src` against the same path (the same bytes)
 * under `mnt`. Times are compared to the millisecond: the mount carries
 * milliseconds (docs/MOUNT.md).
 */
function metadataMismatches(src: string, mnt: string): string[] {
  const out: string[] = [];
  const srcB = Buffer.from(src);
  const mntB = Buffer.from(mnt);
  const walk = (rel: Buffer) => {
    const a = fs.lstatSync(join(srcB, rel), { bigint: true });
    let b: fs.BigIntStats;
    try {
      b = fs.lstatSync(join(mntB, rel), { bigint: true });
    } catch (err) {
      out.push(`${rel.toString('hex')}: ${(err as Error).message}`);
      return;
    }
    const name = rel.length ? JSON.stringify(rel.toString('latin1')) : '.';
    if (a.mode !== b.mode) out.push(`${name}: mode ${a.mode.toString(8)} vs ${b.mode.toString(8)}`);
    if (a.uid !== b.uid || a.gid !== b.gid) out.push(`${name}: owner ${a.uid}:${a.gid} vs ${b.uid}:${b.gid}`);
    if (!a.isDirectory() && a.size !== b.size) out.push(`${name}: size ${a.size} vs ${b.size}`);
    if (!a.isDirectory() && a.nlink !== b.nlink) out.push(`${name}: nlink ${a.nlink} vs ${b.nlink}`);
    if (a.mtimeNs / 1_000_000n !== b.mtimeNs / 1_000_000n) out.push(`${name}: mtime ${a.mtimeNs} vs ${b.mtimeNs}`);
    if ((a.isCharacterDevice() || a.isBlockDevice()) && a.rdev !== b.rdev) out.push(`${name}: rdev ${a.rdev} vs ${b.rdev}`);
    if (a.isSymbolicLink() && !fs.readlinkSync(join(srcB, rel), { encoding: 'buffer' }).equals(fs.readlinkSync(join(mntB, rel), { encoding: 'buffer' }))) out.push(`${name}: link target`);
    if (a.isDirectory()) {
      for (const n of fs.readdirSync(join(srcB, rel), { encoding: 'buffer' }) as Buffer[]) walk(rel.length ? join(rel, n) : n);
    }
  };
  walk(Buffer.alloc(0));
  return out;
}

describe('aegis mount: the mounted view of a repository', () => {
  let ws: Workspace;
  let src: string;
  let mnt: string;
  let m: MountProcess | undefined;
  let snaps: Array<{ id: string; name: string }>;
  const inSnap = (name: string, ...rest: string[]) => path.join(mnt, 'snapshots', name, src, ...rest);

  beforeAll(async () => {
    ws = workspace('mount');
    src = path.join(ws.dir, 'source');
    mnt = path.join(ws.dir, 'mnt');
    makeGnarlyTree(src, { sparse: false });
    await ws.ok(['init']);
    await ws.ok(['backup', src, '--tag', 'first']);
    // Changes between the two snapshots: one text file, one binary file, one added, one removed.
    fs.writeFileSync(path.join(src, 'plain.txt'), 'changed in the second snapshot\n');
    const fd = fs.openSync(path.join(src, 'binary.bin'), 'r+');
    fs.writeSync(fd, Buffer.from('patched'), 0, 7, 1_500_000);
    fs.closeSync(fd);
    fs.writeFileSync(path.join(src, 'added.txt'), 'new\n');
    fs.rmSync(path.join(src, 'exec.sh'));
    await ws.ok(['backup', src, '--tag', 'second']);
    snaps = await snapshotNames(ws);
    m = await startMount(ws, mnt);
  });

  afterAll(async () => {
    await m?.stop();
    await forceUnmount(mnt);
    ws?.cleanup();
  });

  it('says where it is mounted and lays out snapshots, hosts, tags, ids and history', () => {
    expect(m!.stdout()).toContain(`mounted at ${mnt}`);
    const [first, second] = snaps;
    expect(fs.readdirSync(mnt).sort()).toEqual(['history', 'hosts', 'ids', 'snapshots', 'tags']);
    expect(fs.readdirSync(path.join(mnt, 'snapshots'))).toEqual([first!.name, second!.name, 'latest'].sort());
    expect(fs.readlinkSync(path.join(mnt, 'snapshots', 'latest'))).toBe(second!.name);
    expect(fs.readdirSync(path.join(mnt, 'hosts', os.hostname()))).toEqual([first!.name, second!.name, 'latest'].sort());
    expect(fs.readdirSync(path.join(mnt, 'tags', 'first'))).toEqual([first!.name, 'latest']);
    expect(fs.readdirSync(path.join(mnt, 'tags', 'second'))).toEqual([second!.name, 'latest']);
    expect(fs.readdirSync(path.join(mnt, 'ids')).sort()).toEqual([first!.id.slice(0, 8), second!.id.slice(0, 8)].sort());
    expect(fs.readFileSync(path.join(mnt, 'ids', second!.id.slice(0, 8), src, 'added.txt'), 'utf8')).toBe('new\n');
    // Reading through `latest` follows the link inside the mount.
    expect(fs.readFileSync(path.join(mnt, 'snapshots', 'latest', src, 'plain.txt'), 'utf8')).toBe('changed in the second snapshot\n');
  });

  it('rsync -aHn finds nothing to do, names that are not UTF-8 included', async () => {
    const r = await run('rsync', ['-aHAXn', '--numeric-ids', '--itemize-changes', `${src}/`, `${inSnap(snaps[1]!.name)}/`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(metadataMismatches(src, inSnap(snaps[1]!.name))).toEqual([]);
  });

  it('shows hardlinks with one inode number and their link count', () => {
    const a = fs.lstatSync(inSnap(snaps[1]!.name, 'hard-a'));
    const b = fs.lstatSync(inSnap(snaps[1]!.name, 'hard-b'));
    const c = fs.lstatSync(inSnap(snaps[1]!.name, 'sub', 'hard-c'));
    expect(a.nlink).toBe(3);
    expect(b.ino).toBe(a.ino);
    expect(c.ino).toBe(a.ino);
    expect(fs.lstatSync(inSnap(snaps[1]!.name, 'plain.txt')).ino).not.toBe(a.ino);
    // The same file in the other snapshot is another file.
    expect(fs.lstatSync(inSnap(snaps[0]!.name, 'hard-a')).ino).not.toBe(a.ino);
  });

  it('shows names that are not UTF-8 with their original bytes', () => {
    const names = fs.readdirSync(inSnap(snaps[1]!.name), { encoding: 'buffer' }) as Buffer[];
    expect(names.some((n) => n.equals(NON_UTF8))).toBe(true);
    expect(fs.readFileSync(Buffer.concat([Buffer.from(inSnap(snaps[1]!.name) + '/'), NON_UTF8]), 'utf8')).toBe('non-utf8 name content\n');
    const dir = Buffer.concat([Buffer.from(inSnap(snaps[1]!.name) + '/dir-'), NON_UTF8]);
    expect(fs.readFileSync(Buffer.concat([dir, Buffer.from('/inside')]), 'utf8')).toBe('inside a non-utf8 dir\n');
    // The form JavaScript works with inside the mount (mount/names.ts) names nothing the kernel sees.
    const shown = Buffer.from(displayName(NON_UTF8), 'utf8');
    expect(shown.equals(NON_UTF8)).toBe(false);
    expect(() => fs.lstatSync(Buffer.concat([Buffer.from(inSnap(snaps[1]!.name) + '/'), shown]))).toThrow(/ENOENT/);
  });

  it('cp -a of a directory out of the mount equals the source', async () => {
    const target = path.join(ws.dir, 'copied');
    const r = await run('cp', ['-a', inSnap(snaps[1]!.name), target]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const rs = await run('rsync', ['-aHAXn', '--numeric-ids', '--itemize-changes', `${src}/`, `${target}/`]);
    expect(rs.code).toBe(0);
    expect(rs.stdout).toBe('');
    const diff = await run('diff', ['-r', '--no-dereference', src, target]);
    const notes = diff.stdout.split('\n').filter((l) => l && !/^File .* is a (fifo|character special file) while file .* is a \1$/.test(l));
    expect(notes).toEqual([]);
    expect(metadataMismatches(src, target)).toEqual([]);
    // Hardlinks stay hardlinks in the copy.
    expect(fs.statSync(path.join(target, 'hard-b')).ino).toBe(fs.statSync(path.join(target, 'hard-a')).ino);
    expect(fs.readFileSync(path.join(target, 'binary.bin')).equals(fs.readFileSync(path.join(src, 'binary.bin')))).toBe(true);
  });

  it('diff -r between two snapshot directories reports exactly the changed files', async () => {
    const a = inSnap(snaps[0]!.name);
    const b = inSnap(snaps[1]!.name);
    const r = await run('diff', ['-rq', '--no-dereference', a, b]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    const lines = r.stdout.split('\n').filter((l) => l && !/^File .* is a (fifo|character special file) while file .* is a \1$/.test(l));
    expect(lines.sort()).toEqual(
      [`Files ${a}/binary.bin and ${b}/binary.bin differ`, `Files ${a}/plain.txt and ${b}/plain.txt differ`, `Only in ${a}: exec.sh`, `Only in ${b}: added.txt`].sort(),
    );
  });

  it('refuses every write with EROFS', () => {
    const dir = inSnap(snaps[1]!.name);
    const file = path.join(dir, 'plain.txt');
    const attempts: Array<[string, () => unknown]> = [
      ['write', () => fs.writeFileSync(file, 'x')],
      ['append', () => fs.appendFileSync(file, 'x')],
      ['open r+', () => fs.openSync(file, 'r+')],
      ['create', () => fs.writeFileSync(path.join(dir, 'new-file'), 'x')],
      ['create at root', () => fs.writeFileSync(path.join(mnt, 'x'), 'x')],
      ['truncate', () => fs.truncateSync(file, 0)],
      ['unlink', () => fs.unlinkSync(file)],
      ['rmdir', () => fs.rmdirSync(path.join(dir, 'empty-dir'))],
      ['mkdir', () => fs.mkdirSync(path.join(dir, 'new-dir'))],
      ['rename', () => fs.renameSync(file, path.join(dir, 'renamed'))],
      ['chmod', () => fs.chmodSync(file, 0o777)],
      ['chown', () => fs.chownSync(file, 1, 1)],
      ['utimes', () => fs.utimesSync(file, 1, 1)],
      ['symlink', () => fs.symlinkSync('x', path.join(dir, 'new-link'))],
      ['link', () => fs.linkSync(file, path.join(dir, 'new-hardlink'))],
      ['mkdir in snapshots/', () => fs.mkdirSync(path.join(mnt, 'snapshots', 'new'))],
      ['unlink latest', () => fs.unlinkSync(path.join(mnt, 'snapshots', 'latest'))],
    ];
    for (const [what, f] of attempts) {
      let code: string | undefined;
      try {
        f();
      } catch (err) {
        code = (err as NodeJS.ErrnoException).code;
      }
      expect(`${what}: ${code}`).toBe(`${what}: EROFS`);
    }
    expect(fs.readFileSync(file, 'utf8')).toBe('changed in the second snapshot\n');
  });

  it('history/ holds one link per distinct version of a file, pointing into snapshots/', () => {
    const [first, second] = snaps;
    const h = (...rest: string[]) => path.join(mnt, 'history', src, ...rest);
    expect(fs.readdirSync(h('plain.txt'))).toEqual([first!.name, second!.name]);
    expect(fs.readdirSync(h('hard-a'))).toEqual([first!.name]); // unchanged: one version
    expect(fs.readdirSync(h('exec.sh'))).toEqual([first!.name]);
    expect(fs.readdirSync(h('added.txt'))).toEqual([second!.name]);
    const depth = src.split('/').filter(Boolean).length + 2;
    expect(fs.readlinkSync(h('plain.txt', first!.name))).toBe(`${'../'.repeat(depth)}snapshots/${first!.name}${src}/plain.txt`);
    expect(fs.readFileSync(h('plain.txt', first!.name), 'utf8')).toBe('hello aegis\n'.repeat(100));
    expect(fs.readFileSync(h('plain.txt', second!.name), 'utf8')).toBe('changed in the second snapshot\n');
    // Directories merge the names of every snapshot.
    const names = fs.readdirSync(h());
    expect(names).toContain('exec.sh');
    expect(names).toContain('added.txt');
  });

  it('shows a new snapshot without remounting, and drops a forgotten one', async () => {
    fs.writeFileSync(path.join(src, 'while-mounted.txt'), 'written while mounted\n');
    await ws.ok(['backup', src]);
    const now = await snapshotNames(ws);
    expect(now.length).toBe(3);
    const newest = now[2]!;
    // From a local repository, the first listing after the backup shows it.
    expect(fs.readdirSync(path.join(mnt, 'snapshots'))).toContain(newest.name);
    expect(fs.readlinkSync(path.join(mnt, 'snapshots', 'latest'))).toBe(newest.name);
    expect(fs.readFileSync(path.join(mnt, 'snapshots', newest.name, src, 'while-mounted.txt'), 'utf8')).toBe('written while mounted\n');
    // Forget the first snapshot behind the mount's back (remove its object). Its name
    // goes and the others keep theirs, even a "<time>-1" whose "<time>" is now free.
    const shown = fs.readdirSync(path.join(mnt, 'snapshots')).sort();
    fs.rmSync(path.join(ws.repo, 'snapshots', now[0]!.id));
    expect(fs.readdirSync(path.join(mnt, 'ids'))).not.toContain(now[0]!.id.slice(0, 8));
    expect(fs.readdirSync(path.join(mnt, 'snapshots')).sort()).toEqual(shown.filter((n) => n !== now[0]!.name));
  });
});
