import crypto from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { RequestCounter } from '../src/storage/counting.js';
import { FaultInjectingStorage, parseFaults } from '../src/storage/fault-injection.js';
import { LocalStorage } from '../src/storage/local.js';
import { type OpenStorageOptions, openStorage } from '../src/storage/open.js';
import { type RetryEvent, RetryingStorage } from '../src/storage/retrying.js';
import { type ObjectInfo, type Storage, StorageError, collectList } from '../src/storage/storage.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { makeBucket, s3Location, s3Options, s3Server } from './helpers/s3.js';

/**
 * Faults, generic and real: the fault-injection wrapper under the retrying wrapper
 * (what AEGIS_FAULTS does in a real process), and a real HTTP fault proxy in front
 * of the Ceph RADOS gateway that answers 500 / 503 SlowDown / 403, resets
 * connections before or in the middle of an answer, loses replies, and stalls past
 * the client's timeout. Transient faults are retried and the bytes come out right;
 * persistent ones fail with a clear message after bounded attempts; permanent ones
 * fail at once.
 */
let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'aegis-faults-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let seq = 0;
const dir = () => path.join(tmp, `d${++seq}`);
const fast = { baseDelayMs: 1, maxDelayMs: 5 };

async function failure(p: Promise<unknown>): Promise<StorageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StorageError);
  return err as StorageError;
}

describe('fault injection under retries (generic path)', () => {
  it('retries an injected transient fault on the Nth call and returns the right bytes', async () => {
    const faulty = new FaultInjectingStorage(new LocalStorage(dir()), 'op=put,nth=1,fail=transient; op=get,nth=2,fail=transient');
    const events: RetryEvent[] = [];
    const s = new RetryingStorage(faulty, { ...fast, onRetry: (e) => events.push(e) });
    const data = crypto.randomBytes(5000);
    await s.put('snapshots/a', data);
    expect((await s.get('snapshots/a')).equals(data)).toBe(true);
    expect((await s.get('snapshots/a')).equals(data)).toBe(true);
    expect(faulty.injected).toEqual([1, 1]);
    expect(events.map((e) => [e.op, e.attempt])).toEqual([
      ['write', 1],
      ['read', 1],
    ]);
  });

  it('survives faults with probability 0.3 on every operation (seeded, so the run repeats)', async () => {
    const spec = 'p=0.3,fail=transient; seed=42';
    const run = async () => {
      const faulty = new FaultInjectingStorage(new LocalStorage(dir()), spec);
      const s = new RetryingStorage(faulty, { ...fast, maxAttempts: 30 });
      const objects = Array.from({ length: 40 }, (_, i) => ({ name: `index/${i}`, data: crypto.randomBytes(100 + i) }));
      for (const o of objects) await s.put(o.name, o.data);
      for (const o of objects) expect((await s.get(o.name)).equals(o.data)).toBe(true);
      expect((await collectList(s, 'index/')).length).toBe(40);
      for (const o of objects) await s.delete(o.name);
      expect(await collectList(s, 'index/')).toEqual([]);
      return faulty.injected[0]!;
    };
    const first = await run();
    expect(first).toBeGreaterThan(10);
    expect(await run()).toBe(first);
  });

  it('gives up on a persistent transient fault after the attempt limit, saying how many attempts over how long', async () => {
    const faulty = new FaultInjectingStorage(new LocalStorage(dir()), 'op=get,fail=transient');
    const s = new RetryingStorage(faulty, { ...fast, maxAttempts: 4 });
    await s.put('config', Buffer.from('x'));
    const err = await failure(s.get('config'));
    expect(err.kind).toBe('transient');
    expect(err.message).toMatch(/^gave up after 4 attempts over \d+\.\d s: injected fault \(transient\) on get config/);
    expect(faulty.injected).toEqual([4]);
  });

  it('gives up when the time budget is spent, whatever the attempt limit', async () => {
    // A clock that moves only when storage is called: every attempt "takes" 1 s; the budget is 5 s.
    let clock = 0;
    class Busy extends LocalStorage {
      override async stat(name: string): Promise<ObjectInfo> {
        clock += 1000;
        throw new StorageError('transient', name, `server busy (${name})`);
      }
    }
    const s = new RetryingStorage(new Busy(dir()), { baseDelayMs: 1, maxDelayMs: 1, maxAttempts: 1000, maxElapsedMs: 5000, now: () => clock });
    const err = await failure(s.stat('config'));
    expect(err.kind).toBe('transient');
    expect(err.message).toBe('gave up after 6 attempts over 6.0 s: server busy (config)');
  });

  it('fails at once on a permanent fault, and does not retry not-found', async () => {
    const faulty = new FaultInjectingStorage(new LocalStorage(dir()), 'op=get,name=keys/*,fail=permanent');
    const events: RetryEvent[] = [];
    const s = new RetryingStorage(faulty, { ...fast, onRetry: (e) => events.push(e) });
    const err = await failure(s.get('keys/k1'));
    expect(err.kind).toBe('permanent');
    expect(err.message).toMatch(/^injected fault \(permanent\) on get keys\/k1/);
    expect(faulty.injected).toEqual([1]);
    expect((await failure(s.get('snapshots/none'))).kind).toBe('not-found');
    expect(events).toEqual([]);
  });

  it('truncates and corrupts gets on request (for testing the layers above)', async () => {
    const inner = new LocalStorage(dir());
    const data = crypto.randomBytes(1000);
    await inner.put('data/aa/p', data);
    const faulty = new FaultInjectingStorage(inner, 'name=data/*,nth=1,truncate=100; name=data/*,nth=2,corrupt; name=data/*,nth=3,truncate');
    const first = await faulty.get('data/aa/p');
    expect(first.equals(data.subarray(0, 100))).toBe(true);
    const second = await faulty.get('data/aa/p');
    expect(second.length).toBe(1000);
    expect(second.equals(data)).toBe(false);
    let differing = 0;
    for (let i = 0; i < data.length; i++) differing += Number(second[i] !== data[i]);
    expect(differing).toBe(1);
    expect((await faulty.get('data/aa/p', { offset: 0, length: 200 })).length).toBe(100);
    expect((await faulty.get('data/aa/p')).equals(data)).toBe(true);
  });

  it('stalls a call until its time has passed, then lets it complete', async () => {
    const inner = new LocalStorage(dir());
    await inner.put('config', Buffer.from('slow'));
    const faulty = new FaultInjectingStorage(inner, 'op=get,stall=30s');
    vi.useFakeTimers({ toFake: ['setTimeout'] });
    try {
      let done = false;
      const p = faulty.get('config').then((b) => {
        done = true;
        return b;
      });
      await vi.advanceTimersByTimeAsync(29_000);
      expect(done).toBe(false);
      await vi.advanceTimersByTimeAsync(1_000);
      expect((await p).toString()).toBe('slow');
    } finally {
      vi.useRealTimers();
    }
  });

  it('rejects bad AEGIS_FAULTS syntax with one clear line', () => {
    for (const [spec, msg] of [
      ['op=get', /does nothing/],
      ['op=fly,fail=transient', /unknown operation "fly"/],
      ['fail=maybe', /fail=maybe/],
      ['p=2,fail=transient', /not a probability/],
      ['nth=1,p=0.5,fail=transient', /only one of nth, from and p/],
      ['colour=red,fail=transient', /unknown setting "colour"/],
      ['op=put,truncate', /apply to get only/],
    ] as const) {
      expect(() => parseFaults(spec)).toThrow(msg);
      try {
        parseFaults(spec);
      } catch (err) {
        expect((err as Error).message).not.toContain('\n');
        expect((err as Error).message).toMatch(/^AEGIS_FAULTS: /);
      }
    }
    expect(parseFaults('op=put|get,name=data/*,from=3,times=2,fail=transient;seed=9').seed).toBe(9);
  });

  it('openStorage puts injection below the retries, from the faults option or AEGIS_FAULTS', async () => {
    const d = dir();
    const notices: string[] = [];
    const opts: OpenStorageOptions = { retryBaseDelay: '1ms', retryMaxDelay: '2ms', onNotice: (m) => notices.push(m) };
    const s = await openStorage(d, { ...opts, faults: 'op=put,nth=1,fail=transient; op=get,from=1,times=2,fail=transient' });
    await s.put('config', Buffer.from('ok'));
    expect((await s.get('config')).toString()).toBe('ok');
    expect(notices).toEqual(['fault injection is on (2 rules from the faults option)']);

    const before = process.env.AEGIS_FAULTS;
    process.env.AEGIS_FAULTS = 'op=get,fail=permanent';
    try {
      const s2 = await openStorage(d, opts);
      expect((await failure(s2.get('config'))).kind).toBe('permanent');
      expect(notices[1]).toBe('fault injection is on (1 rule from AEGIS_FAULTS)');
    } finally {
      if (before === undefined) delete process.env.AEGIS_FAULTS;
      else process.env.AEGIS_FAULTS = before;
    }
    await expect(openStorage(d, { faults: 'op=get' })).rejects.toThrow(/^AEGIS_FAULTS: rule "op=get" does nothing/);
  });
});

describe('retrying details', () => {
  /** A storage whose next puts or lists fail in scripted ways. */
  class Scripted extends LocalStorage {
    putScript: Array<'land-then-fail' | 'fail'> = [];
    listFailAfter: number | undefined;
    override async put(name: string, data: Uint8Array, options?: { ifNotExists?: boolean }): Promise<void> {
      const step = this.putScript.shift();
      if (step === 'fail') throw new StorageError('transient', name, 'connection reset');
      await super.put(name, data, options);
      if (step === 'land-then-fail') throw new StorageError('transient', name, 'reply lost');
    }
    override async *list(prefix: string): AsyncIterable<ObjectInfo> {
      let n = 0;
      const failAfter = this.listFailAfter;
      this.listFailAfter = undefined;
      for await (const info of super.list(prefix)) {
        if (failAfter !== undefined && n === failAfter) throw new StorageError('transient', prefix, 'listing broke');
        n++;
        yield info;
      }
    }
  }

  it('a create-if-absent put whose reply was lost counts as ours when the stored bytes are ours', async () => {
    const inner = new Scripted(dir());
    const s = new RetryingStorage(inner, fast);
    inner.putScript = ['land-then-fail'];
    await s.put('snapshots/s1', Buffer.from('mine'), { ifNotExists: true });
    expect((await s.get('snapshots/s1')).toString()).toBe('mine');
    // Someone else's bytes under the name: a real conflict.
    await inner.put('snapshots/s2', Buffer.from('theirs'));
    inner.putScript = ['fail'];
    expect((await failure(s.put('snapshots/s2', Buffer.from('mine'), { ifNotExists: true }))).kind).toBe('exists');
  });

  it('a listing that breaks halfway is restarted without repeating names', async () => {
    const inner = new Scripted(dir());
    for (let i = 0; i < 20; i++) await inner.put(`index/${i}`, Buffer.from('x'));
    const s = new RetryingStorage(inner, fast);
    inner.listFailAfter = 7;
    const names = (await collectList(s, 'index/')).map((o) => o.name);
    expect(names).toHaveLength(20);
    expect(new Set(names).size).toBe(20);
  });
});

describe('real HTTP faults between the S3 backend and the RADOS gateway', () => {
  let bucket: string;
  let proxy: FaultProxy;
  const opened: Storage[] = [];

  beforeAll(async () => {
    bucket = await makeBucket('faults');
    proxy = await FaultProxy.start(s3Server().endpoint);
  });
  afterEach(() => proxy.setRules([]));
  afterAll(async () => {
    await Promise.all(opened.map((s) => s.close().catch(() => {})));
    await proxy?.close();
  });

  /** Through the proxy, with quick retries and a 1 s request timeout. */
  async function viaProxy(prefix: string, extra: OpenStorageOptions = {}): Promise<Storage> {
    const s = await openStorage(s3Location(bucket, prefix, proxy.endpoint), {
      ...s3Options(),
      noCache: true,
      s3Timeout: '1s',
      retryBaseDelay: '10ms',
      retryMaxDelay: '50ms',
      retryMaxAttempts: 6,
      ...extra,
    });
    opened.push(s);
    return s;
  }

  async function direct(prefix: string): Promise<Storage> {
    const s = await openStorage(s3Location(bucket, prefix), { ...s3Options(), noCache: true, retryMaxAttempts: 1 });
    opened.push(s);
    return s;
  }

  it('retries 500 and 503 SlowDown answers to writes and reads', async () => {
    const s = await viaProxy('status');
    const data = crypto.randomBytes(300_000);
    proxy.setRules([
      { method: 'PUT', times: 2, action: { status: 500 } },
      { method: 'GET', times: 2, action: { status: 503, code: 'SlowDown' } },
      { method: 'HEAD', times: 1, action: { status: 503 } },
    ]);
    const before = proxy.count('PUT');
    await s.put('data/00/p', data);
    // Two injected 500s, then success; with the 1 s request timeout a slow gateway
    // (just started, loaded machine) can add one more genuine retry.
    expect(proxy.count('PUT') - before).toBeGreaterThanOrEqual(3);
    expect((await s.get('data/00/p', { offset: 1000, length: 5000 })).equals(data.subarray(1000, 6000))).toBe(true);
    expect((await s.stat('data/00/p')).size).toBe(data.length);
    expect(proxy.faults).toBeGreaterThanOrEqual(5);
    expect((await (await direct('status')).get('data/00/p')).equals(data)).toBe(true);
  });

  it('retries connections reset before any answer', async () => {
    const s = await viaProxy('reset');
    proxy.setRules([{ times: 3, action: { reset: 'before' } }]);
    const data = crypto.randomBytes(10_000);
    await s.put('index/i1', data);
    proxy.setRules([{ times: 2, action: { reset: 'before' } }]);
    expect((await s.get('index/i1')).equals(data)).toBe(true);
    proxy.setRules([{ times: 1, action: { reset: 'before' } }]);
    expect((await collectList(s, 'index/')).map((o) => o.name)).toEqual(['index/i1']);
  });

  it('classifies a body cut short as transient, and retries it to the right bytes', async () => {
    const data = crypto.randomBytes(2_000_000);
    await (await direct('midbody')).put('data/11/p', data);
    const once = await viaProxy('midbody', { retryMaxAttempts: 1 });
    proxy.setRules([{ method: 'GET', times: 1, action: { reset: 'mid-body' } }]);
    const err = await failure(once.get('data/11/p'));
    expect(err.kind).toBe('transient');
    expect(err.message).toMatch(/data\/11\/p/);

    const s = await viaProxy('midbody');
    proxy.setRules([{ method: 'GET', times: 2, action: { reset: 'mid-body' } }]);
    expect((await s.get('data/11/p')).equals(data)).toBe(true);
    proxy.setRules([{ method: 'GET', times: 1, action: { reset: 'mid-body', after: 10 } }]);
    expect((await s.get('data/11/p', { offset: 500_000, length: 600_000 })).equals(data.subarray(500_000, 1_100_000))).toBe(true);
  });

  it('gives up on a stalled request after the request timeout, and the retry completes', async () => {
    const s = await viaProxy('stall');
    const data = crypto.randomBytes(50_000);
    proxy.setRules([{ method: 'PUT', times: 1, action: { stall: true } }]);
    await s.put('snapshots/s', data);
    proxy.setRules([{ method: 'GET', times: 1, action: { stall: true } }]);
    expect((await s.get('snapshots/s')).equals(data)).toBe(true);
    expect(proxy.log.filter((e) => e.fault === 'stall')).toHaveLength(2);
  });

  it('treats a lost reply to a create-if-absent write as success when our bytes landed', async () => {
    const s = await viaProxy('lost');
    proxy.setRules([{ method: 'PUT', times: 1, action: { reset: 'after-forward' } }]);
    await s.put('locks/l1', Buffer.from('lock record'), { ifNotExists: true });
    expect((await (await direct('lost')).get('locks/l1')).toString()).toBe('lock record');
    // And a real conflict is still a conflict.
    expect((await failure(s.put('locks/l1', Buffer.from('other'), { ifNotExists: true }))).kind).toBe('exists');
  });

  it('uploads 40 MiB in parts, retrying a failed part, byte for byte', async () => {
    const s = await viaProxy('multipart');
    const data = crypto.randomBytes(40 * 1024 * 1024);
    const start = proxy.log.length;
    proxy.setRules([{ method: 'PUT', path: /partNumber=2/, times: 1, action: { status: 500 } }]);
    await s.put('data/22/big', data);
    const log = proxy.log.slice(start);
    expect(log.some((e) => e.method === 'POST' && /\?uploads/.test(e.path))).toBe(true);
    expect(log.filter((e) => e.method === 'PUT' && /partNumber=/.test(e.path)).length).toBeGreaterThanOrEqual(6);
    expect(log.some((e) => e.method === 'DELETE' && /uploadId=/.test(e.path))).toBe(true);
    expect((await (await direct('multipart')).get('data/22/big')).equals(data)).toBe(true);
  });

  it('continues a paginated listing after a failed page', async () => {
    const s = await viaProxy('pages', { s3ListPageSize: 5 });
    const names = Array.from({ length: 23 }, (_, i) => `keys/k${String(i).padStart(2, '0')}`);
    for (const n of names) await s.put(n, Buffer.from(n));
    proxy.setRules([{ method: 'GET', path: /continuation-token=/, times: 2, action: { status: 503 } }]);
    const listed = (await collectList(s, 'keys/')).map((o) => o.name).sort();
    expect(listed).toEqual(names);
    expect(proxy.faults).toBeGreaterThanOrEqual(2);
  });

  it('fails cleanly after bounded attempts when the server keeps answering 503', async () => {
    const s = await viaProxy('persistent', { retryMaxAttempts: 5 });
    await (await direct('persistent')).put('config', Buffer.from('c'));
    proxy.setRules([{ method: 'GET', action: { status: 503, code: 'SlowDown' } }]);
    const before = proxy.count('GET');
    const err = await failure(s.get('config'));
    expect(proxy.count('GET') - before).toBe(5);
    expect(err.kind).toBe('transient');
    expect(err.message).toMatch(new RegExp(`^gave up after 5 attempts over \\d+\\.\\d s: S3 read config in bucket "${bucket}" at http://127\\.0\\.0\\.1:\\d+ failed: 503 SlowDown`));
    expect(err.message).not.toContain('\n');
  });

  it('fails at once on 403 AccessDenied, naming the bucket', async () => {
    const s = await viaProxy('denied');
    proxy.setRules([{ action: { status: 403, code: 'AccessDenied' } }]);
    const before = proxy.log.length;
    const err = await failure(s.put('snapshots/x', Buffer.from('x')));
    expect(proxy.log.length - before).toBe(1);
    expect(err.kind).toBe('permanent');
    expect(err.message).toBe(`access denied to bucket "${bucket}" at ${proxy.endpoint} (write snapshots/x); check the credentials and their permissions`);
  });

  it('fails at once with a clear line on a wrong secret or an unknown key, never showing the secret', async () => {
    const counter = new RequestCounter();
    const secret = 'not-the-secret-' + crypto.randomBytes(8).toString('hex');
    const wrongSecret = await openStorage(s3Location(bucket, 'creds'), {
      s3Credentials: { accessKeyId: s3Server().accessKeyId, secretAccessKey: secret },
      noCache: true,
      countRequests: counter,
    });
    opened.push(wrongSecret);
    const e1 = await failure(wrongSecret.get('config'));
    expect(e1.kind).toBe('permanent');
    expect(e1.message).toMatch(/rejected the request signature .*check AWS_SECRET_ACCESS_KEY/);
    expect(e1.message).not.toContain(secret);
    expect(counter.snapshot().get).toBe(1);

    const unknownKey = await openStorage(s3Location(bucket, 'creds'), {
      s3Credentials: { accessKeyId: 'AKIDNOBODY', secretAccessKey: secret },
      noCache: true,
    });
    opened.push(unknownKey);
    const e2 = await failure(collectList(unknownKey, ''));
    expect(e2.kind).toBe('permanent');
    expect(e2.message).toMatch(new RegExp(`does not know this access key \\(bucket "${bucket}"`));
    expect(e2.message).not.toContain(secret);
  });

  it('reports a missing bucket on reads, and creates it on the first write (saying so)', async () => {
    const name = `aegis-missing-${crypto.randomBytes(4).toString('hex')}`;
    const notices: string[] = [];
    const s = await openStorage(s3Location(name, 'repo'), { ...s3Options(), noCache: true, onNotice: (m) => notices.push(m) });
    opened.push(s);
    const err = await failure(collectList(s, ''));
    expect(err.kind).toBe('permanent');
    expect(err.message).toBe(`bucket "${name}" at ${s3Server().endpoint} does not exist (while trying to list objects)`);
    expect((await failure(s.stat('config'))).kind).toBe('not-found');
    await s.put('keys/k', Buffer.from('key'));
    expect(notices).toEqual([`created bucket "${name}" at ${s3Server().endpoint}`]);
    expect((await s.get('keys/k')).toString()).toBe('key');

    const other = `aegis-nocreate-${crypto.randomBytes(4).toString('hex')}`;
    const refuse = await openStorage(s3Location(other), { ...s3Options(), noCache: true, s3CreateBucket: false });
    opened.push(refuse);
    expect((await failure(refuse.put('config', Buffer.from('c')))).message).toMatch(/does not exist/);
  });
});
