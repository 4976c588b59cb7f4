import crypto from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CachedStorage, cacheDirFor, defaultCacheRoot, dropFromCache } from '../src/storage/cache.js';
import { RequestCounter } from '../src/storage/counting.js';
import { openStorage } from '../src/storage/open.js';
import { type Storage, StorageError, collectList } from '../src/storage/storage.js';
import { makeBucket, s3Location, s3Options } from './helpers/s3.js';

/**
 * The local cache in front of a real S3 server (Ceph RADOS gateway). Requests are
 * counted where they leave for the network (the counting wrapper right above the
 * S3 backend), so "0" means no request at all. Listing freshness runs on a clock
 * the test moves, never on sleeps.
 */
let tmp: string;
let bucket: string;
const opened: Storage[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'aegis-cache-'));
  bucket = await makeBucket('cache');
});
afterAll(async () => {
  await Promise.all(opened.map((s) => s.close().catch(() => {})));
  await rm(tmp, { recursive: true, force: true });
});

const TTL = 60_000;
let seq = 0;

interface Repo {
  location: string;
  cacheRoot: string;
  clock: { now: number };
  /** Another client: no cache, straight to S3. */
  other: Storage;
  /** A cached client, as one CLI process would open it. */
  client(extra?: Record<string, unknown>): Promise<{ s: CachedStorage; counter: RequestCounter }>;
}

async function repo(): Promise<Repo> {
  const location = s3Location(bucket, `r${++seq}-${crypto.randomBytes(3).toString('hex')}`);
  const cacheRoot = path.join(tmp, `cache${seq}`);
  const clock = { now: Date.now() };
  const other = await openStorage(location, { ...s3Options(), noCache: true });
  opened.push(other);
  return {
    location,
    cacheRoot,
    clock,
    other,
    async client(extra = {}) {
      const counter = new RequestCounter();
      const s = await openStorage(location, {
        ...s3Options(),
        cacheDir: cacheRoot,
        cacheListingTtl: TTL / 1000,
        cacheClock: () => clock.now,
        countRequests: counter,
        ...extra,
      });
      opened.push(s);
      expect(s).toBeInstanceOf(CachedStorage);
      return { s: s as CachedStorage, counter };
    },
  };
}

const hex = (n = 32) => crypto.randomBytes(n).toString('hex');
const names = async (s: Storage, prefix: string) => (await collectList(s, prefix)).map((o) => o.name).sort();

async function kindOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'fulfilled';
  } catch (err) {
    if (err instanceof StorageError) return err.kind;
    throw err;
  }
}

describe('the local cache of a remote repository', () => {
  it('lives in <root>/<hash of the location>, under AEGIS_CACHE_DIR when set', () => {
    expect(cacheDirFor('s3:http://h/b', '/r')).toBe(`/r/${crypto.createHash('sha256').update('s3:http://h/b').digest('hex').slice(0, 32)}`);
    expect(defaultCacheRoot({ AEGIS_CACHE_DIR: '/x/y' })).toBe('/x/y');
    expect(defaultCacheRoot({ XDG_CACHE_HOME: '/xdg' })).toBe('/xdg/aegis');
    expect(defaultCacheRoot({})).toBe(path.join(os.homedir(), '.cache', 'aegis'));
  });

  it('serves a second read of config, keys, index and snapshots without a request, also to the next process', async () => {
    const r = await repo();
    const objects = { config: hex(100), [`keys/${hex()}`]: hex(200), [`index/${hex()}`]: hex(3000), [`snapshots/${hex()}`]: hex(50) };
    for (const [n, v] of Object.entries(objects)) await r.other.put(n, Buffer.from(v));

    const { s, counter } = await r.client();
    for (const [n, v] of Object.entries(objects)) expect((await s.get(n)).toString()).toBe(v);
    expect(counter.snapshot().get).toBe(4);
    counter.reset();
    for (const [n, v] of Object.entries(objects)) expect((await s.get(n)).toString()).toBe(v);
    expect((await s.stat('config')).size).toBe(200);
    expect(counter.total).toBe(0);

    const next = await r.client();
    for (const [n, v] of Object.entries(objects)) expect((await next.s.get(n)).toString()).toBe(v);
    expect(next.counter.total).toBe(0);
  });

  it('answers listings of snapshots/, index/ and keys/ from the cache within the TTL, in this process and the next', async () => {
    const r = await repo();
    for (let i = 0; i < 3; i++) await r.other.put(`snapshots/${hex()}`, Buffer.from('s'));
    await r.other.put(`index/${hex()}`, Buffer.from('i'));
    await r.other.put(`keys/${hex()}`, Buffer.from('k'));
    const { s, counter } = await r.client();
    const first = { snapshots: await names(s, 'snapshots/'), index: await names(s, 'index/'), keys: await names(s, 'keys/') };
    expect(counter.snapshot().list).toBe(3);
    expect(first.snapshots).toHaveLength(3);
    counter.reset();
    expect(await names(s, 'snapshots/')).toEqual(first.snapshots);
    expect(await names(s, 'index/')).toEqual(first.index);
    expect(await names(s, 'keys/')).toEqual(first.keys);
    const next = await r.client();
    expect(await names(next.s, 'snapshots/')).toEqual(first.snapshots);
    expect(counter.total + next.counter.total).toBe(0);
    // Other prefixes are never served from a cached listing.
    await names(s, 'locks/');
    await names(s, 'data/');
    expect(counter.snapshot().list).toBe(2);
  });

  it("shows another client's new snapshot after the TTL, or at once after refresh()", async () => {
    const r = await repo();
    const s1 = `snapshots/${hex()}`;
    await r.other.put(s1, Buffer.from('one'));
    const { s, counter } = await r.client();
    expect(await names(s, 'snapshots/')).toEqual([s1]);

    const s2 = `snapshots/${hex()}`;
    await r.other.put(s2, Buffer.from('two'));
    r.clock.now += TTL - 1000;
    expect(await names(s, 'snapshots/')).toEqual([s1]); // within the TTL: the cached view, by design
    r.clock.now += 1000;
    counter.reset();
    expect(await names(s, 'snapshots/')).toEqual([s1, s2].sort());
    expect(counter.snapshot().list).toBe(1);

    const s3 = `snapshots/${hex()}`;
    await r.other.put(s3, Buffer.from('three'));
    expect(await names(s, 'snapshots/')).toEqual([s1, s2].sort());
    await s.refresh();
    expect(await names(s, 'snapshots/')).toEqual([s1, s2, s3].sort());
  });

  it("drops another client's forgotten snapshot from the listing and from disk once a listing no longer shows it", async () => {
    const r = await repo();
    const keep = `snapshots/${hex()}`;
    const gone = `snapshots/${hex()}`;
    const neverRead = `snapshots/${hex()}`;
    for (const n of [keep, gone, neverRead]) await r.other.put(n, Buffer.from(n));
    const { s, counter } = await r.client();
    expect(await names(s, 'snapshots/')).toEqual([keep, gone, neverRead].sort());
    await s.get(keep);
    await s.get(gone);
    const goneFile = path.join(s.dir, 'objects', ...gone.split('/'));
    await stat(goneFile);

    await r.other.delete(gone);
    await r.other.delete(neverRead);
    // Within the TTL a get of a listed object the backend lost drops it from the cached listing.
    expect(await kindOf(s.get(neverRead))).toBe('not-found');
    counter.reset();
    expect(await names(s, 'snapshots/')).toEqual([keep, gone].sort());
    expect(counter.total).toBe(0);

    r.clock.now += TTL;
    expect(await names(s, 'snapshots/')).toEqual([keep]);
    await expect(stat(goneFile)).rejects.toThrow(/ENOENT/);
    expect(await kindOf(s.get(gone))).toBe('not-found');
  });

  it('updates its cached listing on writes and deletes made through it', async () => {
    const r = await repo();
    const { s, counter } = await r.client();
    expect(await names(s, 'snapshots/')).toEqual([]);
    const mine = `snapshots/${hex()}`;
    await s.put(mine, Buffer.from('mine'), { ifNotExists: true });
    counter.reset();
    expect(await names(s, 'snapshots/')).toEqual([mine]);
    expect((await s.get(mine)).toString()).toBe('mine');
    expect(counter.total).toBe(0);
    await s.delete(mine);
    expect(await names(s, 'snapshots/')).toEqual([]);
    expect(counter.snapshot().list).toBe(0);
    expect(await kindOf(s.get(mine))).toBe('not-found');
  });

  it('lists the backend itself once this process has taken a lock', async () => {
    const r = await repo();
    const { s, counter } = await r.client();
    expect(await names(s, 'index/')).toEqual([]);
    const theirs = `index/${hex()}`;
    await r.other.put(theirs, Buffer.from('compacted'));
    expect(await names(s, 'index/')).toEqual([]);
    await s.put(`locks/${hex()}`, Buffer.from('lock'), { ifNotExists: true });
    counter.reset();
    expect(await names(s, 'index/')).toEqual([theirs]);
    expect(counter.snapshot().list).toBe(1);
  });

  it('serves config stat from the cache within the TTL and asks again after it', async () => {
    const r = await repo();
    await r.other.put('config', Buffer.from('cfg'));
    const { s, counter } = await r.client();
    await s.get('config');
    counter.reset();
    expect(await s.stat('config')).toEqual({ name: 'config', size: 3 });
    expect(counter.total).toBe(0);
    r.clock.now += TTL;
    expect(await s.stat('config')).toEqual({ name: 'config', size: 3 });
    expect(counter.snapshot().stat).toBe(1);
    // A repository that is gone is noticed after the TTL.
    await r.other.delete('config');
    r.clock.now += TTL;
    expect(await kindOf(s.stat('config'))).toBe('not-found');
    expect(await kindOf(s.get('config'))).toBe('not-found');
  });

  it('reads pack ranges from disk the second time, keeps tree ranges over data ranges, and stays within its byte budget', async () => {
    const r = await repo();
    const pack = `data/ab/${'ab' + hex(31)}`;
    const data = crypto.randomBytes(2 * 1024 * 1024);
    await r.other.put(pack, data);
    const budget = 256 * 1024;
    const { s, counter } = await r.client({ cacheMaxBytes: budget });
    const K = 32 * 1024;
    const trees = [0, 1, 2, 3].map((i) => ({ offset: i * K, length: K }));
    const datas = Array.from({ length: 20 }, (_, i) => ({ offset: (10 + i) * K, length: K }));
    for (const t of trees) expect((await s.get(pack, t, { kind: 'tree' })).equals(data.subarray(t.offset, t.offset + K))).toBe(true);
    counter.reset();
    for (const t of trees) await s.get(pack, t, { kind: 'tree' });
    expect(counter.total).toBe(0);
    for (const d of datas) expect((await s.get(pack, d, { kind: 'data' })).equals(data.subarray(d.offset, d.offset + K))).toBe(true);
    await s.settle();
    expect(await s.rangeBytesOnDisk()).toBeLessThanOrEqual(budget);
    counter.reset();
    for (const t of trees) expect((await s.get(pack, t, { kind: 'tree' })).equals(data.subarray(t.offset, t.offset + K))).toBe(true);
    expect(counter.total).toBe(0);
    for (const d of datas) expect((await s.get(pack, d)).equals(data.subarray(d.offset, d.offset + K))).toBe(true);
    expect(counter.snapshot().get).toBeGreaterThan(0); // the oldest data ranges were evicted
    await s.settle();
    expect(await s.rangeBytesOnDisk()).toBeLessThanOrEqual(budget);
  });

  it('keeps no copy of a range read with { keep: false } (a restore), but still serves one it has', async () => {
    const r = await repo();
    const pack = `data/cd/${'cd' + hex(31)}`;
    const data = crypto.randomBytes(256 * 1024);
    await r.other.put(pack, data);
    const { s, counter } = await r.client();
    const range = { offset: 1000, length: 64 * 1024 };
    expect((await s.get(pack, range, { kind: 'data', keep: false })).equals(data.subarray(1000, 1000 + 64 * 1024))).toBe(true);
    await s.settle();
    expect(await s.rangeBytesOnDisk()).toBe(0);
    counter.reset();
    await s.get(pack, range, { kind: 'data', keep: false });
    expect(counter.total).toBe(1);
    await s.get(pack, range, { kind: 'data' });
    await s.settle();
    expect(await s.rangeBytesOnDisk()).toBeGreaterThan(0);
    counter.reset();
    expect((await s.get(pack, range, { kind: 'data', keep: false })).equals(data.subarray(1000, 1000 + 64 * 1024))).toBe(true);
    expect(counter.total).toBe(0);
  });

  it('keeps working when its directory is deleted, and fills it again', async () => {
    const r = await repo();
    const snap = `snapshots/${hex()}`;
    const pack = `data/cd/${'cd' + hex(31)}`;
    await r.other.put(snap, Buffer.from('snap'));
    await r.other.put(pack, crypto.randomBytes(100_000));
    const { s, counter } = await r.client();
    await names(s, 'snapshots/');
    await s.get(snap);
    const range = { offset: 500, length: 4000 };
    const bytes = await s.get(pack, range);
    await rm(s.dir, { recursive: true, force: true });
    counter.reset();
    expect(await names(s, 'snapshots/')).toEqual([snap]);
    expect((await s.get(snap)).toString()).toBe('snap');
    expect((await s.get(pack, range)).equals(bytes)).toBe(true);
    expect(counter.total).toBe(3);
    counter.reset();
    expect(await names(s, 'snapshots/')).toEqual([snap]);
    expect((await s.get(snap)).toString()).toBe('snap');
    expect((await s.get(pack, range)).equals(bytes)).toBe(true);
    expect(counter.total).toBe(0);
    expect((await readFile(path.join(s.dir, 'CACHEDIR.TAG'), 'utf8')).startsWith('Signature: 8a477f597d28d172789f06886806bc55')).toBe(true);
  });

  it('treats a damaged cache file as a miss and never returns its bytes', async () => {
    const r = await repo();
    const snap = `snapshots/${hex()}`;
    const pack = `data/ef/${'ef' + hex(31)}`;
    const packData = crypto.randomBytes(50_000);
    await r.other.put(snap, Buffer.from('the real snapshot'));
    await r.other.put(pack, packData);
    const { s, counter } = await r.client();
    await s.get(snap);
    const range = { offset: 100, length: 1000 };
    await s.get(pack, range);
    const objFile = path.join(s.dir, 'objects', ...snap.split('/'));
    const raw = await readFile(objFile);
    raw[3] ^= 0x20;
    await writeFile(objFile, raw);
    const rangeDir = path.join(s.dir, 'ranges', 'data', 'ef');
    const [rangeName] = await readdir(rangeDir);
    await writeFile(path.join(rangeDir, rangeName!), (await readFile(path.join(rangeDir, rangeName!))).subarray(0, 500));
    counter.reset();
    expect((await s.get(snap)).toString()).toBe('the real snapshot');
    expect((await s.get(pack, range)).equals(packData.subarray(100, 1100))).toBe(true);
    expect(counter.snapshot().get).toBe(2);
    counter.reset();
    await s.get(snap);
    await s.get(pack, range);
    expect(counter.total).toBe(0);
  });

  it('re-reads and replaces on { fresh: true }, and forgets an object on dropFromCache', async () => {
    const r = await repo();
    const snap = `snapshots/${hex()}`;
    await r.other.put(snap, Buffer.from('version one'));
    const { s, counter } = await r.client();
    expect((await s.get(snap)).toString()).toBe('version one');
    // Stands for a cached copy that the repository layer found damaged.
    await r.other.put(snap, Buffer.from('version two'));
    expect((await s.get(snap)).toString()).toBe('version one');
    counter.reset();
    expect((await s.get(snap, undefined, { fresh: true })).toString()).toBe('version two');
    expect(counter.total).toBe(1);
    expect((await s.get(snap)).toString()).toBe('version two');
    expect(counter.total).toBe(1);
    await r.other.put(snap, Buffer.from('version three'));
    await dropFromCache(s, snap);
    expect((await s.get(snap)).toString()).toBe('version three');
    expect(counter.total).toBe(2);
  });

  it('lists index/ afresh after a pack read finds the pack gone (someone pruned)', async () => {
    const r = await repo();
    const pack = `data/01/${'01' + hex(31)}`;
    await r.other.put(pack, crypto.randomBytes(10_000));
    await r.other.put(`index/${hex()}`, Buffer.from('old index'));
    const { s, counter } = await r.client();
    expect(await names(s, 'index/')).toHaveLength(1);
    await r.other.delete(pack);
    expect(await kindOf(s.get(pack, { offset: 0, length: 100 }))).toBe('not-found');
    counter.reset();
    await names(s, 'index/');
    expect(counter.snapshot().list).toBe(1);
  });
});
