import { type ByteRange, type GetOptions, type ObjectInfo, type PutFileOptions, type PutOptions, type Staging, type Storage, sliceRange } from './storage.js';

/** Whole tree packs kept in memory by one process. */
const MEMO_BYTES = 64 * 1024 * 1024;

/**
 * Whole packs in memory, most recently used last, bounded in bytes; concurrent
 * requests for one pack share one load.
 */
export class WholePackMemo {
  private readonly packs = new Map<string, Buffer>();
  private readonly loading = new Map<string, Promise<Buffer>>();
  private bytes = 0;

  constructor(private readonly maxBytes = MEMO_BYTES) {}

  get(name: string, load: () => Promise<Buffer>): Promise<Buffer> {
    const hit = this.packs.get(name);
    if (hit) {
      this.packs.delete(name);
      this.packs.set(name, hit);
      return Promise.resolve(hit);
    }
    let p = this.loading.get(name);
    if (!p) {
      p = load().then((data) => {
        this.remember(name, data);
        return data;
      });
      const settled = () => this.loading.delete(name);
      p.then(settled, settled);
      this.loading.set(name, p);
    }
    return p;
  }

  forget(name: string): void {
    const had = this.packs.get(name);
    if (had) this.bytes -= had.length;
    this.packs.delete(name);
  }

  private remember(name: string, data: Buffer): void {
    this.packs.set(name, data);
    this.bytes += data.length;
    for (const [k, v] of this.packs) {
      if (this.bytes <= this.maxBytes || k === name) break;
      this.packs.delete(k);
      this.bytes -= v.length;
    }
  }
}

/**
 * Tree blobs live in packs of their own (the backup writes them apart from
 * data), and a walk of a snapshot reads many trees from the same few packs. So
 * the first tree read of a pack reads the whole pack once, and later tree reads
 * from it are slices of memory: a restore of 1,500 directories made 1,500 ranged
 * reads (three file system calls each on a local disk) where it now makes one.
 * Packs are immutable, so this is never stale; a `fresh` read bypasses it. For
 * remote repositories the cache (cache.ts) does the same with the same memo and
 * also keeps the whole pack on disk; this decorator serves the others.
 */
export class TreePackMemo implements Storage {
  readonly location: string;
  private readonly memo = new WholePackMemo();

  constructor(readonly inner: Storage) {
    this.location = inner.location;
  }

  async get(name: string, range?: ByteRange, options: GetOptions = {}): Promise<Buffer> {
    if (!range || options.kind !== 'tree' || options.fresh || !name.startsWith('data/')) return this.inner.get(name, range, options);
    return sliceRange(name, await this.memo.get(name, () => this.inner.get(name, undefined, options)), range);
  }

  put(name: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return this.inner.put(name, data, options);
  }

  putFile(name: string, file: string, options?: PutFileOptions): Promise<void> {
    return this.inner.putFile(name, file, options);
  }

  staging(): Promise<Staging> {
    return this.inner.staging();
  }

  stat(name: string): Promise<ObjectInfo> {
    return this.inner.stat(name);
  }

  localPath(name: string): string | undefined {
    return this.inner.localPath?.(name);
  }

  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix);
  }

  async delete(name: string): Promise<void> {
    this.memo.forget(name);
    await this.inner.delete(name);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
