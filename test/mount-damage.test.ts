import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packName } from '../src/repo/layout.js';
import { Repository } from '../src/repo/repository.js';
import { openStorage } from '../src/storage/open.js';
import { type Workspace, workspace } from './helpers/cli.js';
import { type MountProcess, forceUnmount, startMount, waitFor, errnoOf } from './helpers/mount.js';
import { deterministicBytes } from './helpers/tree.js';

/** The first data blob of `file` in the latest snapshot, and its pack. */
async function firstBlobOf(ws: Workspace, file: string): Promise<{ blob: string; pack: string }> {
  const repo = await Repository.open(await openStorage(ws.repo, {}), ws.env.AEGIS_PASSWORD!);
  try {
    await repo.loadIndex();
    const snaps = await repo.listSnapshots();
    snaps.sort((a, b) => a.snapshot.time.localeCompare(b.snapshot.time));
    let treeId = snaps[snaps.length - 1]!.snapshot.tree;
    const parts = file.split('/').filter(Boolean);
    for (const part of parts.slice(0, -1)) treeId = (await repo.loadTree(treeId)).nodes.find((n) => n.name.toString() === part)!.subtree!;
    const node = (await repo.loadTree(treeId)).nodes.find((n) => n.name.toString() === parts[parts.length - 1])!;
    const blob = node.content![0]!;
    return { blob, pack: repo.index.get(blob)!.packId };
  } finally {
    await repo.close();
  }
}

/** Flip one byte in the middle of the stored blob of `file` (its first data blob, or its directory's tree). */
async function damage(ws: Workspace, file: string, what: 'data' | 'tree'): Promise<{ blob: string; pack: string }> {
  const repo = await Repository.open(await openStorage(ws.repo, {}), ws.env.AEGIS_PASSWORD!);
  try {
    await repo.loadIndex();
    const snaps = await repo.listSnapshots();
    let treeId = snaps[snaps.length - 1]!.snapshot.tree;
    const parts = file.split('/').filter(Boolean);
    for (const part of parts.slice(0, -1)) {
      const tree = await repo.loadTree(treeId);
      treeId = tree.nodes.find((n) => n.name.toString() === part)!.subtree!;
    }
    const tree = await repo.loadTree(treeId);
    const node = tree.nodes.find((n) => n.name.toString() === parts[parts.length - 1])!;
    const blob = what === 'data' ? node.content![0]! : node.subtree!;
    const loc = repo.index.get(blob)!;
    const packFile = path.join(ws.repo, packName(loc.packId));
    const fd = fs.openSync(packFile, 'r+');
    const at = loc.offset + Math.floor(loc.length / 2);
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, at);
    fs.closeSync(fd);
    return { blob, pack: loc.packId };
  } finally {
    await repo.close();
  }
}


describe('aegis mount: damaged blobs', () => {
  let ws: Workspace;
  let src: string;
  let mnt: string;
  let m: MountProcess | undefined;
  let snap: string;
  let dataHit: { blob: string; pack: string };
  let treeHit: { blob: string; pack: string };
  let gone: { dir: string; snapshot: string; pack: string };
  const badSnapshot = 'e'.repeat(64);
  let firstShort: string;

  beforeAll(async () => {
    ws = workspace('mount-damage');
    src = path.join(ws.dir, 'source');
    fs.mkdirSync(path.join(src, 'listed'), { recursive: true });
    fs.writeFileSync(path.join(src, 'hit.bin'), deterministicBytes('hit', 300_000));
    fs.writeFileSync(path.join(src, 'fine.bin'), deterministicBytes('fine', 300_000));
    fs.writeFileSync(path.join(src, 'listed', 'inside.txt'), 'inside\n');
    fs.writeFileSync(path.join(src, 'also-fine.txt'), 'also fine\n');
    mnt = path.join(ws.dir, 'mnt');
    await ws.ok(['init']);
    const first = JSON.parse((await ws.ok(['backup', '--json', src])).stdout.trim().split('\n').at(-1)!) as { snapshot_id: string };
    dataHit = await damage(ws, path.join(src, 'hit.bin'), 'data');
    treeHit = await damage(ws, path.join(src, 'listed'), 'tree');
    // A file whose pack is then lost: backed up on its own, its data blob is alone in a new pack.
    const goneDir = path.join(ws.dir, 'gone');
    fs.mkdirSync(goneDir);
    fs.writeFileSync(path.join(goneDir, 'gone.bin'), deterministicBytes('gone', 300_000));
    const before = new Set(fs.readdirSync(path.join(ws.repo, 'data'), { recursive: true }).map(String));
    const summary = JSON.parse((await ws.ok(['backup', '--json', goneDir])).stdout.trim().split('\n').at(-1)!) as { snapshot_id: string };
    const blob = await firstBlobOf(ws, path.join(goneDir, 'gone.bin'));
    const packFile = path.join(ws.repo, packName(blob.pack));
    expect(before.has(path.relative(path.join(ws.repo, 'data'), packFile))).toBe(false);
    fs.rmSync(packFile);
    gone = { dir: goneDir, snapshot: summary.snapshot_id.slice(0, 8), pack: blob.pack };
    // A snapshot object that does not open: a real one's bytes under another name (its name is authenticated).
    const snapshotsDir = path.join(ws.repo, 'snapshots');
    fs.copyFileSync(path.join(snapshotsDir, first.snapshot_id), path.join(snapshotsDir, badSnapshot));
    m = await startMount(ws, mnt);
    firstShort = first.snapshot_id.slice(0, 8);
    snap = path.join(mnt, 'ids', firstShort, src);
  });

  afterAll(async () => {
    await m?.stop();
    await forceUnmount(mnt);
    ws?.cleanup();
  });

  it('fails reads of the damaged file with EIO and names the file and the blob on stderr', async () => {
    expect(errnoOf(() => fs.readFileSync(path.join(snap, 'hit.bin')))).toBe('EIO');
    // Again: a damaged blob is never cached as good.
    expect(errnoOf(() => fs.readFileSync(path.join(snap, 'hit.bin')))).toBe('EIO');
    const line = await waitFor('the log line', () => m!.stderr().split('\n').find((l) => l.includes(dataHit.blob)));
    expect(line).toContain(path.join(src, 'hit.bin'));
    expect(line).toContain(dataHit.pack);
    expect(line).toMatch(/^aegis mount: cannot read \/ids\/.*hit\.bin: blob [0-9a-f]{64} in pack [0-9a-f]{64} is damaged: authentication failed$/);
    // Metadata is intact: the file is still listed with its size.
    expect(fs.statSync(path.join(snap, 'hit.bin')).size).toBe(300_000);
  });

  it('keeps everything else working', () => {
    expect(fs.readFileSync(path.join(snap, 'fine.bin')).equals(deterministicBytes('fine', 300_000))).toBe(true);
    expect(fs.readFileSync(path.join(snap, 'also-fine.txt'), 'utf8')).toBe('also fine\n');
    expect(fs.readdirSync(snap).sort()).toEqual(['also-fine.txt', 'fine.bin', 'hit.bin', 'listed']);
  });

  it('a file whose pack is missing gives EIO, and the log says the pack is missing', async () => {
    const file = path.join(mnt, 'ids', gone.snapshot, gone.dir, 'gone.bin');
    expect(fs.statSync(file).size).toBe(300_000);
    expect(errnoOf(() => fs.readFileSync(file))).toBe('EIO');
    const line = await waitFor('the log line', () => m!.stderr().split('\n').find((l) => l.includes(gone.pack)));
    expect(line).toMatch(/^aegis mount: cannot read \/ids\/.*gone\.bin: blob [0-9a-f]{64} in pack [0-9a-f]{64} is damaged: its pack is missing$/);
    expect(fs.readFileSync(path.join(snap, 'fine.bin')).equals(deterministicBytes('fine', 300_000))).toBe(true);
  });

  it('leaves out a snapshot that cannot be opened, names it in the log, and shows the others', async () => {
    const line = await waitFor('the log line', () => m!.stderr().split('\n').find((l) => l.includes(`snapshot ${badSnapshot.slice(0, 8)}`)));
    expect(line).toMatch(/^aegis mount: snapshot eeeeeeee cannot be read and is not shown: .*snapshots\/e{64}.*/);
    expect(fs.readdirSync(path.join(mnt, 'ids')).sort()).toEqual([firstShort, gone.snapshot].sort());
    expect(fs.readFileSync(path.join(snap, 'also-fine.txt'), 'utf8')).toBe('also fine\n');
  });

  it('a damaged directory listing gives EIO for that directory only', async () => {
    expect(errnoOf(() => fs.readdirSync(path.join(snap, 'listed')))).toBe('EIO');
    expect(errnoOf(() => fs.readFileSync(path.join(snap, 'listed', 'inside.txt')))).toBe('EIO');
    const line = await waitFor('the log line', () => m!.stderr().split('\n').find((l) => l.includes(treeHit.blob)));
    expect(line).toMatch(/^aegis mount: readdir \/ids\/.*\/listed: tree blob [0-9a-f]{64} in pack [0-9a-f]{64} is damaged: authentication failed$/);
    expect(line).toContain(treeHit.pack);
    expect(fs.readFileSync(path.join(snap, 'also-fine.txt'), 'utf8')).toBe('also fine\n');
    expect(fs.existsSync(path.join(mnt, 'snapshots'))).toBe(true);
  });
});
