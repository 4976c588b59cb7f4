import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Workspace, workspace } from './helpers/cli.js';
import { allFiles, deterministicBytes } from './helpers/tree.js';


function lastJson(stdout: string): Record<string, any> {
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

describe('what the storage sees', () => {
  let ws: Workspace;
  beforeAll(() => {
    ws = workspace('privacy');
  });
  afterAll(() => ws.cleanup());

  it('holds no file name and no plaintext content of the source', async () => {
    const src = path.join(ws.dir, 'src');
    fs.mkdirSync(path.join(src, 'Quarterly-Zebra-Reports'), { recursive: true });
    const text = 'The aardvark-periwinkle treaty was signed at dawn.\n'.repeat(2000);
    fs.writeFileSync(path.join(src, 'Quarterly-Zebra-Reports', 'confidential-marmalade.txt'), text);
    fs.writeFileSync(path.join(src, 'tiny-unicorn.cfg'), 'password=hunter2-xylophone\n');
    fs.symlinkSync('/secret/target/platypus', path.join(src, 'link-name-kumquat'));
    await ws.ok(['init']);
    await ws.ok(['backup', src, '--tag', 'tag-name-quokka', '--host', 'host-name-wombat']);
    const needles = [
      'Quarterly-Zebra-Reports', 'confidential-marmalade', 'aardvark-periwinkle', 'hunter2-xylophone', 'tiny-unicorn',
      'platypus', 'kumquat', 'quokka', 'wombat', path.basename(ws.dir),
    ];
    const files = allFiles(ws.repo);
    expect(files.length).toBeGreaterThan(4);
    for (const f of files) {
      const bytes = fs.readFileSync(f);
      for (const n of needles) {
        expect(bytes.includes(Buffer.from(n)), `${n} found in ${path.relative(ws.repo, f)}`).toBe(false);
        expect(bytes.includes(Buffer.from(n, 'utf16le')), `${n} (UTF-16) found in ${path.relative(ws.repo, f)}`).toBe(false);
      }
    }
  });
});

describe('damage', () => {
  let ws: Workspace;
  let src: string;
  let secondPacks: string[];

  beforeAll(async () => {
    ws = workspace('damage');
    src = path.join(ws.dir, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'intact.bin'), deterministicBytes('intact', 2 * 1024 * 1024));
    await ws.ok(['init', '--pack-size', '1']);
    await ws.ok(['backup', src]);
    const before = new Set(allFiles(path.join(ws.repo, 'data')));
    fs.writeFileSync(path.join(src, 'victim.bin'), deterministicBytes('victim', 3 * 1024 * 1024));
    await ws.ok(['backup', src]);
    // The packs written by the second backup hold the victim's data (and one small tree pack).
    secondPacks = allFiles(path.join(ws.repo, 'data')).filter((f) => !before.has(f));
  });
  afterAll(() => ws.cleanup());

  it('a flipped byte in a pack fails the affected file by name, writes no corrupt data, and restores the rest', async () => {
    const biggest = secondPacks.sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0]!;
    const bytes = fs.readFileSync(biggest);
    bytes[1000] ^= 0x01;
    fs.writeFileSync(biggest, bytes);
    const target = path.join(ws.dir, 'out');
    const r = await ws.run(['restore', `latest:${src}`, '--target', target]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('victim.bin');
    expect(r.stderr).toMatch(/damaged/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(fs.existsSync(path.join(target, 'victim.bin'))).toBe(false);
    expect(fs.readdirSync(target).filter((n) => n.startsWith('.aegis-restore-'))).toEqual([]);
    expect(fs.readFileSync(path.join(target, 'intact.bin')).equals(fs.readFileSync(path.join(src, 'intact.bin')))).toBe(true);
    const dump = await ws.run(['dump', 'latest', path.join(src, 'victim.bin')]);
    expect(dump.code, dump.stderr).toBe(1);
    expect(dump.stderr).toMatch(/^aegis: blob [0-9a-f]+ in pack [0-9a-f]+ is damaged/);
  });

  it('a damaged snapshot object is named in a one-line error', async () => {
    const snapDir = path.join(ws.repo, 'snapshots');
    const name = fs.readdirSync(snapDir)[0]!;
    const p = path.join(snapDir, name);
    const copy = fs.readFileSync(p);
    const bytes = Buffer.from(copy);
    bytes[bytes.length - 3] ^= 0x80;
    fs.writeFileSync(p, bytes);
    try {
      // Read from the repository: with --no-cache, or on a machine that has not decoded it before.
      const runs: Array<[string[], NodeJS.ProcessEnv]> = [
        [['snapshots', '--no-cache'], {}],
        [['snapshots'], { AEGIS_STATE_DIR: path.join(ws.dir, 'fresh-state') }],
      ];
      for (const [args, env] of runs) {
        const r = await ws.run(args, { env });
        expect(r.code).toBe(1);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
        expect(r.stderr).toContain(`snapshots/${name}`);
        expect(r.stderr).toContain('damaged');
      }
    } finally {
      fs.writeFileSync(p, copy);
    }
  });
});

describe('deduplication and incremental backups', () => {
  let ws: Workspace;
  let src: string;
  beforeAll(async () => {
    ws = workspace('dedup');
    src = path.join(ws.dir, 'src');
    fs.mkdirSync(src);
    await ws.ok(['init']);
  });
  afterAll(() => ws.cleanup());

  it('stores the same data under two names once, and a copy with bytes inserted mid-file adds little', async () => {
    const data = deterministicBytes('dedup', 24 * 1024 * 1024);
    fs.writeFileSync(path.join(src, 'one.bin'), data);
    fs.writeFileSync(path.join(src, 'two.bin'), data);
    const first = lastJson((await ws.ok(['backup', src, '--json'])).stdout);
    expect(first.bytes_read).toBe(2 * data.length);
    expect(first.data_added).toBe(data.length);
    const mid = 11 * 1024 * 1024 + 12345;
    fs.writeFileSync(path.join(src, 'three.bin'), Buffer.concat([data.subarray(0, mid), Buffer.from('a few inserted bytes'), data.subarray(mid)]));
    const second = lastJson((await ws.ok(['backup', src, '--json'])).stdout);
    expect(second.files_new).toBe(1);
    expect(second.files_unmodified).toBe(2);
    // Content-defined chunking: only the chunk(s) around the insertion are new (max chunk is 8 MiB).
    expect(second.data_added).toBeLessThan(9 * 1024 * 1024);
    expect(second.data_added).toBeGreaterThan(0);
  });

  it('an unchanged second backup reads no file contents', async () => {
    const r = lastJson((await ws.ok(['backup', src, '--json'])).stdout);
    expect(r.files_read).toBe(0);
    expect(r.bytes_read).toBe(0);
    expect(r.data_added).toBe(0);
    expect(r.files_unmodified).toBe(3);
  });

  it('a file named on the command line is not read again while unchanged, and is read once it changes', async () => {
    const file = path.join(src, 'one.bin');
    const first = lastJson((await ws.ok(['backup', file, '--json'])).stdout);
    expect(first.files_read + first.files_unmodified).toBe(1);
    const again = lastJson((await ws.ok(['backup', file, '--json'])).stdout);
    expect(again.files_read).toBe(0);
    expect(again.files_unmodified).toBe(1);
    const t = new Date('2020-01-02T03:04:05Z');
    fs.utimesSync(file, t, t);
    const touched = lastJson((await ws.ok(['backup', file, '--json'])).stdout);
    expect(touched.files_read).toBe(1);
    expect(touched.files_changed).toBe(1);
    expect(touched.files_new).toBe(0);
    expect(touched.data_added).toBe(0);
  });

  it('deleting the local state database only makes the next backup read again, never wrong', async () => {
    fs.rmSync(ws.env.AEGIS_STATE_DIR!, { recursive: true, force: true });
    const r = lastJson((await ws.ok(['backup', src, '--json'])).stdout);
    expect(r.files_read).toBe(3);
    expect(r.data_added).toBe(0);
    const target = path.join(ws.dir, 'restored');
    await ws.ok(['restore', `latest:${src}`, '--target', target, '--verify']);
    for (const n of ['one.bin', 'two.bin', 'three.bin']) {
      expect(fs.readFileSync(path.join(target, n)).equals(fs.readFileSync(path.join(src, n)))).toBe(true);
    }
  });

  it('diff reports exactly what changed between two snapshots', async () => {
    fs.writeFileSync(path.join(src, 'two.bin'), 'now small');
    fs.rmSync(path.join(src, 'three.bin'));
    fs.writeFileSync(path.join(src, 'four.txt'), 'new');
    fs.chmodSync(path.join(src, 'one.bin'), 0o600);
    await ws.ok(['backup', src]);
    const snaps = JSON.parse((await ws.ok(['snapshots', '--json'])).stdout);
    const a = snaps[snaps.length - 2].short_id;
    const b = snaps[snaps.length - 1].short_id;
    const out = (await ws.ok(['diff', a, b])).stdout;
    // The workspace directory above src changed too (the test made a restore target in it).
    const lines = out.split('\n').filter((l) => /^[+\-MTU] /.test(l) && l.includes(src));
    expect(lines.sort(), out).toEqual([`+    ${src}/four.txt`, `-    ${src}/three.bin`, `M    ${src}/two.bin`, `U    ${src}/`, `U    ${src}/one.bin`].sort());
  });
});
