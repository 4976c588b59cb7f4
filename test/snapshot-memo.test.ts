import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Repository } from '../src/repo/repository.js';
import { type Snapshot } from '../src/snapshot/snapshot.js';
import { SnapshotMemoFile } from '../src/state/snapshot-memo.js';
import { STALE_AFTER_MS } from '../src/state/state-dir.js';
import { RequestCounter } from '../src/storage/counting.js';
import { openStorage } from '../src/storage/open.js';
import { workspace, type Workspace } from './helpers/cli.js';

const PASSWORD = 'memo test';

function snapshot(i: number): Snapshot {
  return {
    time: new Date(Date.UTC(2026, 0, 1, i)).toISOString(),
    tree: 'ab'.repeat(32),
    paths: [`/home/me/${i}`],
    hostname: 'laptop',
    username: 'me',
    uid: 1000,
    gid: 1000,
    tags: i % 2 ? ['odd'] : [],
    program_version: 'test',
  };
}

describe('decoded snapshots remembered between runs', () => {
  let dir: string;
  let repoDir: string;
  let stateDir: string;
  let repoId: string;
  const ids: string[] = [];

  /** The repository opened afresh (a new run), with its gets counted and a memo in `stateDir`. */
  async function run(memo = true): Promise<{ repo: Repository; counter: RequestCounter }> {
    const counter = new RequestCounter();
    const repo = await Repository.open(await openStorage(repoDir, { countRequests: counter, noCache: true }), PASSWORD);
    if (memo) repo.snapshotMemo = new SnapshotMemoFile(stateDir, repo.config.id);
    counter.reset();
    return { repo, counter };
  }

  async function listed(memo = true): Promise<{ times: string[]; gets: number }> {
    const { repo, counter } = await run(memo);
    try {
      const all = await repo.listSnapshots();
      for (const e of all) expect(e.snapshot.paths).toEqual([`/home/me/${new Date(e.snapshot.time).getUTCHours()}`]);
      return { times: all.map((e) => e.snapshot.time), gets: counter.snapshot().get };
    } finally {
      await repo.close();
    }
  }

  const memoFile = (): string => path.join(stateDir, 'snapshots', `${repoId}.json`);

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-memo-'));
    repoDir = path.join(dir, 'repo');
    stateDir = path.join(dir, 'state');
    const repo = await Repository.init(await openStorage(repoDir, { noCache: true }), PASSWORD);
    repoId = repo.config.id;
    for (let i = 0; i < 6; i++) ids.push(await repo.saveSnapshot(snapshot(i)));
    await repo.close();
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads each snapshot once: a later run lists them without reading any', async () => {
    const first = await listed();
    expect(first.gets).toBe(6);
    expect(first.times).toHaveLength(6);
    expect(fs.statSync(memoFile()).mode & 0o777).toBe(0o600);
    const second = await listed();
    expect(second.gets).toBe(0);
    expect(second.times).toEqual(first.times);
    // Without the memo (--no-cache), every snapshot is read again, and the same come back.
    const without = await listed(false);
    expect(without.gets).toBe(6);
    expect(without.times).toEqual(first.times);
  });

  it('reads only a new snapshot, and forgets one removed from the repository', async () => {
    const { repo } = await run();
    const added = await repo.saveSnapshot(snapshot(7));
    await repo.storage.delete(`snapshots/${ids[0]}`);
    await repo.close();
    const after = await listed();
    expect(after.gets).toBe(1);
    expect(after.times).toHaveLength(6);
    expect(after.times).not.toContain(snapshot(0).time);
    expect(after.times).toContain(snapshot(7).time);
    const text = fs.readFileSync(memoFile(), 'utf8');
    expect(text).toContain(added);
    expect(text).not.toContain(ids[0]);
    expect((await listed()).gets).toBe(0);
  });

  it('ignores a damaged or truncated memo, or one of another repository, and writes a good one', async () => {
    const good = fs.readFileSync(memoFile());
    const damaged = Buffer.from(good);
    damaged[damaged.indexOf('laptop')] ^= 0x01;
    const otherRepo = Buffer.from(good.toString('utf8').replace(`"repo":"${repoId}"`, `"repo":"${'0'.repeat(64)}"`));
    for (const [what, bytes] of [
      ['a flipped byte', damaged],
      ['torn', good.subarray(0, good.length >> 1)],
      ['another repository', otherRepo],
      ['empty', Buffer.alloc(0)],
    ] as const) {
      fs.writeFileSync(memoFile(), bytes);
      const again = await listed();
      expect(again.gets, what).toBe(6);
      expect(again.times, what).toHaveLength(6);
      expect((await listed()).gets, what).toBe(0);
    }
  });
});

describe('memo file names', () => {
  it('are made only from repository IDs as init writes them, never from a path', () => {
    expect(SnapshotMemoFile.canName('ab'.repeat(32))).toBe(true);
    for (const id of ['../../etc/passwd', 'AB'.repeat(32), 'ab'.repeat(31), '', `${'ab'.repeat(32)}/x`]) {
      expect(SnapshotMemoFile.canName(id)).toBe(false);
      expect(() => new SnapshotMemoFile('/tmp', id)).toThrow(/not a repository ID/);
    }
  });
});

describe('memo files of repositories no longer used', () => {
  it('are removed when another is written, once untouched for STALE_AFTER_MS', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-memo-stale-'));
    try {
      const memoDir = path.join(dir, 'snapshots');
      fs.mkdirSync(memoDir, { recursive: true });
      const old = path.join(memoDir, `${'1'.repeat(64)}.json`);
      const recent = path.join(memoDir, `${'2'.repeat(64)}.json`);
      fs.writeFileSync(old, 'x');
      fs.writeFileSync(recent, 'x');
      const longAgo = new Date(Date.now() - STALE_AFTER_MS - 3600_000);
      fs.utimesSync(old, longAgo, longAgo);
      const lastWeek = new Date(Date.now() - 7 * 24 * 3600_000);
      fs.utimesSync(recent, lastWeek, lastWeek);
      const memo = new SnapshotMemoFile(dir, '3'.repeat(64));
      await memo.save(new Map([['snapshots/' + 'a'.repeat(64), snapshot(1)]]));
      expect(fs.readdirSync(memoDir).sort()).toEqual([path.basename(recent), `${'3'.repeat(64)}.json`]);
      expect((await new SnapshotMemoFile(dir, '3'.repeat(64)).load()).get('snapshots/' + 'a'.repeat(64))).toEqual(snapshot(1));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('aegis commands use the memo', () => {
  let ws: Workspace;
  beforeAll(() => {
    ws = workspace('memo-cli');
  });
  afterAll(() => ws.cleanup());

  it('lists the same snapshots with and without it, and reads none again on the second run', async () => {
    const src = path.join(ws.dir, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'a'), 'one');
    await ws.ok(['init']);
    await ws.ok(['backup', src]);
    fs.writeFileSync(path.join(src, 'a'), 'two');
    await ws.ok(['backup', src]);
    const counts = path.join(ws.dir, 'counts.json');
    const gets = async (args: string[]): Promise<{ out: string; gets: number }> => {
      const r = await ws.ok(args, { env: { AEGIS_COUNT_REQUESTS: counts } });
      return { out: r.stdout, gets: (JSON.parse(fs.readFileSync(counts, 'utf8')) as { get: number }).get };
    };
    // The second backup listed (and remembered) the first snapshot, not the one it wrote.
    const first = await gets(['snapshots', '--json']);
    const withMemo = await gets(['snapshots', '--json']);
    const noCache = await gets(['snapshots', '--json', '--no-cache']);
    expect(JSON.parse(withMemo.out)).toHaveLength(2);
    expect(withMemo.out).toBe(first.out);
    expect(withMemo.out).toBe(noCache.out);
    expect(first.gets - withMemo.gets).toBe(1);
    expect(noCache.gets - withMemo.gets).toBe(2);
  });
});
