import crypto from 'node:crypto';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CachedStorage } from '../src/storage/cache.js';
import { LocalStorage } from '../src/storage/local.js';
import { openStorage } from '../src/storage/open.js';
import { type Storage, StorageError, collectList } from '../src/storage/storage.js';
import { makeBucket, s3Location, s3Options } from './helpers/s3.js';

/**
 * One contract, every backend: the local directory, the S3 backend against a real
 * Ceph RADOS gateway, and both again behind the local cache. Whatever the
 * repository layer relies on is here: atomic whole-object writes, ranged reads
 * (a range crossing the end is a "short read" error, never a shorter buffer),
 * create-if-absent with exactly one winner, complete listings past 1000 objects,
 * idempotent deletes, and large (multipart) objects byte for byte.
 */
interface Backend {
  name: string;
  s3: boolean;
  /** A fresh, empty storage; `extra` are openStorage options (S3 only). */
  open(label: string, extra?: Record<string, unknown>): Promise<Storage>;
}

let tmp: string;
let bucket: string;
const opened: Storage[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'aegis-contract-'));
  bucket = await makeBucket('contract');
});

afterAll(async () => {
  await Promise.all(opened.map((s) => s.close().catch(() => {})));
  await rm(tmp, { recursive: true, force: true });
});

let seq = 0;
const unique = (label: string) => `${label.replace(/[^a-z0-9]+/gi, '-')}-${++seq}-${crypto.randomBytes(3).toString('hex')}`;

function track(s: Storage): Storage {
  opened.push(s);
  return s;
}

const backends: Backend[] = [
  {
    name: 'local',
    s3: false,
    open: async (label) => track(await openStorage(path.join(tmp, 'local', unique(label)))),
  },
  {
    name: 'local behind the cache',
    s3: false,
    open: async (label) => {
      const id = unique(label);
      return track(new CachedStorage(new LocalStorage(path.join(tmp, 'local-cached', id)), { dir: path.join(tmp, 'cache-local', id) }));
    },
  },
  {
    name: 's3',
    s3: true,
    open: async (label, extra = {}) => track(await openStorage(s3Location(bucket, unique(label)), { ...s3Options(), noCache: true, ...extra })),
  },
  {
    name: 's3 behind the cache',
    s3: true,
    open: async (label, extra = {}) =>
      track(await openStorage(s3Location(bucket, `cached-${unique(label)}`), { ...s3Options(), cacheDir: path.join(tmp, 'cache-s3'), ...extra })),
  },
];

function random(n: number): Buffer {
  return crypto.randomBytes(n);
}

async function kindOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'fulfilled';
  } catch (err) {
    if (err instanceof StorageError) return err.kind;
    throw err;
  }
}

async function putMany(s: Storage, names: string[], concurrency = 32): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < names.length) {
        const name = names[next++]!;
        await s.put(name, Buffer.from(name));
      }
    }),
  );
}

const hex = (n: number) => crypto.randomBytes(n).toString('hex');

describe.each(backends)('storage contract: $name', (backend) => {
  it('returns what was put, whole; a missing object is not-found', async () => {
    const s = await backend.open('roundtrip');
    const data = random(100_000);
    await s.put('snapshots/one', data);
    expect((await s.get('snapshots/one')).equals(data)).toBe(true);
    await s.put('keys/empty', new Uint8Array(0));
    expect((await s.get('keys/empty')).length).toBe(0);
    expect(await kindOf(s.get('snapshots/missing'))).toBe('not-found');
    expect(await kindOf(s.get('data/00/missing', { offset: 0, length: 10 }))).toBe('not-found');
  });

  it('reads byte ranges: first byte, middle, last bytes; a range crossing the end is a short-read error', async () => {
    const s = await backend.open('ranges');
    const data = random(64 * 1024 + 17);
    const name = `data/ab/${hex(32)}`;
    await s.put(name, data);
    expect((await s.get(name, { offset: 0, length: 1 })).equals(data.subarray(0, 1))).toBe(true);
    expect((await s.get(name, { offset: 1000, length: 5000 })).equals(data.subarray(1000, 6000))).toBe(true);
    const tail = { offset: data.length - 4096, length: 4096 };
    expect((await s.get(name, tail)).equals(data.subarray(data.length - 4096))).toBe(true);
    expect((await s.get(name, { offset: data.length, length: 0 })).length).toBe(0);
    for (const range of [
      { offset: data.length - 10, length: 11 },
      { offset: data.length + 5, length: 10 },
    ]) {
      const err = await s.get(name, range).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StorageError);
      expect((err as StorageError).kind).toBe('permanent');
      expect((err as StorageError).message).toMatch(/short read/);
    }
  });

  it('stats sizes; stat of a missing object is not-found', async () => {
    const s = await backend.open('stat');
    await s.put('config', random(1234));
    await s.put('index/empty', new Uint8Array(0));
    expect(await s.stat('config')).toEqual({ name: 'config', size: 1234 });
    expect(await s.stat('index/empty')).toEqual({ name: 'index/empty', size: 0 });
    expect(await kindOf(s.stat('nothing-here'))).toBe('not-found');
  });

  it('put replaces an object (lock refresh); ifNotExists refuses to and leaves it alone', async () => {
    const s = await backend.open('replace');
    await s.put('locks/mine', Buffer.from('first'));
    await s.put('locks/mine', Buffer.from('second, longer'));
    expect((await s.get('locks/mine')).toString()).toBe('second, longer');
    expect(await kindOf(s.put('locks/mine', Buffer.from('third'), { ifNotExists: true }))).toBe('exists');
    expect((await s.get('locks/mine')).toString()).toBe('second, longer');
    await s.put('config', Buffer.from('created'), { ifNotExists: true });
    expect((await s.get('config')).toString()).toBe('created');
  });

  it('ifNotExists under 16 concurrent writers of one name: exactly one wins and its bytes stay', async () => {
    const s = await backend.open('race');
    for (const name of ['config', 'locks/contended']) {
      const bodies = Array.from({ length: 16 }, (_, i) => Buffer.from(`writer ${i} ${hex(8)}`));
      const results = await Promise.all(bodies.map((b) => kindOf(s.put(name, b, { ifNotExists: true }))));
      const winners = results.flatMap((r, i) => (r === 'fulfilled' ? [i] : []));
      expect(winners).toHaveLength(1);
      expect(results.filter((r) => r === 'exists')).toHaveLength(15);
      expect((await s.get(name)).equals(bodies[winners[0]!]!)).toBe(true);
    }
  });

  it('lists names under a prefix, relative to the repository, and nothing else', async () => {
    const s = await backend.open('list');
    const packA = `data/aa/${hex(32)}`;
    const packB = `data/ab/${hex(32)}`;
    for (const n of ['config', 'snapshots/aa1', 'snapshots/ab2', 'snapshotsX/zz', packA, packB]) await s.put(n, Buffer.from(n));
    const names = async (prefix: string) => (await collectList(s, prefix)).map((o) => o.name).sort();
    expect(await names('snapshots/')).toEqual(['snapshots/aa1', 'snapshots/ab2']);
    expect(await names('snapshots/a')).toEqual(['snapshots/aa1', 'snapshots/ab2']);
    expect(await names('snapshots/aa')).toEqual(['snapshots/aa1']);
    expect(await names('data/')).toEqual([packA, packB].sort());
    expect(await names('nothing/')).toEqual([]);
    expect(await names('')).toEqual(['config', packA, packB, 'snapshots/aa1', 'snapshots/ab2', 'snapshotsX/zz'].sort());
    const sizes = await collectList(s, 'snapshots/aa');
    expect(sizes).toEqual([{ name: 'snapshots/aa1', size: 'snapshots/aa1'.length }]);
  });

  it('lists more than 1000 objects completely', async () => {
    const s = await backend.open('thousand');
    const names = Array.from({ length: 1100 }, () => `index/${hex(32)}`);
    await putMany(s, names);
    const listed = await collectList(s, 'index/');
    expect(listed).toHaveLength(1100);
    expect(new Set(listed.map((o) => o.name))).toEqual(new Set(names));
    // A second listing (served from the cached listing where there is one) says the same.
    expect(new Set((await collectList(s, 'index/')).map((o) => o.name))).toEqual(new Set(names));
  });

  if (backend.s3) it('paginates with small pages (s3ListPageSize) without losing or repeating a name', async () => {
    const s = await backend.open('pages', { s3ListPageSize: 7 });
    const names = Array.from({ length: 53 }, () => `data/${hex(1)}/${hex(32)}`);
    await putMany(s, names, 16);
    const listed = (await collectList(s, 'data/')).map((o) => o.name);
    expect(listed).toHaveLength(53);
    expect(new Set(listed)).toEqual(new Set(names));
  });

  it('deletes; deleting a missing object is fine', async () => {
    const s = await backend.open('delete');
    await s.put('snapshots/gone', Buffer.from('x'));
    await s.put('snapshots/stays', Buffer.from('y'));
    expect((await s.get('snapshots/gone')).toString()).toBe('x');
    await s.delete('snapshots/gone');
    expect(await kindOf(s.get('snapshots/gone'))).toBe('not-found');
    expect(await kindOf(s.stat('snapshots/gone'))).toBe('not-found');
    expect((await collectList(s, 'snapshots/')).map((o) => o.name)).toEqual(['snapshots/stays']);
    await s.delete('snapshots/gone');
    await s.delete('never/was');
  });

  it('stores a 40 MiB object (multipart on S3) byte for byte, and reads its last bytes by range', async () => {
    const s = await backend.open('large');
    const data = random(40 * 1024 * 1024 + 123);
    const name = `data/ff/${hex(32)}`;
    await s.put(name, data);
    expect((await s.stat(name)).size).toBe(data.length);
    const back = await s.get(name);
    expect(back.length).toBe(data.length);
    expect(back.equals(data)).toBe(true);
    const tail = await s.get(name, { offset: data.length - 100_000, length: 100_000 });
    expect(tail.equals(data.subarray(data.length - 100_000))).toBe(true);
  });

  it('put takes the SHA-256 the caller computed: S3 signs with it, so a wrong one is refused and nothing is stored', async () => {
    // One attempt: a refused payload is retried like any transfer fault (bytes damaged on the way).
    // Payloads are signed only when asked to on loopback (s3SignPayload: auto leaves them unsigned there).
    const s = await backend.open('put-sha', { retryMaxAttempts: 1, s3SignPayload: 'always' });
    if (backend.s3) expect((await s.staging()).sha256).toBe(true);
    const data = random(2 * 1024 * 1024 + 3);
    const name = `data/ab/${hex(32)}`;
    await s.put(name, data, { sha256: crypto.createHash('sha256').update(data).digest('hex') });
    expect((await s.get(name)).equals(data)).toBe(true);
    const other = `data/ab/${hex(32)}`;
    const wrong = crypto.createHash('sha256').update('something else').digest('hex');
    if (backend.s3) {
      const err = await s.put(other, data, { sha256: wrong }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StorageError);
      expect((err as Error).message).toMatch(/XAmzContentSHA256Mismatch/);
      expect(await kindOf(s.stat(other))).toBe('not-found');
    } else {
      // The local backend signs nothing: the hint is ignored.
      await s.put(other, data, { sha256: wrong });
      expect((await s.get(other)).equals(data)).toBe(true);
    }
  });

  it('on loopback S3 leaves payloads unsigned by default: a SHA-256 hint is not used, and the bytes are stored as sent', async () => {
    const s = await backend.open('put-unsigned', { retryMaxAttempts: 1 });
    const data = random(3 * 1024 * 1024 + 5);
    const name = `data/ac/${hex(32)}`;
    const wrong = crypto.createHash('sha256').update('not these bytes').digest('hex');
    await s.put(name, data, { sha256: wrong });
    expect((await s.get(name)).equals(data)).toBe(true);
  });

  it('putFile stores a staged file byte for byte and takes it; a failed putFile leaves the file', async () => {
    const s = await backend.open('putfile');
    const staging = await s.staging();
    // On loopback S3 payloads go unsigned (s3SignPayload: auto), so no SHA-256 is wanted.
    expect(staging.sha256).toBe(false);
    // S3 wants packs in memory; putFile still takes any file.
    expect(staging.inMemory ?? false).toBe(Boolean(backend.s3));
    const stagingDir = staging.inMemory ? fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-putfile-')) : staging.dir;
    const data = random(3 * 1024 * 1024 + 5);
    const file = path.join(stagingDir, hex(8));
    fs.writeFileSync(file, data);
    const name = `data/cd/${hex(32)}`;
    await s.putFile(name, file, { sha256: crypto.createHash('sha256').update(data).digest('hex') });
    expect(fs.existsSync(file)).toBe(false);
    expect((await s.get(name)).equals(data)).toBe(true);
    expect((await collectList(s, '')).map((o) => o.name)).toEqual([name]);

    const again = path.join(stagingDir, hex(8));
    fs.writeFileSync(again, data);
    expect(await kindOf(s.putFile('data/../escape', again))).toBe('permanent');
    expect(fs.readFileSync(again).equals(data)).toBe(true);
    fs.rmSync(again);
    if (staging.inMemory) fs.rmSync(stagingDir, { recursive: true, force: true });
  });

  it('takes 48 concurrent writers of different objects', async () => {
    const s = await backend.open('writers');
    const objects = Array.from({ length: 48 }, (_, i) => ({ name: `data/${hex(1)}/${hex(32)}`, data: random(1000 + i * 4000) }));
    await Promise.all(objects.map((o) => s.put(o.name, o.data)));
    const listed = await collectList(s, 'data/');
    expect(new Map(listed.map((o) => [o.name, o.size]))).toEqual(new Map(objects.map((o) => [o.name, o.data.length])));
    for (const o of objects) expect((await s.get(o.name)).equals(o.data)).toBe(true);
  });
});
