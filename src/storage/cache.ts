import crypto from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type ByteRange, type GetOptions, type ObjectInfo, type PutFileOptions, type PutOptions, type Staging, type Storage, isNotFound, sliceRange } from './storage.js';
import { WholePackMemo } from './tree-memo.js';
import { makeDirs } from '../util/make-dirs.js';

/**
 * The local cache of a remote repository (docs/S3.md, "The local cache").
 *
 * Where: <root>/<key>, root = AEGIS_CACHE_DIR, else $XDG_CACHE_HOME/aegis, else
 * ~/.cache/aegis; key = the first 32 hex digits of SHA-256(location string). The
 * repository ID cannot be the key: it is sealed in the config, unknown before the
 * repository is unlocked, and the cache must already serve that unlocking.
 *
 * What:
 * - whole objects that are written once and never modified: config, keys/*,
 *   index/*, snapshots/* (objects/<name>);
 * - byte ranges of packs (data/*) as read by restore, mount, ls and diff, in an
 *   on-disk LRU bounded by maxBytes (ranges/{tree,data}/<xx>/<pack>.<offset>.<length>);
 *   data ranges are evicted before tree ranges;
 * - listings of keys/, index/ and snapshots/ for listingTtlMs (listings/<dir>.json).
 *
 * Listings trade freshness for round trips: within the TTL a second `snapshots`
 * or `ls` makes no request at all, and another client's new snapshot shows up at
 * most one TTL later. Staleness never reaches an operation that changes the
 * repository: writing a lock (every backup, forget, prune and check takes one
 * before it reads the index) drops every cached listing, so anything done under
 * a lock lists the backend itself. Further:
 * - a fresh listing removes cached objects it no longer shows (or whose size changed);
 * - writes through this cache update the cached listing and cache what they wrote
 *   (except packs and locks);
 * - a get of a cached-listed object that the backend no longer has drops it;
 * - a pack range that comes back not-found drops the index and snapshot listings
 *   (someone pruned);
 * - refresh() drops every listing; invalidate(name) drops one object and its ranges;
 *   a get with { fresh: true } bypasses the cache and replaces the cached copy.
 *
 * Safety: every file is written to a temporary name and renamed into place, and
 * ends with a SHA-256 of its content that is checked on every read, so a torn or
 * rotten file is a miss (and is removed), never wrong bytes. Any file, or the
 * whole directory, may be deleted at any time. Failures to write the cache are
 * ignored: a cache miss never fails a read that the backend could serve. The
 * repository layer authenticates every byte anyway; when it finds damage it asks
 * for the object again with { fresh: true } (or calls dropFromCache), so the cache
 * never keeps serving a damaged copy.
 */
export interface CacheOptions {
  /** This location's cache directory (see cacheDirFor). */
  dir: string;
  /** Byte budget of cached pack ranges (default 1 GiB). Whole objects are not counted. */
  maxBytes?: number;
  /** How long a cached listing is served without asking the backend, in ms (default 60 000; 0 = never). */
  listingTtlMs?: number;
  /** Clock for listing and stat freshness (tests). */
  now?: () => number;
  /** Told once if the cache directory cannot be written. */
  onNotice?: (message: string) => void;
}

export const CACHE_DEFAULTS = {
  maxBytes: 1024 ** 3,
  listingTtlMs: 60_000,
} as const;

const HASH_BYTES = 32;
const LISTED = new Set(['keys/', 'index/', 'snapshots/']);
const SAFE = '[A-Za-z0-9_-][A-Za-z0-9._-]*';
const WHOLE = new RegExp(`^(config|(keys|index|snapshots)/${SAFE})$`);
const PACK = new RegExp(`^data/(${SAFE})/(${SAFE})$`);

export function defaultCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.AEGIS_CACHE_DIR) return path.resolve(env.AEGIS_CACHE_DIR);
  if (env.XDG_CACHE_HOME) return path.join(path.resolve(env.XDG_CACHE_HOME), 'aegis');
  return path.join(os.homedir(), '.cache', 'aegis');
}

/** The cache directory of a location: <root>/<first 32 hex digits of SHA-256(location)>. */
export function cacheDirFor(location: string, root: string = defaultCacheRoot()): string {
  return path.join(root, crypto.createHash('sha256').update(location, 'utf8').digest('hex').slice(0, 32));
}

interface Listing {
  t: number;
  e: Array<[string, number]>;
}

interface RangeFile {
  file: string;
  size: number;
  mtimeMs: number;
  tree: boolean;
}

export class CachedStorage implements Storage {
  readonly location: string;
  readonly dir: string;
  private readonly maxBytes: number;
  private readonly ttl: number;
  private readonly now: () => number;
  private readonly background = new Set<Promise<unknown>>();
  private readonly inflight = new Map<string, Promise<Buffer>>();
  /** Whole tree packs in memory (see wholeTreePack). */
  private readonly treePacks = new WholePackMemo();
  private rangeBytes: number | undefined;
  private sizing: Promise<number> | undefined;
  private evicting: Promise<void> | undefined;
  private addedDuringEviction = 0;
  private prepared = false;
  private warned = false;

  constructor(
    readonly inner: Storage,
    private readonly options: CacheOptions,
  ) {
    this.location = inner.location;
    this.dir = options.dir;
    this.maxBytes = options.maxBytes ?? CACHE_DEFAULTS.maxBytes;
    this.ttl = options.listingTtlMs ?? CACHE_DEFAULTS.listingTtlMs;
    this.now = options.now ?? Date.now;
  }

  // ---- paths ----------------------------------------------------------------------

  private objectFile(name: string): string {
    return path.join(this.dir, 'objects', ...name.split('/'));
  }

  private listingFile(prefix: string): string {
    return path.join(this.dir, 'listings', `${prefix.slice(0, -1)}.json`);
  }

  private rangeFile(name: string, range: ByteRange, tree: boolean): string | undefined {
    const m = PACK.exec(name);
    if (!m) return undefined;
    return path.join(this.dir, 'ranges', tree ? 'tree' : 'data', m[1]!, `${m[2]}.${range.offset}.${range.length}`);
  }

  // ---- Storage ----------------------------------------------------------------------

  async put(name: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    await this.inner.put(name, data, options);
    if (name.startsWith('locks/')) {
      // Whoever takes a lock is about to change the repository or rely on its state:
      // from now on this process lists the backend itself.
      await this.dropListings();
      return;
    }
    if (WHOLE.test(name)) {
      await this.storeObject(name, data);
      await this.editListing(name, data.byteLength);
    }
  }

  async putFile(name: string, file: string, options?: PutFileOptions): Promise<void> {
    // Objects this cache keeps whole are small; read before the backend takes the file.
    const copy = WHOLE.test(name) ? await fsp.readFile(file) : undefined;
    await this.inner.putFile(name, file, options);
    if (name.startsWith('locks/')) await this.dropListings();
    if (copy) {
      await this.storeObject(name, copy);
      await this.editListing(name, copy.byteLength);
    }
  }

  staging(): Promise<Staging> {
    return this.inner.staging();
  }

  async get(name: string, range?: ByteRange, options: GetOptions = {}): Promise<Buffer> {
    if (WHOLE.test(name)) return this.getWhole(name, range, options);
    if (range && PACK.test(name)) return this.getRange(name, range, options);
    return this.inner.get(name, range, options);
  }

  private async getWhole(name: string, range: ByteRange | undefined, options: GetOptions): Promise<Buffer> {
    if (!options.fresh) {
      const cached = await this.readVerified(this.objectFile(name));
      if (cached) return range ? sliceRange(name, cached, range) : cached;
    }
    const whole = await this.once(`o:${name}`, async () => {
      let data: Buffer;
      try {
        data = await this.inner.get(name, undefined, options);
      } catch (err) {
        if (isNotFound(err)) await this.forget(name);
        throw err;
      }
      await this.storeObject(name, data);
      return data;
    });
    return range ? sliceRange(name, whole, range) : whole;
  }

  private async getRange(name: string, range: ByteRange, options: GetOptions): Promise<Buffer> {
    const tree = options.kind === 'tree';
    if (tree && !options.fresh) return sliceRange(name, await this.wholeTreePack(name), range);
    const preferred = this.rangeFile(name, range, tree)!;
    const other = this.rangeFile(name, range, !tree)!;
    if (!options.fresh) {
      for (const file of [preferred, other]) {
        const cached = await this.readVerified(file);
        if (cached && cached.length === range.length) {
          this.track(touch(file));
          return cached;
        }
      }
    }
    return this.once(`r:${preferred}`, async () => {
      let data: Buffer;
      try {
        data = await this.inner.get(name, range, options);
      } catch (err) {
        // The index named a pack the backend does not have: someone pruned. List afresh next time.
        if (isNotFound(err)) await this.dropListings(['index/', 'snapshots/']);
        throw err;
      }
      if (options.fresh) await rmQuiet(other);
      if (options.keep !== false && data.length <= this.maxBytes / 8) await this.storeRange(preferred, data);
      return data;
    });
  }

  /**
   * Tree blobs live in packs of their own (the backup writes them apart from
   * data), and a walk of a snapshot reads many trees from the same few packs. So
   * the first tree read of a pack fetches the whole pack in one request, keeps it
   * on disk with the tree ranges, and in memory (up to 64 MiB, tree-memo.ts) so later
   * reads cost neither a request nor a re-hash. Packs are immutable, so this is
   * never stale.
   */
  private wholeTreePack(name: string): Promise<Buffer> {
    return this.treePacks.get(name, async () => {
      const m = PACK.exec(name)!;
      const file = path.join(this.dir, 'ranges', 'tree', m[1]!, `${m[2]}.whole`);
      let data = await this.readVerified(file);
      if (data) this.track(touch(file));
      else {
        try {
          data = await this.inner.get(name);
        } catch (err) {
          if (isNotFound(err)) await this.dropListings(['index/', 'snapshots/']);
          throw err;
        }
        if (data.length <= this.maxBytes / 8) await this.storeRange(file, data);
      }
      return data;
    });
  }

  async stat(name: string): Promise<ObjectInfo> {
    if (!WHOLE.test(name)) return this.inner.stat(name);
    const prefix = listedPrefix(name);
    if (prefix) {
      const listing = await this.freshListing(prefix);
      const entry = listing?.e.find(([n]) => n === name);
      if (entry) return { name, size: entry[1] };
    } else {
      // config: served from the cached copy while it was confirmed within the TTL.
      const file = this.objectFile(name);
      const st = await fsp.stat(file).catch(() => undefined);
      if (st && this.ttl > 0 && this.isFresh(st.mtimeMs) && st.size >= HASH_BYTES) return { name, size: st.size - HASH_BYTES };
    }
    let info: ObjectInfo;
    try {
      info = await this.inner.stat(name);
    } catch (err) {
      if (isNotFound(err)) await this.forget(name);
      throw err;
    }
    const file = this.objectFile(name);
    const st = await fsp.stat(file).catch(() => undefined);
    if (st) {
      if (st.size - HASH_BYTES !== info.size) await rmQuiet(file);
      else await this.confirm(file);
    }
    return info;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    if (!LISTED.has(prefix)) {
      yield* this.inner.list(prefix);
      return;
    }
    const cached = await this.freshListing(prefix);
    if (cached) {
      for (const [name, size] of cached.e) yield { name, size };
      return;
    }
    const started = this.now();
    const entries: Array<[string, number]> = [];
    for await (const info of this.inner.list(prefix)) entries.push([info.name, info.size]);
    if (this.ttl > 0) await this.writeJson(this.listingFile(prefix), { t: started, e: entries } satisfies Listing);
    await this.reconcile(prefix, entries);
    for (const [name, size] of entries) yield { name, size };
  }

  async delete(name: string): Promise<void> {
    await this.inner.delete(name);
    if (WHOLE.test(name)) await this.forget(name);
    else if (PACK.test(name)) {
      this.treePacks.forget(name);
      await this.dropRanges(name);
    }
  }

  async close(): Promise<void> {
    await this.settle();
    await this.inner.close();
  }

  // ---- control ----------------------------------------------------------------------

  /** Forget every cached listing: the next list (and stat of config) asks the backend. */
  async refresh(): Promise<void> {
    await this.dropListings();
    await fsp.utimes(this.objectFile('config'), 0, 0).catch(() => {});
  }

  /** Drop the cached copy of one object (and every cached range of it). */
  async invalidate(name: string): Promise<void> {
    if (WHOLE.test(name)) await rmQuiet(this.objectFile(name));
    if (PACK.test(name)) await this.dropRanges(name);
  }

  /** Wait for background work (eviction, recency updates); tests call it before looking at the disk. */
  async settle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /** Bytes of cached pack ranges on disk (a scan). */
  async rangeBytesOnDisk(): Promise<number> {
    return (await this.scanRanges()).reduce((sum, f) => sum + f.size, 0);
  }

  // ---- listings ---------------------------------------------------------------------

  private isFresh(t: number): boolean {
    const age = this.now() - t;
    return age >= 0 && age < this.ttl;
  }

  private async freshListing(prefix: string): Promise<Listing | undefined> {
    if (this.ttl <= 0) return undefined;
    const listing = await this.readJson<Listing>(this.listingFile(prefix));
    if (!listing || typeof listing.t !== 'number' || !Array.isArray(listing.e) || !this.isFresh(listing.t)) return undefined;
    return listing;
  }

  /** Add (size ≥ 0) or remove (size < 0) a name in the cached listing of its prefix, if there is one. */
  private async editListing(name: string, size: number): Promise<void> {
    const prefix = listedPrefix(name);
    if (!prefix || this.ttl <= 0) return;
    const file = this.listingFile(prefix);
    const listing = await this.readJson<Listing>(file);
    if (!listing || !Array.isArray(listing.e)) return;
    const entries = listing.e.filter(([n]) => n !== name);
    if (size >= 0) entries.push([name, size]);
    else if (entries.length === listing.e.length) return;
    await this.writeJson(file, { t: listing.t, e: entries } satisfies Listing);
  }

  private async dropListings(prefixes: Iterable<string> = LISTED): Promise<void> {
    await Promise.all([...prefixes].map((p) => rmQuiet(this.listingFile(p))));
  }

  /** After a fresh listing: drop cached objects that are gone or changed size. */
  private async reconcile(prefix: string, entries: Array<[string, number]>): Promise<void> {
    const dir = path.join(this.dir, 'objects', prefix.slice(0, -1));
    let files: string[];
    try {
      files = await fsp.readdir(dir);
    } catch {
      return;
    }
    const sizes = new Map(entries);
    await Promise.all(
      files.map(async (f) => {
        const file = path.join(dir, f);
        if (f.startsWith('.tmp-')) {
          // Left by a process that died between writing and renaming; any writer is long done after an hour.
          const st = await fsp.stat(file).catch(() => undefined);
          if (st && Date.now() - st.mtimeMs > 3_600_000) await rmQuiet(file);
          return;
        }
        const size = sizes.get(prefix + f);
        if (size === undefined) return rmQuiet(file);
        const st = await fsp.stat(file).catch(() => undefined);
        if (st && st.size - HASH_BYTES !== size) await rmQuiet(file);
      }),
    );
  }

  /** An object is gone: drop its copy and its listing entry. */
  private async forget(name: string): Promise<void> {
    await rmQuiet(this.objectFile(name));
    await this.editListing(name, -1);
  }

  // ---- objects and ranges -------------------------------------------------------------

  private async storeObject(name: string, data: Uint8Array): Promise<void> {
    const file = this.objectFile(name);
    if (await this.writeVerified(file, data)) await this.confirm(file);
  }

  /** Mark a cached object as confirmed by the backend now (mtime; used for config's stat). */
  private async confirm(file: string): Promise<void> {
    const t = this.now() / 1000;
    await fsp.utimes(file, t, t).catch(() => {});
  }

  private async storeRange(file: string, data: Buffer): Promise<void> {
    if (!(await this.writeVerified(file, data))) return;
    const size = data.length + HASH_BYTES;
    if (this.rangeBytes === undefined) {
      // First store in this process: learn what earlier processes left (one scan, shared).
      this.sizing ??= this.rangeBytesOnDisk().finally(() => {
        this.sizing = undefined;
      });
      const onDisk = await this.sizing;
      this.rangeBytes ??= onDisk;
    } else {
      this.rangeBytes += size;
      if (this.evicting) this.addedDuringEviction += size;
    }
    if (this.rangeBytes > this.maxBytes && !this.evicting) {
      this.evicting = this.evict().finally(() => {
        this.evicting = undefined;
      });
      this.track(this.evicting);
    }
  }

  private async scanRanges(): Promise<RangeFile[]> {
    const out: RangeFile[] = [];
    for (const kind of ['data', 'tree']) {
      const base = path.join(this.dir, 'ranges', kind);
      const subdirs = await fsp.readdir(base).catch(() => [] as string[]);
      for (const sub of subdirs) {
        const dir = path.join(base, sub);
        const names = await fsp.readdir(dir).catch(() => [] as string[]);
        await Promise.all(
          names.map(async (n) => {
            const file = path.join(dir, n);
            const st = await fsp.stat(file).catch(() => undefined);
            if (st?.isFile()) out.push({ file, size: st.size, mtimeMs: st.mtimeMs, tree: kind === 'tree' });
          }),
        );
      }
    }
    return out;
  }

  /**
   * Delete least recently used ranges, data before tree, until 90 % of the budget is
   * left; again if ranges stored meanwhile pushed it over.
   */
  private async evict(): Promise<void> {
    const target = Math.floor(this.maxBytes * 0.9);
    for (;;) {
      this.addedDuringEviction = 0;
      const files = await this.scanRanges();
      let total = files.reduce((s, f) => s + f.size, 0);
      let removed = 0;
      if (total > this.maxBytes) {
        files.sort((a, b) => Number(a.tree) - Number(b.tree) || a.mtimeMs - b.mtimeMs);
        for (const f of files) {
          if (total <= target) break;
          if (await rmQuiet(f.file)) {
            total -= f.size;
            removed++;
          }
        }
      }
      // Ranges stored during the scan may be counted twice: an over-estimate only costs a rescan.
      this.rangeBytes = total + this.addedDuringEviction;
      if (this.rangeBytes <= this.maxBytes || (removed === 0 && this.addedDuringEviction === 0)) return;
    }
  }

  private async dropRanges(name: string): Promise<void> {
    const m = PACK.exec(name);
    if (!m) return;
    for (const kind of ['data', 'tree']) {
      const dir = path.join(this.dir, 'ranges', kind, m[1]!);
      const names = await fsp.readdir(dir).catch(() => [] as string[]);
      await Promise.all(names.filter((n) => n.startsWith(`${m[2]}.`)).map((n) => rmQuiet(path.join(dir, n))));
    }
    this.rangeBytes = undefined;
  }

  // ---- files ------------------------------------------------------------------------

  /** Content ‖ SHA-256(content), written to a temporary name and renamed: never a torn file. */
  private async writeVerified(file: string, data: Uint8Array): Promise<boolean> {
    const digest = crypto.createHash('sha256').update(data).digest();
    try {
      await this.prepare();
      const dir = path.dirname(file);
      const tmp = path.join(dir, `.tmp-${crypto.randomBytes(6).toString('hex')}`);
      try {
        await writeParts(tmp, [data, digest]);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        // The directory is new, or was deleted under us (then the tag goes back too).
        this.prepared = false;
        await this.prepare();
        await makeDirs(dir);
        await writeParts(tmp, [data, digest]);
      }
      try {
        await fsp.rename(tmp, file);
      } catch (err) {
        await rmQuiet(tmp);
        throw err;
      }
      return true;
    } catch (err) {
      if (!this.warned) {
        this.warned = true;
        this.options.onNotice?.(`cannot write the cache in ${this.dir} (${(err as Error).message}); continuing without it`);
      }
      return false;
    }
  }

  private async readVerified(file: string): Promise<Buffer | undefined> {
    let raw: Buffer;
    try {
      raw = await fsp.readFile(file);
    } catch {
      return undefined;
    }
    if (raw.length >= HASH_BYTES) {
      const body = raw.subarray(0, raw.length - HASH_BYTES);
      const digest = crypto.createHash('sha256').update(body).digest();
      if (digest.equals(raw.subarray(raw.length - HASH_BYTES))) return body;
    }
    await rmQuiet(file); // torn or rotten: a miss, and gone
    return undefined;
  }

  private async writeJson(file: string, value: unknown): Promise<void> {
    await this.writeVerified(file, Buffer.from(JSON.stringify(value), 'utf8'));
  }

  private async readJson<T>(file: string): Promise<T | undefined> {
    const raw = await this.readVerified(file);
    if (!raw) return undefined;
    try {
      return JSON.parse(raw.toString('utf8')) as T;
    } catch {
      await rmQuiet(file);
      return undefined;
    }
  }

  /** Once per process: the directory, a CACHEDIR.TAG (backup tools skip it) and a note of the location. */
  private async prepare(): Promise<void> {
    if (this.prepared) return;
    await makeDirs(this.dir);
    const tag = 'Signature: 8a477f597d28d172789f06886806bc55\n# This directory is a cache made by Aegis (aegis backup); it can be deleted at any time.\n';
    await fsp.writeFile(path.join(this.dir, 'CACHEDIR.TAG'), tag).catch(() => {});
    await fsp.writeFile(path.join(this.dir, 'location'), `${this.location}\n`).catch(() => {});
    this.prepared = true;
  }

  private once(key: string, fn: () => Promise<Buffer>): Promise<Buffer> {
    const running = this.inflight.get(key);
    if (running) return running;
    const p = fn().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private track(p: Promise<unknown>): void {
    const tracked = p.catch(() => {}).finally(() => this.background.delete(tracked));
    this.background.add(tracked);
  }
}

/** Drop a cached object from whatever cache wraps this storage (no-op without one). */
export async function dropFromCache(storage: Storage, name: string): Promise<void> {
  if (storage instanceof CachedStorage) await storage.invalidate(name);
}

function listedPrefix(name: string): string | undefined {
  const slash = name.indexOf('/');
  if (slash < 0) return undefined;
  const prefix = name.slice(0, slash + 1);
  return LISTED.has(prefix) ? prefix : undefined;
}


async function writeParts(file: string, parts: Uint8Array[]): Promise<void> {
  await fsp.writeFile(file, Buffer.concat(parts), { flag: 'wx', mode: 0o600 });
}

async function touch(file: string): Promise<void> {
  const t = new Date();
  await fsp.utimes(file, t, t);
}

/** Remove a file if it is there; true unless removing failed. */
async function rmQuiet(file: string): Promise<boolean> {
  return fsp.rm(file, { force: true }).then(
    () => true,
    () => false,
  );
}
