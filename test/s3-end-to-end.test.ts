import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStorage } from '../src/storage/open.js';
import { type Storage, collectList } from '../src/storage/storage.js';
import { AEGIS, type RunResult, runAegis, sh } from './helpers/cli.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { s3Env, s3Location, s3Options, s3Server, uniqueBucketName } from './helpers/s3.js';
import { deterministicBytes, makeGnarlyTree } from './helpers/tree.js';
import { spawn } from 'node:child_process';

/**
 * The CLI against a real S3 server (Ceph RADOS gateway on loopback), as a user
 * runs it: init on a bucket that does not exist yet, backup, snapshots, restore
 * compared with rsync, diff, a backup killed with SIGKILL and rerun, and backups
 * and restores under injected faults (AEGIS_FAULTS in the process, and a real
 * HTTP proxy that answers 503 and resets connections).
 */
let dir: string;
let src: string;
let bucket: string;
const opened: Storage[] = [];

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-s3e2e-'));
  src = path.join(dir, 'source');
  makeGnarlyTree(src, { sparse: false });
  fs.mkdirSync(path.join(src, 'bulk'));
  for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(src, 'bulk', `part${i}.bin`), deterministicBytes(`bulk${i}`, 5 * 1024 * 1024 + i));
  bucket = uniqueBucketName('e2e');
});

afterAll(async () => {
  await Promise.all(opened.map((s) => s.close().catch(() => {})));
  fs.rmSync(dir, { recursive: true, force: true });
});

let seq = 0;

/** A repository under its own prefix of the test bucket, with its own cache and state directories. */
function repo(name: string, endpoint?: string) {
  const home = path.join(dir, `${name}-${++seq}`);
  fs.mkdirSync(home, { recursive: true });
  const location = s3Location(bucket, `${name}-${seq}`, endpoint);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: home,
    AEGIS_PASSWORD: 'correct horse battery staple',
    AEGIS_STATE_DIR: path.join(home, 'state'),
    AEGIS_CACHE_DIR: path.join(home, 'cache'),
    AEGIS_PROGRESS_INTERVAL_MS: '50',
    ...s3Env(),
  };
  const run = (args: string[], extra: NodeJS.ProcessEnv = {}): Promise<RunResult> => runAegis(['-r', location, ...args], { ...env, ...extra });
  const ok = async (args: string[], extra: NodeJS.ProcessEnv = {}): Promise<RunResult> => {
    const r = await run(args, extra);
    if (r.code !== 0) throw new Error(`aegis ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r;
  };
  /** Environment for a run that starts with an empty cache, so every read goes to the server. */
  let cold = 0;
  const uncached = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ ...extra, AEGIS_CACHE_DIR: path.join(home, `cold-cache-${++cold}`) });
  return { home, location, env, run, ok, uncached };
}

async function direct(location: string): Promise<Storage> {
  const s = await openStorage(location.replace(/^s3:http:\/\/127\.0\.0\.1:\d+/, `s3:${s3Server().endpoint}`), { ...s3Options(), noCache: true });
  opened.push(s);
  return s;
}

async function rsyncDifferences(from: string, to: string): Promise<string> {
  const r = await sh('rsync', ['-aHAXn', '--numeric-ids', '--itemize-changes', `${from}/`, `${to}/`]);
  expect(r.code).toBe(0);
  return r.stdout;
}

function summaryOf(r: RunResult): Record<string, number | string> {
  const line = r.stdout.split('\n').find((l) => l.includes('"message_type":"summary"'));
  expect(line, r.stdout).toBeDefined();
  return JSON.parse(line!);
}

/** Poll a condition that no event announces (objects appearing in a bucket). */
async function until(what: string, cond: () => Promise<boolean>, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the CLI on S3', () => {
  it('init on a bucket that does not exist creates it and says so', async () => {
    const r = repo('init');
    const res = await r.ok(['init']);
    expect(res.stderr).toContain(`created bucket "${bucket}" at ${s3Server().endpoint}`);
    const names = (await collectList(await direct(r.location), '')).map((o) => o.name);
    expect(names).toContain('config');
    expect(names.some((n) => n.startsWith('keys/'))).toBe(true);
    const again = await r.run(['init']);
    expect(again.code).not.toBe(0);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('backs up, lists, restores exactly (rsync shows nothing) and diffs', async () => {
    const r = repo('roundtrip');
    const mine = path.join(r.home, 'source');
    await sh('cp', ['-a', src, mine]);
    await r.ok(['init']);
    await r.ok(['backup', mine, '--tag', 'first']);
    const snaps = JSON.parse((await r.ok(['snapshots', '--json'])).stdout);
    expect(snaps).toHaveLength(1);
    expect(snaps[0].tags).toEqual(['first']);

    const target = path.join(r.home, 'restored');
    await r.ok(['restore', `latest:${mine}`, '--target', target]);
    expect(await rsyncDifferences(mine, target)).toBe('');

    fs.appendFileSync(path.join(mine, 'plain.txt'), 'one more line\n');
    fs.writeFileSync(path.join(mine, 'new-file.txt'), 'new\n');
    await r.ok(['backup', mine]);
    const list = JSON.parse((await r.ok(['snapshots', '--json'])).stdout) as Array<{ id: string }>;
    expect(list).toHaveLength(2);
    const diff = await r.ok(['diff', list[0]!.id, list[1]!.id]);
    expect(diff.stdout).toMatch(/^M +\S*plain\.txt$/m);
    expect(diff.stdout).toMatch(/^\+ +\S*new-file\.txt$/m);
    expect(diff.stdout).toMatch(/1 added, 0 removed, 1 modified/);
  });

  it('answers a second snapshots and a second ls without a single network request', async () => {
    const r = repo('counted');
    await r.ok(['init']);
    await r.ok(['backup', src]);
    const counts = path.join(r.home, 'requests.json');
    const requests = () => JSON.parse(fs.readFileSync(counts, 'utf8')) as { total: number; get: number; list: number };
    await r.ok(['snapshots'], { AEGIS_COUNT_REQUESTS: counts });
    const second = await r.ok(['snapshots'], { AEGIS_COUNT_REQUESTS: counts });
    expect(second.stdout).toMatch(/1 snapshot/);
    expect(requests().total).toBe(0);
    await r.ok(['ls', 'latest'], { AEGIS_COUNT_REQUESTS: counts });
    expect(requests().total).toBeGreaterThan(0);
    const ls = await r.ok(['ls', 'latest'], { AEGIS_COUNT_REQUESTS: counts });
    expect(ls.stdout).toContain('plain.txt');
    expect(requests().total).toBe(0);
    // Without its cache the same command goes to the server.
    await r.ok(['snapshots'], r.uncached({ AEGIS_COUNT_REQUESTS: counts }));
    expect(requests().total).toBeGreaterThan(0);
  });

  it('walks a snapshot of many directories with a handful of requests (tree packs are fetched whole)', async () => {
    const r = repo('many-dirs');
    const many = path.join(r.home, 'many');
    for (let i = 0; i < 200; i++) {
      fs.mkdirSync(path.join(many, `d${i}`, 'inner'), { recursive: true });
      fs.writeFileSync(path.join(many, `d${i}`, 'inner', 'f.txt'), `file ${i}\n`);
    }
    await r.ok(['init']);
    await r.ok(['backup', many]);
    const counts = path.join(r.home, 'requests.json');
    const ls = await r.ok(['ls', 'latest'], r.uncached({ AEGIS_COUNT_REQUESTS: counts }));
    expect(ls.stdout.split('\n').filter((l) => l.endsWith('/f.txt'))).toHaveLength(200);
    const { get } = JSON.parse(fs.readFileSync(counts, 'utf8')) as { get: number };
    // 400 directories' trees sit in one or two tree packs: a few GETs, not one per directory.
    expect(get).toBeLessThan(20);
  });

  it('reruns a backup killed with SIGKILL, reusing the packs it had uploaded', async () => {
    const r = repo('killed');
    await r.ok(['init']);
    const big = path.join(r.home, 'big');
    fs.mkdirSync(big);
    const total = 10 * 16 * 1024 * 1024;
    for (let i = 0; i < 10; i++) fs.writeFileSync(path.join(big, `f${i}`), deterministicBytes(`big${i}`, 16 * 1024 * 1024));
    const store = await direct(r.location);
    const packs = async () => (await collectList(store, 'data/')).filter((o) => /^data\/[0-9a-f]{2}\/[0-9a-f]{64}$/.test(o.name));

    const child = spawn(process.execPath, [AEGIS, '-r', r.location, 'backup', big, '--json'], { env: r.env, stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await until('two packs in the bucket', async () => (await packs()).length >= 2);
    child.kill('SIGKILL');
    await exited;
    const before = await packs();
    expect(before.length).toBeGreaterThanOrEqual(2);
    expect(JSON.parse((await r.ok(['snapshots', '--json'])).stdout)).toEqual([]);

    const rerun = summaryOf(await r.ok(['backup', big, '--json']));
    const beforeBytes = before.reduce((s, o) => s + o.size, 0);
    expect(Number(rerun.data_added)).toBeLessThan(total - beforeBytes / 2);
    const after = new Set((await packs()).map((o) => o.name));
    for (const p of before) expect(after.has(p.name)).toBe(true);

    const target = path.join(r.home, 'restored');
    await r.ok(['restore', `latest:${big}`, '--target', target]);
    expect(await rsyncDifferences(big, target)).toBe('');
  });

  it('completes a backup and a restore while AEGIS_FAULTS injects transient faults', async () => {
    const r = repo('injected');
    await r.ok(['init']);
    const faults = {
      AEGIS_FAULTS: 'op=put,p=0.25,fail=transient; op=get,p=0.25,fail=transient; op=list,p=0.25,fail=transient; op=stat,p=0.25,fail=transient; seed=3',
      AEGIS_RETRY: 'attempts=20,base=5ms,max=50ms',
    };
    const b = await r.ok(['backup', src], faults);
    expect(b.stderr).toContain('fault injection is on (4 rules from AEGIS_FAULTS)');
    const target = path.join(r.home, 'restored');
    await r.ok(['restore', `latest:${src}`, '--target', target], r.uncached(faults));
    expect(await rsyncDifferences(src, target)).toBe('');
  });

  it('completes a backup and a restore through a proxy that answers 503 SlowDown and resets connections', async () => {
    const proxy = await FaultProxy.start(s3Server().endpoint);
    try {
      const r = repo('proxied', proxy.endpoint);
      const retry = { AEGIS_RETRY: 'attempts=20,base=10ms,max=100ms' };
      await r.ok(['init'], retry);
      proxy.setRules([
        { method: 'PUT', path: /\/data\//, times: 3, action: { status: 503, code: 'SlowDown' } },
        { method: 'PUT', path: /\/index\//, times: 1, action: { reset: 'before' } },
        { method: 'PUT', path: /\/snapshots\//, times: 1, action: { reset: 'after-forward' } },
        { method: 'GET', path: /list-type=2/, times: 2, action: { status: 500 } },
      ]);
      await r.ok(['backup', src], retry);
      expect(proxy.faults).toBe(7);
      proxy.setRules([
        { method: 'GET', path: /\/data\//, times: 4, action: { reset: 'mid-body' } },
        { method: 'GET', path: /\/data\//, times: 2, action: { status: 503, code: 'SlowDown' } },
      ]);
      const target = path.join(r.home, 'restored');
      await r.ok(['restore', `latest:${src}`, '--target', target], r.uncached(retry));
      expect(proxy.faults).toBe(13);
      expect(await rsyncDifferences(src, target)).toBe('');
      expect(JSON.parse((await r.ok(['snapshots', '--json'], r.uncached(retry))).stdout)).toHaveLength(1);
    } finally {
      await proxy.close();
    }
  });

  it('fails a backup cleanly on a persistent fault and leaves the repository intact', async () => {
    const r = repo('persistent');
    await r.ok(['init']);
    await r.ok(['backup', src]);
    fs.writeFileSync(path.join(r.home, 'extra.bin'), crypto.randomBytes(3 * 1024 * 1024));
    const failing = await r.run(['backup', src, r.home + '/extra.bin'], {
      AEGIS_FAULTS: 'op=put,name=data/*,fail=transient',
      AEGIS_RETRY: 'attempts=3,base=5ms,max=20ms',
    });
    expect(failing.code).not.toBe(0);
    const lines = failing.stderr.trim().split('\n').filter((l) => !l.includes('fault injection is on'));
    expect(lines.at(-1)).toMatch(/gave up after 3 attempts over \d+\.\d s: injected fault \(transient\) on put data\//);
    expect(failing.stderr).not.toMatch(/^\s+at /m);

    const snaps = JSON.parse((await r.ok(['snapshots', '--json'], r.uncached())).stdout);
    expect(snaps).toHaveLength(1);
    const target = path.join(r.home, 'restored');
    await r.ok(['restore', `latest:${src}`, '--target', target]);
    expect(await rsyncDifferences(src, target)).toBe('');
    await r.ok(['backup', src, r.home + '/extra.bin']);
    expect(JSON.parse((await r.ok(['snapshots', '--json'])).stdout)).toHaveLength(2);
  });
});
