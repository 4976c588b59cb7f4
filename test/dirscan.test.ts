import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type BackupResult, backup } from '../src/engine/backup.js';
import { DevStrings, REC, nativeScanDir, nodeFromRecord, recordType, setNativeScanDir } from '../src/engine/dirscan.js';
import { nodeFromStat, nodeType } from '../src/engine/fsmeta.js';
import { Repository } from '../src/repo/repository.js';
import { LocalStorage } from '../src/storage/local.js';
import { nativeSyscalls } from '../src/native/syscalls.js';
import { openStateDb } from '../src/state/statedb.js';
import { WorkerPool } from '../src/workers/pool.js';
import { MEMO_HEADER, RECORDS_LENGTH_AT, TreeMemo } from '../src/state/treememo.js';
import { NON_UTF8, makeGnarlyTree } from './helpers/tree.js';
import { saveEnv } from './helpers/env.js';

interface Entry {
  name: Buffer;
  r: number;
}

function entries(buf: Buffer): Entry[] {
  const out: Entry[] = [];
  for (let o = 0; o < buf.length; ) {
    const n = buf.readUInt16LE(o);
    out.push({ name: buf.subarray(o + 2, o + 2 + n), r: o + 2 + n });
    o += 2 + n + REC.LENGTH;
  }
  return out;
}

const scan = nativeScanDir()!;

describe('native directory scan', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-dirscan-'));
  const src = path.join(dir, 'tree');
  beforeAll(() => makeGnarlyTree(src, { sparse: false }));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is built', () => {
    expect(typeof scan).toBe('function');
  });

  it("lists what readdir lists and makes the same tree nodes as Node's lstat, names that are not UTF-8 included", () => {
    let checked = 0;
    const visit = (d: Buffer) => {
      const buf = scan(d);
      expect(buf).toBeInstanceOf(Buffer);
      const got = entries(buf as Buffer);
      const names = (fs.readdirSync(d, { encoding: 'buffer' }) as Buffer[]).map((n) => n.toString('latin1')).sort();
      expect(got.map((e) => e.name.toString('latin1')).sort()).toEqual(names);
      const devs = new DevStrings();
      for (const { name, r } of got) {
        const p = Buffer.concat([d, Buffer.from('/'), name]);
        const st = fs.lstatSync(p, { bigint: true });
        const b = buf as Buffer;
        expect(b.readUInt32LE(r + REC.ERRNO)).toBe(0);
        const type = recordType(b, r);
        expect(type).toBe(nodeType(st));
        expect(nodeFromRecord(Buffer.from(name), b, r, type!, devs.of(b, r))).toEqual(nodeFromStat(Buffer.from(name), st, type!));
        // The 32 bytes the file cache compares: size, mtime, ctime, inode.
        expect(b.readBigUInt64LE(r + REC.SIZE)).toBe(st.size);
        expect(b.readBigInt64LE(r + REC.MTIME)).toBe(st.mtimeNs);
        expect(b.readBigInt64LE(r + REC.CTIME)).toBe(st.ctimeNs);
        expect(b.readBigUInt64LE(r + REC.INO)).toBe(st.ino);
        checked++;
        if (type === 'dir') visit(p);
      }
    };
    visit(Buffer.from(src));
    expect(checked).toBeGreaterThan(60);
    const top = entries(scan(Buffer.from(src)) as Buffer).map((e) => e.name);
    expect(top.some((n) => n.equals(NON_UTF8))).toBe(true);
    for (const t of ['fifo', 'chardev', 'link-dangling', 'sticky']) expect(top.some((n) => n.toString() === t)).toBe(true);
  });

  it('returns -errno for a directory it cannot read', () => {
    expect(scan(Buffer.from(path.join(dir, 'missing')))).toBe(-2); // ENOENT
    expect(scan(Buffer.from(path.join(src, 'plain.txt')))).toBe(-20); // ENOTDIR
    expect(entries(scan(Buffer.from(path.join(src, 'empty-dir'))) as Buffer)).toEqual([]);
  });
});

describe('backup with the native scan', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-dirscan-backup-'));
  const src = path.join(dir, 'src');
  const restoreStateDir = saveEnv('AEGIS_STATE_DIR');
  let repo: Repository;

  beforeAll(async () => {
    process.env.AEGIS_STATE_DIR = path.join(dir, 'state');
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(src, `f${i}.txt`), `file ${i}\n`.repeat(50));
    fs.writeFileSync(path.join(src, 'sub', 'inner.txt'), 'inner\n');
    fs.writeFileSync(Buffer.concat([Buffer.from(src + '/'), NON_UTF8]), 'odd name\n');
    repo = await Repository.init(new LocalStorage(path.join(dir, 'repo')), 'pw');
  });
  afterEach(() => setNativeScanDir(undefined));
  afterAll(async () => {
    await repo.close();
    restoreStateDir();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const run = (): Promise<BackupResult> => backup(repo, { paths: [src], threads: 1 });
  /** Let the clock move past the file system's timestamp granularity before a change. */
  const tick = () => new Promise((r) => setTimeout(r, 20));

  it("gives the same snapshot tree as Node's readdir and lstat, and skips unchanged files either way", async () => {
    const first = await run();
    expect(first.summary.files_read).toBe(22);
    const native = await run();
    expect(native.summary.files_read).toBe(0);
    expect(native.summary.files_unmodified).toBe(22);
    setNativeScanDir(null);
    const withNode = await run();
    expect(withNode.summary.files_read).toBe(0);
    // src's tree, not the snapshot's: the directories above src are recorded with their times, and /tmp's move whenever another test makes a directory there.
    expect((await findDir(repo, withNode.snapshot.tree, src)).subtree).toBe((await findDir(repo, native.snapshot.tree, src)).subtree);
  });

  it('reads a file again when only its ctime changed (same size and mtime)', async () => {
    const p = path.join(src, 'f3.txt');
    const before = fs.statSync(p, { bigint: true });
    await tick();
    fs.writeFileSync(p, `FILE 3\n`.repeat(50));
    nativeSyscalls()!.utimens(Buffer.from(p), before.atimeNs, before.mtimeNs, true);
    const after = fs.statSync(p, { bigint: true });
    expect([after.size, after.mtimeNs, after.ino]).toEqual([before.size, before.mtimeNs, before.ino]);
    expect(after.ctimeNs).not.toBe(before.ctimeNs);
    const r = await run();
    expect(r.summary.files_read).toBe(1);
    expect(r.summary.files_changed).toBe(1);
    expect(r.summary.files_unmodified).toBe(21);
  });

  it('reads a file again when it was replaced by another inode with the same size and times', async () => {
    const p = path.join(src, 'f4.txt');
    const st = fs.statSync(p, { bigint: true });
    const tmp = path.join(src, 'f4.tmp');
    fs.writeFileSync(tmp, 'FILE 4\n'.repeat(50));
    nativeSyscalls()!.utimens(Buffer.from(tmp), st.atimeNs, st.mtimeNs, true);
    fs.renameSync(tmp, p);
    const now = fs.statSync(p, { bigint: true });
    expect([now.size, now.mtimeNs]).toEqual([st.size, st.mtimeNs]);
    expect(now.ino).not.toBe(st.ino);
    const r = await run();
    expect(r.summary.files_read).toBe(1);
    expect(r.summary.files_changed).toBe(1);
  });

  it('warns about an entry that vanished between the listing and its lstat, and leaves it out', async () => {
    const gone = path.join(src, 'gone.txt');
    fs.writeFileSync(gone, 'here for a moment\n');
    const real = nativeScanDir()!;
    setNativeScanDir((p) => {
      const buf = real(p);
      if (typeof buf === 'number' || p.toString() !== src) return buf;
      // The listing had it; it is removed before the lstat: what the scan reports then.
      const e = entries(buf).find((x) => x.name.toString() === 'gone.txt')!;
      buf.fill(0, e.r, e.r + REC.LENGTH);
      buf.writeUInt32LE(2, e.r + REC.ERRNO); // ENOENT
      fs.rmSync(gone);
      return buf;
    });
    const r = await run();
    expect(r.warnings.map((w) => [w.path, w.kind])).toEqual([[gone, 'vanished']]);
    expect(r.summary.errors).toBe(1);
    const tree = await repo.loadTree((await findDir(repo, r.snapshot.tree, src)).subtree!);
    expect(tree.nodes.map((n) => n.name.toString())).not.toContain('gone.txt');
    expect(tree.nodes.map((n) => n.name.toString())).toContain('f0.txt');
  });

  it('warns about a file that vanished after its lstat, before it was read', async () => {
    const gone = path.join(src, 'gone2.txt');
    fs.writeFileSync(gone, 'here for a moment\n');
    const real = nativeScanDir()!;
    setNativeScanDir((p) => {
      const buf = real(p);
      if (p.toString() === src) fs.rmSync(gone);
      return buf;
    });
    const r = await run();
    expect(r.warnings.map((w) => [w.path, w.kind])).toEqual([[gone, 'vanished']]);
  });

  it('an entry whose lstat fails but which is there again is backed up', async () => {
    const real = nativeScanDir()!;
    setNativeScanDir((p) => {
      const buf = real(p);
      if (typeof buf === 'number' || p.toString() !== src) return buf;
      const e = entries(buf).find((x) => x.name.toString() === 'f5.txt')!;
      buf.writeUInt32LE(13, e.r + REC.ERRNO); // EACCES, say, for that one moment
      return buf;
    });
    const r = await run();
    expect(r.warnings).toEqual([]);
    expect(r.summary.files_unmodified).toBe(22);
  });
});

async function findDir(repo: Repository, root: string, p: string) {
  let subtree = root;
  let node;
  for (const part of p.split('/').filter(Boolean)) {
    const tree = await repo.loadTree(subtree);
    node = tree.nodes.find((n) => n.name.toString() === part)!;
    subtree = node.subtree!;
  }
  return node!;
}

describe('reusing the trees of unchanged directories', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-treememo-'));
  const src = path.join(dir, 'src');
  const restoreStateDir = saveEnv('AEGIS_STATE_DIR');
  const state = path.join(dir, 'state');
  let repo: Repository;
  let fresh = 0;

  beforeAll(async () => {
    process.env.AEGIS_STATE_DIR = state;
    const w = (p: string, s: string) => {
      fs.mkdirSync(path.dirname(path.join(src, p)), { recursive: true });
      fs.writeFileSync(path.join(src, p), s);
    };
    for (let i = 0; i < 5; i++) w(`a/a${i}.txt`, `a ${i}\n`.repeat(30));
    for (let i = 0; i < 5; i++) w(`a/deep/er/x${i}.txt`, `x ${i}\n`.repeat(30));
    for (let i = 0; i < 5; i++) w(`b/b${i}.txt`, `b ${i}\n`.repeat(30));
    w('b/z.skip', 'skip me\n');
    w('top.txt', 'top\n');
    fs.symlinkSync('a/a1.txt', path.join(src, 'link'));
    fs.mkdirSync(path.join(src, 'empty'));
    repo = await Repository.init(new LocalStorage(path.join(dir, 'repo')), 'pw');
  });
  afterEach(() => {
    setNativeScanDir(undefined);
    vi.restoreAllMocks();
  });
  afterAll(async () => {
    await repo.close();
    restoreStateDir();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The tree of `src` in a snapshot. */
  const srcTree = async (r: BackupResult) => (await findDir(repo, r.snapshot.tree, src)).subtree!;
  const run = (excludes?: string[]) => backup(repo, { paths: [src], threads: 1, excludes });
  /** Twice: the first run's reads and listings may move atimes, which trees record. */
  const settled = async (excludes?: string[]) => {
    await run(excludes);
    return run(excludes);
  };
  /** The same backup without any state (every file read) and with Node's readdir and lstat. */
  const fromScratch = async (excludes?: string[]) => {
    process.env.AEGIS_STATE_DIR = path.join(dir, `fresh-${fresh++}`);
    setNativeScanDir(null);
    try {
      return await backup(repo, { paths: [src], threads: 1, excludes });
    } finally {
      setNativeScanDir(undefined);
      process.env.AEGIS_STATE_DIR = state;
    }
  };

  it('an unchanged backup reuses every directory tree and gets the tree a backup without state computes', async () => {
    const before = await settled();
    const matches = vi.spyOn(TreeMemo.prototype, 'matches');
    const encode = vi.spyOn(repo, 'encodeTree');
    const again = await run();
    // src, a, a/deep, a/deep/er, b, empty: all reused, none encoded (the directories above src have no memo).
    expect(matches.mock.results.filter((x) => x.value === true)).toHaveLength(6);
    expect(encode.mock.calls.every(([t]) => t.nodes.every((n) => n.name.toString() !== 'top.txt'))).toBe(true);
    expect(again.summary.files_unmodified).toBe(17);
    expect(again.summary.files_read).toBe(0);
    expect(again.summary.total_files_processed).toBe(before.summary.total_files_processed);
    expect(again.summary.total_bytes_processed).toBe(before.summary.total_bytes_processed);
    // The 6 directories of src and the 3 above it; of those, `/` lists /tmp with its times, which move whenever another test makes a directory there.
    const { dirs_unmodified: unmodified, dirs_changed: changed, dirs_new: added, tree_blobs: trees } = again.summary;
    expect(added).toBe(0);
    expect(unmodified + changed).toBe(9);
    expect(changed).toBeLessThanOrEqual(1);
    expect(trees).toBe(changed);
    expect(await srcTree(again)).toBe(await srcTree(before));
    vi.restoreAllMocks();
    expect(await srcTree(await fromScratch())).toBe(await srcTree(again));
  });

  it('leaves the access times of what it reads as they were, so that the next backup reuses every tree', async () => {
    await settled();
    // Older than the modification times: Linux's relatime updates such an atime on the next read or listing.
    const old = 946_684_800_000_000_000n;
    const touched = [src, path.join(src, 'a'), path.join(src, 'a/deep'), path.join(src, 'b/b1.txt')];
    for (const p of touched) nativeSyscalls()!.utimens(Buffer.from(p), old, fs.statSync(p, { bigint: true }).mtimeNs, true);
    const first = await run();
    for (const p of touched) expect(fs.statSync(p, { bigint: true }).atimeNs, p).toBe(old);
    const encode = vi.spyOn(repo, 'encodeTree');
    const again = await run();
    // No tree of src or below is encoded again: only the directories above it
    // (one entry each, the way down). Those are recorded with their times, and
    // /tmp's move whenever another test makes a directory there, which stores a
    // new tree for `/`: counting tree blobs alone failed under the full suite.
    const above = src.split('/').filter(Boolean);
    expect(encode.mock.calls.length).toBeGreaterThan(0);
    for (const [t] of encode.mock.calls) expect(t.nodes.map((n) => n.name.toString())).toSatisfy((names: string[]) => names.length === 1 && above.includes(names[0]!));
    expect(again.summary.tree_blobs).toBeLessThan(above.length);
    expect(await srcTree(again)).toBe(await srcTree(first));
  });

  const changes: Array<[string, () => void]> = [
    [
      'a file deep down changed (same size and mtime)',
      () => {
        const p = path.join(src, 'a/deep/er/x2.txt');
        const st = fs.statSync(p, { bigint: true });
        fs.writeFileSync(p, 'X 2\n'.repeat(30));
        nativeSyscalls()!.utimens(Buffer.from(p), st.atimeNs, st.mtimeNs, true);
      },
    ],
    ['a file added and one removed', () => (fs.writeFileSync(path.join(src, 'b/new.txt'), 'new\n'), fs.rmSync(path.join(src, 'a/a3.txt')))],
    ['a symlink pointing elsewhere', () => (fs.rmSync(path.join(src, 'link')), fs.symlinkSync('b/b1.txt', path.join(src, 'link')))],
    ['a directory chmod-ed', () => fs.chmodSync(path.join(src, 'a/deep'), 0o700)],
    ['an empty directory gained a file', () => fs.writeFileSync(path.join(src, 'empty/now-not'), '')],
  ];
  for (const [what, change] of changes) {
    it(`${what}: the tree is the one a backup without state computes`, async () => {
      const before = await settled();
      await new Promise((r) => setTimeout(r, 20));
      change();
      const after = await settled();
      expect(await srcTree(after)).not.toBe(await srcTree(before));
      expect(await srcTree(await fromScratch())).toBe(await srcTree(after));
    });
  }

  it('a file excluded now is left out, although its directory is unchanged', async () => {
    const before = await settled();
    const names = async (r: BackupResult) => (await repo.loadTree((await findDir(repo, r.snapshot.tree, path.join(src, 'b'))).subtree!)).nodes.map((n) => n.name.toString());
    expect(await names(before)).toContain('z.skip');
    const excluded = await run(['*.skip']);
    expect(await names(excluded)).not.toContain('z.skip');
    expect(await srcTree(await fromScratch(['*.skip']))).toBe(await srcTree(excluded));
    // And back: the entry is there again.
    expect(await names(await run())).toContain('z.skip');
  });

  it('a file whose content is no longer in the repository is read again, though its directory is unchanged', async () => {
    const before = await settled();
    const a = await repo.loadTree((await findDir(repo, before.snapshot.tree, path.join(src, 'a'))).subtree!);
    const gone = new Set(a.nodes.find((n) => n.name.toString() === 'a1.txt')!.content!);
    const has = repo.index.has.bind(repo.index);
    const hasBytes = repo.index.hasBytes.bind(repo.index);
    // As if a prune had removed the blob (and something had let the directory's tree
    // survive), until the file is read: then it is stored again.
    const missing = [
      vi.spyOn(repo.index, 'has').mockImplementation((id) => !gone.has(id) && has(id)),
      vi.spyOn(repo.index, 'hasBytes').mockImplementation((buf, at) => !gone.has(buf.toString('hex', at, at + 32)) && hasBytes(buf, at)),
    ];
    const chunkFile = WorkerPool.prototype.chunkFile;
    vi.spyOn(WorkerPool.prototype, 'chunkFile').mockImplementation(function (this: WorkerPool, ...args) {
      for (const m of missing) m.mockRestore();
      return chunkFile.apply(this, args);
    });
    const r = await run();
    expect(r.summary.files_read).toBe(1);
    expect(r.summary.files_unmodified).toBe(before.summary.files_unmodified + before.summary.files_read - 1);
  });

  it('rows read ahead, all or only some of them, are the rows stored', () => {
    const db = openStateDb();
    try {
      const dirs = ['', '/a', '/a/deep', '/a/deep/er', '/b', '/empty'].map((d) => Buffer.from(src + d));
      const stored = dirs.map((d) => new TreeMemo(db, repo.config.id).get(d));
      expect(stored.every((m) => m !== undefined)).toBe(true);
      for (const limit of [undefined, 1, stored[1]!.length + stored[0]!.length]) {
        const memo = new TreeMemo(db, repo.config.id);
        memo.preload([src], limit);
        expect(dirs.map((d) => memo.get(d))).toEqual(stored);
        expect(dirs.map((d) => memo.get(d))).toEqual(stored); // handed out once, then read again
      }
      // A directory outside the paths read ahead is read from the database.
      const memo = new TreeMemo(db, repo.config.id);
      memo.preload([path.join(src, 'a')]);
      expect(memo.get(Buffer.from(path.join(src, 'b')))).toEqual(stored[4]);
    } finally {
      db.close();
    }
  });

  it('a row made under other account names, or from other entries, does not match', () => {
    const db = openStateDb();
    try {
      const memo = new TreeMemo(db, repo.config.id);
      const row = memo.get(Buffer.from(path.join(src, 'b')))!;
      const records = row.subarray(MEMO_HEADER, MEMO_HEADER + row.readUInt32LE(RECORDS_LENGTH_AT));
      expect(memo.matches(row, records)).toBe(true);
      expect(new TreeMemo(db, repo.config.id, Buffer.alloc(32, 7)).matches(row, records)).toBe(false);
      const other = Buffer.from(records);
      other[other.length - 1]! ^= 1;
      expect(memo.matches(row, other)).toBe(false);
      expect(memo.matches(row, records.subarray(0, records.length - 1))).toBe(false);
    } finally {
      db.close();
    }
  });
});
