/**
 * `npm run demo`: the main job on an embedded default, shown command by command.
 * Backs up fixtures/sample (or the directory given after `--`) together with a
 * small scratch directory, changes a file in the scratch directory (never in your
 * data), backs up again, lists snapshots, shows the diff, restores one file, and,
 * where FUSE is available, mounts the repository, compares two snapshots with
 * diff -r, copies a file out with cp and unmounts.
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const aegis = path.join(root, 'bin', 'aegis');
const dataDir = path.join(process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share'), 'aegis');
const repo = path.join(dataDir, 'repo');
const passFile = path.join(dataDir, 'demo-passphrase');
const scratch = path.join(dataDir, 'demo-scratch');

const dashdash = process.argv.indexOf('--');
const userDir = dashdash >= 0 ? process.argv[dashdash + 1] : process.argv[2];
const source = path.resolve(userDir ?? path.join(root, 'fixtures', 'sample'));

const env = { ...process.env, AEGIS_REPOSITORY: repo, AEGIS_PASSWORD_FILE: passFile };
const short = (p: string) => p.replace(os.homedir(), '~');

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m${text}\x1b[0m\n`);
}

/** Run `aegis …` as a user would, showing the command line and its output. */
function run(args: string[], opts: { allowFail?: boolean } = {}): string {
  process.stdout.write(`$ aegis ${args.map((a) => (/[\s'"*]/.test(a) ? `'${a}'` : a)).join(' ')}\n`);
  const r = spawnSync(process.execPath, [aegis, ...args], { env, encoding: 'utf8' });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  if (r.status !== 0 && r.status !== 3 && !opts.allowFail) {
    process.stderr.write(`demo: "aegis ${args[0]}" failed (exit ${r.status})\n`);
    process.exit(r.status ?? 1);
  }
  return r.stdout;
}

function shell(cmd: string, args: string[]): string {
  process.stdout.write(`$ ${cmd} ${args.map((a) => (/\s/.test(a) ? `'${a}'` : a)).join(' ')}\n`);
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  return r.stdout;
}

function snapshotIds(): string[] {
  const r = spawnSync(process.execPath, [aegis, 'snapshots', '--json'], { env, encoding: 'utf8' });
  return (JSON.parse(r.stdout) as Array<{ short_id: string; paths: string[] }>).filter((s) => s.paths.includes(source)).map((s) => s.short_id);
}

async function demoMount(): Promise<void> {
  const help = spawnSync(process.execPath, [aegis, 'mount', '--help'], { env, encoding: 'utf8' });
  if (help.status !== 0) {
    say('(this build has no "aegis mount"; skipping the mount part)');
    return;
  }
  if (!fs.existsSync('/dev/fuse')) {
    say('(no /dev/fuse on this machine; skipping the mount part)');
    return;
  }
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-demo-mnt-'));
  say(`Mount every snapshot as a read-only filesystem at ${mnt}`);
  process.stdout.write(`$ aegis mount ${mnt} &\n`);
  const child = spawn(process.execPath, [aegis, 'mount', mnt], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  child.stdout.on('data', (d) => process.stdout.write(d));
  try {
    await new Promise<void>((resolve, reject) => {
      const check = () => (fs.existsSync(path.join(mnt, 'snapshots')) ? resolve() : undefined);
      child.stdout.on('data', check);
      child.on('exit', (code) => reject(new Error(`aegis mount exited (${code})`)));
      check();
    });
    const snaps = fs.readdirSync(path.join(mnt, 'snapshots')).filter((n) => n !== 'latest').sort();
    shell('ls', ['-l', path.join(mnt, 'snapshots')]);
    const [a, b] = snaps.slice(-2);
    if (a && b) {
      say('Compare the two newest snapshots with plain diff -r');
      shell('diff', ['-r', path.join(mnt, 'snapshots', a, scratch), path.join(mnt, 'snapshots', b, scratch)]);
    }
    say('Restore with cp');
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-demo-cp-'));
    shell('cp', ['-a', path.join(mnt, 'snapshots', 'latest', source), out]);
    shell('ls', ['-lR', out]);
  } finally {
    say('Unmount');
    run(['umount', mnt], { allowFail: true });
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.on('exit', r)));
    fs.rmSync(mnt, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (!fs.statSync(source, { throwIfNoEntry: false })?.isDirectory()) {
    process.stderr.write(`demo: ${source} is not a directory\n`);
    process.exit(1);
  }
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  say('Aegis demo');
  process.stdout.write(`repository:   ${short(repo)}\n`);
  process.stdout.write(`backing up:   ${short(source)} (read only) and ${short(scratch)} (the demo changes a file here)\n`);
  if (!fs.existsSync(path.join(repo, 'config'))) {
    if (!fs.existsSync(passFile)) fs.writeFileSync(passFile, crypto.randomBytes(18).toString('base64url') + '\n', { mode: 0o600 });
    process.stdout.write(`passphrase:   a new random one, saved in ${short(passFile)} (mode 0600)\n`);
    say('Create the encrypted repository');
    run(['init']);
  } else {
    process.stdout.write(`passphrase:   read from ${short(passFile)}\n`);
  }

  fs.mkdirSync(scratch, { recursive: true });
  const journal = path.join(scratch, 'journal.txt');
  if (!fs.existsSync(journal)) fs.writeFileSync(journal, 'Demo journal\n');

  say('First backup');
  run(['backup', source, scratch, '--tag', 'demo']);
  fs.appendFileSync(journal, `${new Date().toISOString()} the demo changed this file\n`);
  say(`Change a file (${short(journal)}) and back up again: unchanged files are not even read`);
  run(['backup', source, scratch, '--tag', 'demo']);

  say('Snapshots');
  run(['snapshots']);
  const ids = snapshotIds();
  if (ids.length >= 2) {
    say('What changed between the last two');
    run(['diff', ids[ids.length - 2]!, ids[ids.length - 1]!]);
  }

  const firstFile = findFirstFile(source);
  if (firstFile) {
    const target = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-demo-restore-'));
    say('Restore one file');
    run(['restore', `latest:${firstFile}`, '--target', target, '--path', source]);
    shell('ls', ['-l', target]);
  }

  await demoMount();
  say('Done. Try: AEGIS_REPOSITORY=' + short(repo) + ' AEGIS_PASSWORD_FILE=' + short(passFile) + ' bin/aegis --help');
}

function findFirstFile(dir: string): string | undefined {
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, e.name);
    if (e.isFile()) return p;
    if (e.isDirectory()) {
      const inner = findFirstFile(p);
      if (inner) return inner;
    }
  }
  return undefined;
}

await main();
