import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Repository } from '../src/repo/repository.js';
import { LocalStorage } from '../src/storage/local.js';
import { AEGIS, ROOT, type Workspace, workspace } from './helpers/cli.js';
import { aegis, expectUserError, withoutPassword } from './helpers/errors.js';
import { deterministicBytes } from './helpers/tree.js';

/**
 * Every error a user can run into is one line on stderr starting with "aegis: ",
 * without a stack trace (unless --debug), and exits with the documented code:
 * 1 fatal, 10 no repository, 11 locked, 12 wrong passphrase.
 */
describe('user errors', () => {
  let ws: Workspace;
  let src: string;
  let snapshotId: string;

  beforeAll(async () => {
    ws = workspace('cli-errors');
    src = path.join(ws.dir, 'src');
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n');
    fs.writeFileSync(path.join(src, 'sub', 'b.txt'), 'beta\n');
    await ws.ok(['init']);
    await ws.ok(['backup', src]);
    snapshotId = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout)[0].id;
  });
  afterAll(() => ws.cleanup());

  describe('repository and passphrase', () => {
    it('wrong passphrase: exit 12', async () => {
      const r = await ws.run(['snapshots'], { env: { AEGIS_PASSWORD: 'not the passphrase' } });
      expectUserError(r, 12, /wrong passphrase/);
      expect(r.stdout).toBe('');
    });

    it('an S3 endpoint nothing answers: retries are told at a terminal as they happen, a script sees only the final line', async () => {
      const env = { ...ws.env, AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b', AEGIS_RETRY: 'attempts=4,base=20ms' };
      const args = ['-r', 's3:http://127.0.0.1:1/bucket', 'snapshots'];
      const piped = await aegis(args, { env });
      expectUserError(piped, 1, /^aegis: storage error: gave up after 4 attempts over .*ECONNREFUSED/);
      // `script` gives the command a terminal.
      const tty = spawnSync('script', ['-qec', [process.execPath, AEGIS, ...args].join(' '), '/dev/null'], { env, encoding: 'utf8' });
      const lines = tty.stdout.split(/\r?\n/).map((l) => l.replace(/^\r\x1b\[K/, '')).filter(Boolean);
      expect(lines.filter((l) => /ECONNREFUSED 127\.0\.0\.1:1; retrying in \d+\.\d s \(attempt [34]\)$/.test(l)), tty.stdout).toHaveLength(2);
      expect(lines.at(-1)).toMatch(/^aegis: storage error: gave up after 4 attempts/);
    });

    it('missing repository: exit 10, names the location', async () => {
      const missing = path.join(ws.dir, 'no-such-repo');
      const r = await aegis(['-r', missing, 'snapshots'], { env: ws.env });
      expectUserError(r, 10, /does not exist/);
      expect(r.stderr).toContain(missing);
      expect(fs.existsSync(missing)).toBe(false);
    });

    it('AEGIS_REPOSITORY is used when -r is absent; neither given is a clear error', async () => {
      const viaEnv = await aegis(['snapshots', '--json'], { env: { ...ws.env, AEGIS_REPOSITORY: ws.repo } });
      expect(viaEnv.code, viaEnv.stderr).toBe(0);
      expect(JSON.parse(viaEnv.stdout)).toHaveLength(1);
      expectUserError(await aegis(['snapshots'], { env: ws.env }), 1, /no repository given.*--repo.*AEGIS_REPOSITORY/);
    });

    it('a directory that is not a repository: exit 10, "not an Aegis repository", nothing written there', async () => {
      const dir = path.join(ws.dir, 'photos');
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'cat.jpg'), 'not a repository');
      for (const cmd of [['snapshots'], ['backup', src], ['key', 'list']]) {
        const r = await aegis(['-r', dir, ...cmd], { env: ws.env });
        expectUserError(r, 10, /not an Aegis repository/);
      }
      expect(fs.readdirSync(dir)).toEqual(['cat.jpg']);
    });

    it('init on an existing repository fails and leaves it as it was', async () => {
      const config = fs.readFileSync(path.join(ws.repo, 'config'));
      const keys = fs.readdirSync(path.join(ws.repo, 'keys')).sort();
      const r = await ws.run(['init'], { env: { AEGIS_PASSWORD: 'a different passphrase' } });
      expectUserError(r, 1, /already exists/);
      expect(fs.readFileSync(path.join(ws.repo, 'config')).equals(config)).toBe(true);
      expect(fs.readdirSync(path.join(ws.repo, 'keys')).sort()).toEqual(keys);
      await ws.ok(['snapshots']);
    });

    it('no passphrase source and stdin is not a terminal: names the sources', async () => {
      const r = await aegis(['-r', ws.repo, 'snapshots'], { env: withoutPassword(ws.env) });
      expectUserError(r, 1, /no passphrase.*--password-file.*AEGIS_PASSWORD_FILE.*AEGIS_PASSWORD_COMMAND.*AEGIS_PASSWORD\b/);
    });

    it('--password-file and AEGIS_PASSWORD_FILE pointing at a missing file name the file', async () => {
      const missing = path.join(ws.dir, 'no-such-password-file');
      expectUserError(await ws.run(['snapshots', '--password-file', missing]), 1, /password file/);
      const r = await aegis(['-r', ws.repo, 'snapshots'], { env: { ...withoutPassword(ws.env), AEGIS_PASSWORD_FILE: missing } });
      const line = expectUserError(r, 1, /password file/);
      expect(line).toContain(missing);
      expect(line).toMatch(/no such file/i);
    });

    it('a failing AEGIS_PASSWORD_COMMAND is an error, not a fallback to the next source', async () => {
      // AEGIS_PASSWORD (set by the workspace, and correct) comes after the command: it must not be used.
      const r = await ws.run(['snapshots'], { env: { AEGIS_PASSWORD_COMMAND: 'exit 3' } });
      expectUserError(r, 1, /AEGIS_PASSWORD_COMMAND failed/);
    });

    it('--password-file with no value is refused rather than ignored', async () => {
      const r = await ws.run(['snapshots', '--password-file']);
      expectUserError(r, 1, /password-file/);
    });

    it('--debug adds a stack trace to the same message', async () => {
      const missing = path.join(ws.dir, 'no-such-repo');
      const r = await aegis(['-r', missing, 'snapshots', '--debug'], { env: ws.env });
      expect(r.code).toBe(10);
      const lines = r.stderr.trim().split('\n');
      expect(lines[0]).toMatch(/^aegis: repository does not exist/);
      expect(lines.length).toBeGreaterThan(2);
      expect(r.stderr).toMatch(/\n\s+at .+:\d+:\d+/);
    });
  });

  describe('locks', () => {
    it('a repository locked exclusively: backup exits 11 and names the holder; it works once released', async () => {
      const storage = new LocalStorage(ws.repo);
      const repo = await Repository.open(storage, ws.env.AEGIS_PASSWORD!);
      const lock = await repo.lock(true);
      try {
        const r = await ws.run(['backup', src]);
        expectUserError(r, 11, /locked/);
        expect(r.stderr).toContain(`pid ${process.pid}`);
        expect(JSON.parse((await ws.ok(['snapshots', '--json'])).stdout)).toHaveLength(1);
      } finally {
        await lock.release();
        await repo.close();
      }
      await ws.ok(['backup', src]);
      expect(fs.readdirSync(path.join(ws.repo, 'locks'))).toEqual([]);
    });
  });

  describe('snapshots and paths', () => {
    it('an invalid snapshot ID', async () => {
      for (const cmd of [['ls', 'not-hex'], ['restore', 'zz', '--target', path.join(ws.dir, 'never')], ['dump', 'xyz', '/'], ['diff', 'latest', 'q']]) {
        expectUserError(await ws.run(cmd), 1, /invalid snapshot ID/);
      }
      expect(fs.existsSync(path.join(ws.dir, 'never'))).toBe(false);
    });

    it('a snapshot ID that matches nothing', async () => {
      const ids: string[] = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout).map((s: { id: string }) => s.id);
      let prefix = '0000000000';
      while (ids.some((id) => id.startsWith(prefix))) prefix = prefix.replace(/^./, (c) => (Number.parseInt(c, 16) + 1).toString(16));
      expectUserError(await ws.run(['ls', prefix]), 1, new RegExp(`no snapshot with ID ${prefix}`));
    });

    it('an ambiguous snapshot ID prefix', async () => {
      // Copies of the snapshot under new random IDs, until two share a first hex digit (at most 17).
      const storage = new LocalStorage(ws.repo);
      const repo = await Repository.open(storage, ws.env.AEGIS_PASSWORD!);
      let shared: string | undefined;
      try {
        const snapshot = await repo.loadSnapshot(snapshotId);
        for (;;) {
          const firsts = (await repo.listSnapshots()).map((e) => e.id[0]!);
          shared = firsts.find((c, i) => firsts.indexOf(c) !== i);
          if (shared) break;
          await repo.saveSnapshot(snapshot);
        }
      } finally {
        await repo.close();
      }
      expectUserError(await ws.run(['ls', shared]), 1, /ambiguous/);
      expectUserError(await ws.run(['restore', shared, '--target', path.join(ws.dir, 'never')]), 1, /ambiguous/);
      expect(fs.existsSync(path.join(ws.dir, 'never'))).toBe(false);
    });

    it('"latest" with a filter that matches nothing', async () => {
      const target = path.join(ws.dir, 'never');
      expectUserError(await ws.run(['restore', 'latest', '--host', 'no-such-host', '--target', target]), 1, /no snapshot found matching/);
      expectUserError(await ws.run(['restore', 'latest', '--path', '/no/such/path', '--target', target]), 1, /no snapshot found matching/);
      expect(fs.existsSync(target)).toBe(false);
    });

    it('ls and dump of a path that is not in the snapshot', async () => {
      expectUserError(await ws.run(['ls', 'latest', path.join(src, 'nope')]), 1, /no such path in the snapshot/);
      expectUserError(await ws.run(['dump', 'latest', path.join(src, 'a.txt', 'below-a-file')]), 1, /not a directory in the snapshot/);
      expectUserError(await ws.run(['ls', 'latest', `${src}/../escape`]), 1, /\.\./);
    });

    it('restore to a target that is a file leaves the file alone', async () => {
      const file = path.join(ws.dir, 'target-file');
      fs.writeFileSync(file, 'keep me');
      const r = await ws.run(['restore', 'latest', '--target', file]);
      expectUserError(r, 1, /not a directory/);
      expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
    });

    it('restore to a target that is a symlink: into the directory it names; to nothing: one clear line', async () => {
      const real = path.join(ws.dir, 'target-real');
      fs.mkdirSync(real);
      fs.symlinkSync(real, path.join(ws.dir, 'target-link'));
      const r = await ws.run(['restore', 'latest', '--target', path.join(ws.dir, 'target-link')]);
      expect(r.code, r.stderr).toBe(0);
      expect(fs.readdirSync(real).length).toBeGreaterThan(0);
      fs.symlinkSync(path.join(ws.dir, 'nowhere'), path.join(ws.dir, 'target-dangling'));
      const d = await ws.run(['restore', 'latest', '--target', path.join(ws.dir, 'target-dangling')]);
      expectUserError(d, 1, /cannot open the restore target .*target-dangling: ENOENT/);
      expect(fs.existsSync(path.join(ws.dir, 'nowhere'))).toBe(false);
    });

    it('restore --target without a value does not restore into the current directory', async () => {
      const cwd = path.join(ws.dir, 'cwd-for-restore');
      fs.mkdirSync(cwd);
      for (const args of [['restore', 'latest', '--target'], ['restore', 'latest', '--target', ''], ['restore', 'latest', '-t']]) {
        const r = await aegis(['-r', ws.repo, ...args], { env: ws.env, cwd });
        expectUserError(r, 1, /target/);
        expect(fs.readdirSync(cwd), args.join(' ')).toEqual([]);
      }
    });

    it('restore of a subpath that is not in the snapshot', async () => {
      const target = path.join(ws.dir, 'sub-restore');
      expectUserError(await ws.run(['restore', `latest:${src}/missing`, '--target', target]), 1, /no such path in the snapshot/);
    });
  });

  describe('backup arguments', () => {
    it('a path that does not exist', async () => {
      expectUserError(await ws.run(['backup', path.join(ws.dir, 'nothing-here')]), 1, /cannot back up .*nothing-here: no such file or directory/);
    });

    it('a missing --exclude-file', async () => {
      expectUserError(await ws.run(['backup', src, '--exclude-file', path.join(ws.dir, 'no-excludes')]), 1, /exclude file/);
    });

    it('--parent that names no snapshot is refused, not recorded', async () => {
      const before = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout).length;
      expectUserError(await ws.run(['backup', src, '--parent', 'deadbeefdeadbeef']), 1, /no snapshot with ID deadbeefdeadbeef/);
      expectUserError(await ws.run(['backup', src, '--parent', 'not-an-id']), 1, /invalid snapshot ID/);
      expect(JSON.parse((await ws.ok(['snapshots', '--json'])).stdout)).toHaveLength(before);
    });

    it('--parent with an ID prefix records the full ID', async () => {
      await ws.ok(['backup', src, '--parent', snapshotId.slice(0, 8), '--tag', 'with-parent']);
      const snaps = JSON.parse((await ws.ok(['snapshots', '--json', '--tag', 'with-parent'])).stdout);
      expect(snaps).toHaveLength(1);
      expect(snaps[0].parent).toBe(snapshotId);
    });

    it('--host with an empty value is refused', async () => {
      const before = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout).length;
      expectUserError(await ws.run(['backup', src, '--host']), 1, /host/);
      expectUserError(await ws.run(['backup', src, '--host', '']), 1, /host/);
      expect(JSON.parse((await ws.ok(['snapshots', '--json'])).stdout)).toHaveLength(before);
    });
  });

  describe('command line', () => {
    it('an unknown option: exit 1, names the option', async () => {
      const r = await ws.run(['snapshots', '--frobnicate']);
      expectUserError(r, 1, /unknown option --frobnicate/i);
      expectUserError(await ws.run(['backup', src, '-Z']), 1, /unknown option -Z/i);
    });

    it('an unknown command: exit 1, names the command', async () => {
      expectUserError(await ws.run(['frobnicate']), 1, /unknown command "frobnicate"/i);
      expectUserError(await aegis(['frobnicate'], { env: ws.env }), 1, /unknown command "frobnicate"/i);
    });

    it('a misspelt command: one line naming it and the suggestion', async () => {
      const line = expectUserError(await ws.run(['snapshot']), 1, /snapshots/);
      expect(line).toMatch(/unknown command "snapshot"/i);
    });

    it('a surplus argument, a missing argument, an invalid choice: one line each', async () => {
      expectUserError(await ws.run(['ls', 'latest', '/', 'extra']), 1, /extra/);
      expectUserError(await ws.run(['restore']), 1, /aegis restore <snapshot>/);
      expectUserError(await ws.run(['restore', 'latest']), 1, /--target/);
      expectUserError(await ws.run(['backup', src, '--compression', 'fastest']), 1, /invalid value "fastest" for --compression/);
      expectUserError(await ws.run(['key', 'rotate']), 1, /invalid action "rotate"/);
      expectUserError(await aegis([], { env: ws.env }), 1, /command/);
    });

    it('--version prints the version from package.json', async () => {
      const r = await aegis(['--version'], { env: ws.env });
      expect(r.code, r.stderr).toBe(0);
      const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
      expect(r.stdout.trim()).toContain(pkg.version);
      expect(r.stderr).toBe('');
    });

    it('"aegis help backup" shows the backup options; "aegis help" lists the commands', async () => {
      const r = await aegis(['help', 'backup'], { env: ws.env });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/aegis backup <paths\.\.>/);
      for (const opt of ['--exclude', '--exclude-file', '--one-file-system', '--dry-run', '--tag', '--host', '--repo', '--password-file']) expect(r.stdout).toContain(opt);
      expect(r.stdout).not.toMatch(/aegis init\b/);
      const all = await aegis(['help'], { env: ws.env });
      expect(all.code, all.stderr).toBe(0);
      for (const cmd of ['init', 'backup', 'snapshots', 'restore', 'ls', 'dump', 'diff', 'key', 'mount']) expect(all.stdout).toMatch(new RegExp(`aegis ${cmd}\\b`));
      const same = await aegis(['backup', '--help'], { env: ws.env });
      expect(same.stdout).toBe(r.stdout);
    });

    it('"aegis help" of an unknown command is an error', async () => {
      expectUserError(await aegis(['help', 'frobnicate'], { env: ws.env }), 1, /unknown command "frobnicate"/i);
    });

    it('"aegis completion" prints a shell completion script', async () => {
      const r = await aegis(['completion'], { env: ws.env });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^complete .* aegis$/m);
      // The script asks aegis for the words; those are the commands and options.
      const words = await aegis(['--get-yargs-completions', 'aegis', 'sn'], { env: ws.env });
      expect(words.code, words.stderr).toBe(0);
      expect(words.stdout.split('\n')).toContain('snapshots');
      const options = await aegis(['--get-yargs-completions', 'aegis', 'backup', '--'], { env: ws.env });
      expect(options.stdout.split('\n')).toEqual(expect.arrayContaining(['--exclude', '--one-file-system', '--repo']));
    });
  });

  describe('damaged repository', () => {
    it('a damaged data blob: dump names the blob, its pack and the file', async () => {
      const dws = workspace('cli-errors-damage');
      try {
        const dsrc = path.join(dws.dir, 'src');
        fs.mkdirSync(dsrc);
        fs.writeFileSync(path.join(dsrc, 'victim.bin'), deterministicBytes('victim', 3 * 1024 * 1024));
        fs.writeFileSync(path.join(dsrc, 'second\nvictim.bin'), deterministicBytes('second', 2 * 1024 * 1024));
        await dws.ok(['init', '--pack-size', '1']);
        await dws.ok(['backup', dsrc]);
        const packs: string[] = [];
        const find = (d: string) => fs.readdirSync(d, { withFileTypes: true }).forEach((e) => (e.isDirectory() ? find(path.join(d, e.name)) : packs.push(path.join(d, e.name))));
        find(path.join(dws.repo, 'data'));
        // Every data pack damaged: whichever blob dump reads first fails.
        for (const p of packs.filter((f) => fs.statSync(f).size > 64 * 1024)) {
          const bytes = fs.readFileSync(p);
          bytes[bytes.length >> 1] ^= 0x01;
          fs.writeFileSync(p, bytes);
        }
        const r = await dws.run(['dump', 'latest', path.join(dsrc, 'victim.bin')]);
        const line = expectUserError(r, 1, /^aegis: blob [0-9a-f]+ in pack [0-9a-f]+ is damaged/);
        expect(line).toContain(`needed by ${path.join(dsrc, 'victim.bin')}`);
        const tar = await dws.run(['dump', 'latest', dsrc]);
        expect(expectUserError(tar, 1, /is damaged/)).toMatch(/needed by .*victim\.bin/);
        // restore goes on past damage and names each file it could not restore, one line each.
        const restored = await dws.run(['restore', `latest:${dsrc}`, '--target', path.join(dws.dir, 'out')]);
        expect(restored.code, restored.stderr).toBe(1);
        const lines = restored.stderr.trimEnd().split('\n');
        for (const l of lines) expect(l, restored.stderr).toMatch(/^(warning|aegis): /);
        expect(lines.some((l) => l.startsWith(`warning: ${dsrc}/victim.bin: not restored`)), restored.stderr).toBe(true);
        expect(lines.some((l) => l.startsWith(`warning: ${dsrc}/second\\nvictim.bin: not restored`)), restored.stderr).toBe(true);
        expect(lines[lines.length - 1]).toMatch(/^aegis: restore is incomplete/);
      } finally {
        dws.cleanup();
      }
    });

    it('a damaged index object: one line naming it', async () => {
      const dir = path.join(ws.repo, 'index');
      const name = fs.readdirSync(dir).sort()[0]!;
      const p = path.join(dir, name);
      const copy = fs.readFileSync(p);
      const bytes = Buffer.from(copy);
      bytes[Math.floor(bytes.length / 2)] ^= 0x10;
      fs.writeFileSync(p, bytes);
      try {
        const r = await ws.run(['ls', 'latest', '--recursive']);
        expectUserError(r, 1, /damaged/);
        expect(r.stderr).toContain(`index/${name}`);
      } finally {
        fs.writeFileSync(p, copy);
      }
      await ws.ok(['ls', 'latest']);
    });
  });
});
