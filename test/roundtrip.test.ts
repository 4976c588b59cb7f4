import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AEGIS, type Workspace, sh, workspace } from './helpers/cli.js';
import { NON_UTF8, makeGnarlyTree, metadataDifferences } from './helpers/tree.js';

describe('backup and restore round trip', () => {
  let ws: Workspace;
  let src: string;

  beforeAll(async () => {
    ws = workspace('roundtrip');
    src = path.join(ws.dir, 'source');
    makeGnarlyTree(src);
    await ws.ok(['init']);
    await ws.ok(['backup', src, '--tag', 'first']);
  });
  afterAll(() => ws.cleanup());

  it('restores every byte and every bit of metadata (rsync -aHn and diff -r agree)', async () => {
    const target = path.join(ws.dir, 'restored');
    const r = await ws.ok(['restore', `latest:${src}`, '--target', target]);
    expect(r.stdout).toMatch(/restored \d+ files/);
    const rsync = await sh('rsync', ['-aHAXn', '--numeric-ids', '--itemize-changes', `${src}/`, `${target}/`]);
    expect(rsync.code).toBe(0);
    expect(rsync.stdout).toBe('');
    expect(metadataDifferences(src, target)).toEqual([]);
    const diff = await sh('diff', ['-r', '--no-dereference', src, target]);
    // diff cannot compare special files; it only notes them, and both sides must be the same kind.
    const notes = diff.stdout.split('\n').filter((l) => l && !/^File .* is a (fifo|character special file) while file .* is a \1$/.test(l));
    expect(notes).toEqual([]);
    expect(diff.stderr).toBe('');
    // diff exits 1 for those notes alone; anything else would have been printed above.
    expect(diff.code === 0 || (diff.code === 1 && diff.stdout.includes(' is a fifo while file '))).toBe(true);
  });

  // A rescue chroot may not have /proc, which the restore uses to reach the target's
  // directories through descriptors (docs/DECISIONS.md, "Writing the target safely").
  it.skipIf(process.getuid?.() !== 0)('restores exactly without /proc, and says it cannot guard the target then', async () => {
    const target = path.join(ws.dir, 'restored-no-proc');
    const env = Object.entries(ws.env).map(([k, v]) => `${k}=${v}`);
    const r = await sh('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'umount -l /proc && exec "$@"', 'sh', 'env', '-i', ...env, process.execPath, AEGIS, '-r', ws.repo, 'restore', `latest:${src}`, '--target', target]);
    expect(r.stderr).toBe('warning: /proc is not mounted: restoring by path names, so someone else who can write inside the target could redirect this restore (mount /proc to prevent it)\n');
    expect(r.code).toBe(0);
    const rsync = await sh('rsync', ['-aHAXn', '--numeric-ids', '--itemize-changes', `${src}/`, `${target}/`]);
    expect(rsync.stdout).toBe('');
    expect(metadataDifferences(src, target)).toEqual([]);
  });

  // ramfs keeps no extended attributes at all, as some file systems a restore may go to (vfat, say).
  it.skipIf(process.getuid?.() !== 0)('onto a file system without extended attributes: every file restored, the first that lost attributes named and the others counted', async () => {
    const target = path.join(ws.dir, 'ramfs');
    fs.mkdirSync(target);
    expect((await sh('mount', ['-t', 'ramfs', 'ramfs', target])).code).toBe(0);
    try {
      const r = await ws.run(['restore', `latest:${src}`, '--target', target, '--exclude', 'sparse.img']);
      expect(r.code).toBe(1);
      // Nine entries have attributes (test/helpers/tree.ts): one warning names the first, one line counts the rest.
      const lines = r.stderr.split('\n').filter(Boolean);
      expect(lines).toHaveLength(3);
      expect(lines[0]).toMatch(new RegExp(`^warning: ${target}/.+: extended attributes not restored: the target file system does not support them$`));
      expect(lines[1]).toBe('warning: 8 more entries restored without their extended attributes: the target file system does not support them');
      expect(lines[2]).toBe('aegis: restore is incomplete: 9 error(s)');
      // Everything else is there: content, modes, owners, times, links.
      const rsync = await sh('rsync', ['-aHn', '--numeric-ids', '--itemize-changes', '--exclude=/sparse.img', `${src}/`, `${target}/`]);
      expect(rsync.stdout).toBe('');
    } finally {
      await sh('umount', [target]);
    }
  });

  it('keeps holes: the 1 GiB sparse file does not occupy 1 GiB after restore', async () => {
    const target = path.join(ws.dir, 'restored-sparse');
    await ws.ok(['restore', `latest:${src}`, '--target', target, '--include', '**/sparse.img']);
    const st = fs.statSync(path.join(target, 'sparse.img'));
    expect(st.size).toBe(1024 * 1024 * 1024);
    expect(st.blocks * 512).toBeLessThan(64 * 1024 * 1024);
    const cmp = await sh('cmp', [path.join(src, 'sparse.img'), path.join(target, 'sparse.img')]);
    expect(cmp.code).toBe(0);
  });

  it('--include: the directories on the way to what it selects, and a directory it names, get their own metadata', async () => {
    const target = path.join(ws.dir, 'restored-include');
    const r = await ws.ok(['restore', `latest:${src}`, '--target', target, '--include', '**/bottom.txt', '--include', '**/sticky']);
    expect(r.stdout).toMatch(/^restored 1 files .*, 42 directories,/);
    const dirs = ['sticky', 'deep'];
    for (let i = 0, d = 'deep'; i < 40; i++) dirs.push((d = `${d}/level${i}`));
    expect(fs.readFileSync(path.join(target, dirs.at(-1)!, 'bottom.txt'), 'utf8')).toBe('deep down\n');
    for (const d of dirs) {
      const [a, b] = [fs.lstatSync(path.join(src, d), { bigint: true }), fs.lstatSync(path.join(target, d), { bigint: true })];
      expect([b.mode, b.uid, b.gid, b.mtimeNs], d).toEqual([a.mode, a.uid, a.gid, a.mtimeNs]);
    }
    expect(fs.statSync(path.join(target, 'sticky')).mode & 0o7777).toBe(0o1777);
    expect(fs.readdirSync(target).sort()).toEqual(['deep', 'sticky']);
  });

  it('restores the full absolute path layout without a subpath', async () => {
    const target = path.join(ws.dir, 'restored-full');
    await ws.ok(['restore', 'latest', '--target', target, '--exclude', '**/sparse.img']);
    const inside = path.join(target, src);
    expect(fs.readFileSync(path.join(inside, 'plain.txt'), 'utf8')).toBe('hello aegis\n'.repeat(100));
    expect(fs.readFileSync(Buffer.concat([Buffer.from(inside + '/'), NON_UTF8]), 'utf8')).toBe('non-utf8 name content\n');
    expect(fs.existsSync(path.join(inside, 'sparse.img'))).toBe(false);
  });

  it('lists names that are not UTF-8 and dumps files and directories', async () => {
    const ls = await ws.ok(['ls', 'latest', src, '--json']);
    const names = ls.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((n) => n.struct_type === 'node').map((n) => n.name);
    expect(names).toContain('plain.txt');
    expect(names).toContain(NON_UTF8.toString('utf8'));
    const dump = await ws.ok(['dump', 'latest', path.join(src, 'binary.bin')]);
    expect(dump.stdoutBytes.equals(fs.readFileSync(path.join(src, 'binary.bin')))).toBe(true);
    const tarDir = path.join(ws.dir, 'untar');
    fs.mkdirSync(tarDir);
    const tarFile = path.join(ws.dir, 'sub.tar');
    fs.writeFileSync(tarFile, (await ws.ok(['dump', 'latest', path.join(src, 'deep')])).stdoutBytes);
    expect((await sh('tar', ['-xf', tarFile, '-C', tarDir])).code).toBe(0);
    let deep = tarDir;
    for (let i = 0; i < 40; i++) deep = path.join(deep, `level${i}`);
    expect(fs.readFileSync(path.join(deep, 'bottom.txt'), 'utf8')).toBe('deep down\n');
  });

  it('a rerun of a finished restore skips files already identical (interruptions: restore-interrupt.test.ts)', async () => {
    const target = path.join(ws.dir, 'restored-twice');
    const args = ['restore', `latest:${src}`, '--target', target, '--exclude', '**/sparse.img', '--json'];
    const first = JSON.parse((await ws.ok(args)).stdout.trim().split('\n').pop()!);
    const second = JSON.parse((await ws.ok(args)).stdout.trim().split('\n').pop()!);
    expect(first.skipped).toBe(0);
    expect(second.skipped).toBeGreaterThanOrEqual(first.files);
    expect(second.bytes).toBe(0);
    // Nothing left under a temporary name: rename() of a hardlink onto another link of
    // the same file does nothing, and a rerun once left one name per later link.
    expect((await sh('find', [target, '-name', '.aegis-restore-*'])).stdout).toBe('');
    expect(metadataDifferences(src, target)).toEqual(['/: entries differ: sparse.img', 'missing: /sparse.img']);
    // A later name of a hardlinked file: --overwrite never keeps what is there, the default links it again.
    fs.rmSync(path.join(target, 'hard-b'));
    fs.writeFileSync(path.join(target, 'hard-b'), 'put there by hand\n');
    await ws.ok([...args.slice(0, -1), '--overwrite', 'never']);
    expect(fs.readFileSync(path.join(target, 'hard-b'), 'utf8')).toBe('put there by hand\n');
    await ws.ok(args);
    expect(fs.statSync(path.join(target, 'hard-b')).ino).toBe(fs.statSync(path.join(target, 'hard-a')).ino);
    const verify = await ws.ok(['restore', `latest:${src}`, '--target', target, '--exclude', '**/sparse.img', '--overwrite', 'always', '--verify', '--json']);
    expect(JSON.parse(verify.stdout.trim().split('\n').pop()!).verified).toBeGreaterThan(0);
  });

  it('a rerun puts back metadata changed since: a new mode or owner in place, changed extended attributes by writing the file again', async () => {
    const target = path.join(ws.dir, 'restored-changed');
    const args = ['restore', `latest:${src}`, '--target', target, '--exclude', '**/sparse.img', '--json'];
    await ws.ok(args);
    const t = (...p: string[]) => path.join(target, ...p);
    const root = process.getuid?.() === 0;
    fs.chmodSync(t('setuid'), 0o644);
    if (root) {
      fs.chownSync(t('owned'), 0, 0);
      fs.lchownSync(t('link-relative'), 4321, 8765);
    }
    await sh('setfattr', ['-x', 'user.comment', t('plain.txt')]);
    await sh('setfattr', ['-n', 'user.added-since', '-v', 'not in the snapshot', t('binary.bin')]);
    await sh('setfacl', ['-b', t('acl-dir', 'shared.txt')]);
    const inode = (p: string) => fs.lstatSync(p).ino;
    const kept = ['setuid', 'owned', 'exec.sh'].map((f) => inode(t(f)));
    const again = JSON.parse((await ws.ok(args)).stdout.trim().split('\n').pop()!);
    // Exactly the three files whose attributes differ were written again.
    const rewritten = ['plain.txt', 'binary.bin', path.join('acl-dir', 'shared.txt')].reduce((n, f) => n + fs.statSync(path.join(src, f)).size, 0);
    expect(again.bytes).toBe(rewritten);
    expect(['setuid', 'owned', 'exec.sh'].map((f) => inode(t(f)))).toEqual(kept);
    expect(fs.statSync(t('setuid')).mode & 0o7777).toBe(0o4755);
    const rsync = await sh('rsync', ['-aHAXn', '--numeric-ids', '--itemize-changes', '--exclude=/sparse.img', `${src}/`, `${target}/`]);
    expect(rsync.stdout).toBe('');
    expect(metadataDifferences(src, target)).toEqual(['/: entries differ: sparse.img', 'missing: /sparse.img']);
  });
});
