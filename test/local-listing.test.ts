import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { nativeScanDir, setNativeScanDir } from '../src/native/dir-records.js';
import { LocalStorage } from '../src/storage/local.js';
import { collectList } from '../src/storage/storage.js';

/**
 * The local backend lists a directory with the addon's scanDir (names and sizes
 * in one call) and falls back to Node's readdir and stat: both must give the
 * same objects, including where the addon refuses (a directory that is a
 * symlink, which scanDir does not follow).
 */
describe('local backend listing', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-local-list-'));
  const repo = path.join(dir, 'repo');
  const names: string[] = [];
  let storage: LocalStorage;

  beforeAll(async () => {
    storage = new LocalStorage(repo);
    for (let i = 0; i < 40; i++) {
      const id = crypto.randomBytes(32).toString('hex');
      names.push(`data/${id.slice(0, 2)}/${id}`, `snapshots/${id}`);
    }
    for (const [i, n] of names.entries()) await storage.put(n, Buffer.alloc(i + 1, 7));
    // Not objects: a temporary file and a symlink.
    fs.writeFileSync(path.join(repo, 'snapshots', '.tmp-half-written'), 'x');
    fs.symlinkSync(path.join(repo, 'config-elsewhere'), path.join(repo, 'snapshots', 'a-link'));
    fs.mkdirSync(path.join(dir, 'index-elsewhere'));
    fs.writeFileSync(path.join(dir, 'index-elsewhere', 'ab'.repeat(32)), 'index bytes');
    fs.symlinkSync(path.join(dir, 'index-elsewhere'), path.join(repo, 'index'));
  });
  afterEach(() => setNativeScanDir(undefined));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const listing = async (prefix: string) => (await collectList(storage, prefix)).sort((a, b) => a.name.localeCompare(b.name));

  it('gives the same names and sizes through the addon and through Node', async () => {
    const expected = names.map((name, i) => ({ name, size: i + 1 })).sort((a, b) => a.name.localeCompare(b.name));
    // Counted, so that an addon that failed (and let Node's calls do the listing) cannot pass for one that works.
    const scan = nativeScanDir()!;
    let scanned = 0;
    setNativeScanDir((p, dev, ino) => {
      const r = scan(p, dev, ino);
      if (r instanceof Buffer) scanned++;
      return r;
    });
    const viaAddon = { data: await listing('data/'), snapshots: await listing('snapshots/') };
    // data/ and its 2-hex subdirectories, and snapshots/.
    expect(scanned).toBeGreaterThan(2);
    setNativeScanDir(null);
    const viaNode = { data: await listing('data/'), snapshots: await listing('snapshots/') };
    expect(viaAddon).toEqual(viaNode);
    expect([...viaAddon.data, ...viaAddon.snapshots].sort((a, b) => a.name.localeCompare(b.name))).toEqual(expected);
  });

  it('lists a directory that is a symlink (as Node does) and a missing one as empty', async () => {
    expect(await listing('index/')).toEqual([{ name: `index/${'ab'.repeat(32)}`, size: 11 }]);
    expect(await listing('locks/')).toEqual([]);
  });
});
