import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { backup } from '../src/engine/backup.js';
import { nativeScanDir, setNativeScanDir } from '../src/engine/dirscan.js';
import { Repository } from '../src/repo/repository.js';
import { type TreeNode } from '../src/snapshot/tree.js';
import { LocalStorage } from '../src/storage/local.js';
import { saveEnv } from './helpers/env.js';

/**
 * Whoever can write a directory being backed up (as root, say) may swap a
 * directory for a symlink between the scan that found it and the reads of what
 * is under it. The backup must then leave that part out, never read through
 * the symlink. The swaps happen at exact points of the walk: the scan function
 * is wrapped to make them right after a given directory was scanned.
 */
describe('paths swapped during a backup', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-swap-'));
  const src = path.join(dir, 'src');
  const secret = path.join(dir, 'secret');
  const restoreStateDir = saveEnv('AEGIS_STATE_DIR');
  const realScan = nativeScanDir()!;
  let repo: Repository;
  let runs = 0;

  beforeAll(async () => {
    repo = await Repository.init(new LocalStorage(path.join(dir, 'repo')), 'pw');
  });
  beforeEach(() => {
    fs.rmSync(src, { recursive: true, force: true });
    fs.rmSync(secret, { recursive: true, force: true });
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(src, 'sub', 'file.txt'), 'mine\n');
    fs.writeFileSync(path.join(src, 'top.txt'), 'top\n');
    fs.mkdirSync(secret);
    fs.writeFileSync(path.join(secret, 'file.txt'), 'SECRET CONTENT\n');
    fs.writeFileSync(path.join(secret, 'other.txt'), 'SECRET TOO\n');
    process.env.AEGIS_STATE_DIR = path.join(dir, `state-${runs++}`);
  });
  afterEach(() => setNativeScanDir(undefined));
  afterAll(async () => {
    await repo.close();
    restoreStateDir();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Once `after` has been scanned, replace src/sub by a symlink to the secret directory. */
  function swapSubAfterScanning(after: string): void {
    let done = false;
    setNativeScanDir((p, dev, ino) => {
      const result = realScan(p, dev, ino);
      if (!done && p.toString() === after) {
        done = true;
        fs.renameSync(path.join(src, 'sub'), path.join(dir, `sub-moved-${runs}`));
        fs.symlinkSync(secret, path.join(src, 'sub'));
      }
      return result;
    });
  }

  async function names(treeId: string, under: string[]): Promise<string[]> {
    let nodes: TreeNode[] = (await repo.loadTree(treeId)).nodes;
    for (const part of under) nodes = (await repo.loadTree(nodes.find((n) => n.name.toString() === part)!.subtree!)).nodes;
    return nodes.map((n) => n.name.toString()).sort();
  }

  const srcParts = src.split('/').filter(Boolean);

  it('leaves out a directory swapped for a symlink after its parent was scanned', async () => {
    swapSubAfterScanning(src);
    const r = await backup(repo, { paths: [src], threads: 1 });
    expect(r.warnings.map((w) => w.message)).toEqual([`${path.join(src, 'sub')}: is now a symbolic link, not the directory the scan found; left out`]);
    expect(r.summary.errors).toBe(1);
    expect(await names(r.snapshot.tree, srcParts)).toEqual(['top.txt']);
    expect(r.summary.files_read).toBe(1);
  });

  it('leaves out a file whose directory was swapped for a symlink after it was scanned', async () => {
    swapSubAfterScanning(path.join(src, 'sub'));
    const r = await backup(repo, { paths: [src], threads: 1 });
    expect(r.warnings.map((w) => w.message)).toEqual([`${path.join(src, 'sub', 'file.txt')}: is now another file, not the regular file the scan found; left out`]);
    // The directory was listed before the swap, so it is kept, without the file read through the symlink.
    expect(await names(r.snapshot.tree, srcParts)).toEqual(['sub', 'top.txt']);
    expect(await names(r.snapshot.tree, [...srcParts, 'sub'])).toEqual([]);
    expect(r.summary.bytes_read).toBe(4);
  });

  it('the native scan refuses a symlink, and a directory that is not the one its parent recorded', () => {
    fs.symlinkSync(secret, path.join(src, 'link'));
    expect(realScan(Buffer.from(path.join(src, 'link')))).toBeLessThan(0);
    const st = fs.statSync(path.join(src, 'sub'), { bigint: true });
    expect(realScan(Buffer.from(path.join(src, 'sub')), st.dev, st.ino)).toBeInstanceOf(Buffer);
    expect(realScan(Buffer.from(path.join(src, 'sub')), st.dev, st.ino + 1n)).toBe(-116); // -ESTALE
  });
});
