import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BlobCache } from '../mount/blob-cache.js';
import { ARENA_UNIT, BlobArena } from '../mount/blob-arena.js';
import { type OpenedBlob, type RangeBlob } from '../src/workers/pool.js';
import { OpenFile } from '../mount/file.js';
import { childIno, hardlinkIno } from '../mount/inodes.js';
import { decodeName, displayName, safeVirtualName } from '../mount/names.js';
import { ReadAhead } from '../mount/readahead.js';
import { SnapshotSet, type VirtualDir, checkTemplate, timeName } from '../mount/snapshots-dir.js';
import { type Snapshot } from '../src/snapshot/snapshot.js';
import { decodeTreeSliced, toEntry } from '../mount/tree-cache.js';
import { decodeTreeLocations } from '../src/repo/index.js';
import { type FileNode } from '../mount/types.js';
import { parseSize } from '../src/cli/commands/mount.js';
import { type BlobLocation, decodeIndex, encodeIndex } from '../src/repo/index.js';
import { blobsOf, entriesOf } from './helpers/pack-entries.js';
import { type Repository } from '../src/repo/repository.js';
import { type TreeNode, decodeTree, encodeTree } from '../src/snapshot/tree.js';

describe('names', () => {
  it('shows valid UTF-8 unchanged', () => {
    for (const s of ['plain.txt', 'café', '日本語', '🦀 crab', 'with space and\nnewline', '\ufffd literal replacement char']) {
      expect(displayName(Buffer.from(s))).toBe(s);
      expect(decodeName(s).equals(Buffer.from(s))).toBe(true);
    }
  });

  it('maps bytes that are not UTF-8 to U+EF80–U+EFFF, one to one', () => {
    expect(displayName(Buffer.from([0x61, 0xff, 0x62]))).toBe('a\uefffb');
    expect(displayName(Buffer.from([0xc3]))).toBe('\uefc3'); // a lone lead byte
    expect(displayName(Buffer.from([0xc3, 0xa9, 0xff]))).toBe('é\uefff'); // valid sequence kept, stray byte mapped
    expect(displayName(Buffer.from([0xed, 0xa0, 0x80]))).toBe('\uefed\uefa0\uef80'); // an encoded surrogate is not UTF-8
    // A name that really contains a character of the escape range is escaped too, so nothing collides.
    const real = Buffer.from('x\uefffy');
    expect(displayName(real)).not.toBe('x\uefffy');
    expect(decodeName(displayName(real)).equals(real)).toBe(true);
    expect(displayName(real)).not.toBe(displayName(Buffer.from([0x78, 0xff, 0x79])));
  });

  it('round-trips any bytes and always yields valid UTF-8', () => {
    let seed = 7;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const seen = new Map<string, string>();
    for (let i = 0; i < 3000; i++) {
      const len = 1 + rand(24);
      const b = Buffer.alloc(len);
      for (let k = 0; k < len; k++) {
        let v = rand(4) === 0 ? 0x80 + rand(0x80) : rand(3) === 0 ? 0xe0 + rand(0x20) : 0x20 + rand(0x60);
        if (v === 0x2f) v = 0x41;
        b[k] = v;
      }
      const shown = displayName(b);
      expect(Buffer.from(shown, 'utf8').toString('utf8')).toBe(shown);
      expect(decodeName(shown).equals(b)).toBe(true);
      const hex = b.toString('hex');
      const before = seen.get(shown);
      if (before !== undefined) expect(before).toBe(hex);
      seen.set(shown, hex);
    }
  });

  it('keeps made-up names usable as file names', () => {
    expect(safeVirtualName('a/b')).toBe('a\u2215b');
    expect(safeVirtualName('..')).toBe('_..');
    expect(safeVirtualName('')).toBe('_');
  });
});

describe('inode numbers', () => {
  it('are stable, never 0 or 1, and differ by name and parent', () => {
    expect(childIno(1, 'snapshots')).toBe(childIno(1, 'snapshots'));
    const all = new Set<number>();
    let above32 = 0;
    for (let i = 0; i < 200_000; i++) {
      const n = childIno(12345 + 2 ** 40, `entry-${i}`);
      expect(n).toBeGreaterThan(1);
      expect(Number.isSafeInteger(n) && n < 2 ** 52).toBe(true);
      if (n >= 2 ** 32) above32++;
      all.add(n);
    }
    // 52-bit numbers: 200,000 names share none (32 bits would give about 5 pairs).
    expect(all.size).toBe(200_000);
    expect(above32).toBeGreaterThan(190_000);
    expect(childIno(2, 'x')).not.toBe(childIno(3, 'x'));
    // The parent's high bits count too.
    expect(childIno(5, 'x')).not.toBe(childIno(5 + 2 ** 40, 'x'));
    expect(hardlinkIno(99, '2049:1234')).toBe(hardlinkIno(99, '2049:1234'));
    expect(hardlinkIno(99, '2049:1234')).not.toBe(hardlinkIno(100, '2049:1234'));
  });
});

describe('read-ahead', () => {
  it('grows its window on sequential reads and stops on random ones', () => {
    const ra = new ReadAhead({ min: 1 << 20, max: 8 << 20, slack: 1 << 20 });
    const size = 1 << 30;
    const first = ra.onRead(0, 131072, size)!;
    expect(first).toEqual({ from: 131072, to: 131072 + (1 << 20) });
    ra.requestedTo = first.to;
    // More than half a window still ahead: nothing new to ask for.
    expect(ra.onRead(131072, 131072, size)).toBeUndefined();
    let pos = 262144;
    let widest = 0;
    for (let i = 0; i < 200; i++, pos += 131072) {
      const r = ra.onRead(pos, 131072, size);
      if (r) {
        expect(r.from).toBe(ra.requestedTo);
        widest = Math.max(widest, r.to - (pos + 131072));
        ra.requestedTo = r.to;
      }
    }
    expect(widest).toBe(8 << 20);
    expect(ra.onRead(500 << 20, 4096, size)).toBeUndefined(); // a jump
    expect(ra.onRead(100 << 20, 4096, size)).toBeUndefined(); // and another
  });

  it('never asks past the end of the file', () => {
    const ra = new ReadAhead({ min: 1 << 20, max: 8 << 20 });
    expect(ra.onRead(0, 100, 5000)).toEqual({ from: 100, to: 5000 });
    expect(ra.onRead(0, 100, 100)).toBeUndefined();
  });
});

describe('path templates and names', () => {
  it('accepts restic-style templates and rejects the rest', () => {
    expect(checkTemplate('hosts/%h/%T')).toEqual(['hosts', '%h', '%T']);
    expect(checkTemplate('/by/%u/%t//%i/')).toEqual(['by', '%u', '%t', '%i']);
    expect(() => checkTemplate('x/%q')).toThrow(/unknown placeholder "%q"/);
    expect(() => checkTemplate('snapshots/%T')).toThrow(/reserved/);
    expect(() => checkTemplate('a/../%T')).toThrow(/not allowed/);
    expect(() => checkTemplate('hosts/%h')).toThrow(/last component/);
    expect(() => checkTemplate('')).toThrow(/empty/);
  });

  it('names snapshot directories by local time with dashes', () => {
    const d = new Date(2026, 10, 23, 20, 14, 51, 999);
    expect(timeName(d.toISOString())).toBe('2026-11-23T20-14-51');
    expect(timeName('not a time')).toBe('unknown-time');
  });

  it("keeps a snapshot's name while mounted: a forgotten one's name is never given to another", async () => {
    const snaps = new Map<string, Snapshot>();
    const add = (id: string, time: string) => snaps.set(id, { time, tree: 'f'.repeat(64), paths: ['/data'], hostname: 'h', username: 'u', tags: ['t'] } as Snapshot);
    const repo = {
      storage: {},
      listSnapshots: async () => [...snaps].map(([id, snapshot]) => ({ id, snapshot })),
    };
    const ctx = { repo, index: { reload: async () => {} }, log: () => {}, uid: 0, gid: 0 } as never;
    const set = new SnapshotSet(ctx, { minRefreshMs: 0 });
    const names = (dir: string) => [...(set.root.children.get(dir) as VirtualDir).children.keys()].sort();
    const inHost = () => [...((set.root.children.get('hosts') as VirtualDir).children.get('h') as VirtualDir).children.keys()].sort();
    const a = 'a'.repeat(64);
    const b = 'b'.repeat(64);
    const c = 'c'.repeat(64);
    const t = '2026-11-23T20:14:51.100Z';
    const base = timeName(t);
    add(a, t);
    add(b, '2026-11-23T20:14:51.600Z'); // the same second
    await set.refresh();
    expect(names('snapshots')).toEqual([base, `${base}-1`, 'latest']);
    expect(inHost()).toEqual([base, `${base}-1`, 'latest']);
    snaps.delete(a);
    await set.refresh();
    expect(names('snapshots')).toEqual([`${base}-1`, 'latest']);
    expect(inHost()).toEqual([`${base}-1`, 'latest']);
    // A new snapshot of that second gets a name never shown before.
    add(c, '2026-11-23T20:14:51.900Z');
    await set.refresh();
    expect(names('snapshots')).toEqual([`${base}-1`, `${base}-2`, 'latest']);
    expect(set.snapshots.map((s) => [s.id, s.name])).toEqual([[b, `${base}-1`], [c, `${base}-2`]]);
  });

  it('parses --cache-size', () => {
    expect(parseSize('256M')).toBe(256 * 1024 * 1024);
    expect(parseSize('1G')).toBe(1024 ** 3);
    expect(parseSize('512MiB')).toBe(512 * 1024 * 1024);
    expect(parseSize('1.5g')).toBe(1.5 * 1024 ** 3);
    expect(parseSize('4096')).toBe(4096);
    expect(() => parseSize('lots')).toThrow(/invalid size/);
  });
});

describe('tree decoding in slices', () => {
  it('gives exactly what the format decoder gives, for a large tree with awkward names', async () => {
    const nodes: TreeNode[] = [];
    for (let i = 0; i < 6000; i++) {
      const tricky = ['plain', 'with "quotes"', 'brace}{', 'brack]et[', 'back\\slash', 'comma,', 'nl\n'][i % 7]!;
      const name = i % 11 === 0 ? Buffer.concat([Buffer.from(`raw-${i}-`), Buffer.from([0xff, 0xfe])]) : Buffer.from(`${tricky}-${i}`);
      nodes.push({
        name,
        type: i % 5 === 0 ? 'dir' : i % 13 === 0 ? 'symlink' : 'file',
        mode: 0o644,
        uid: i,
        gid: i + 1,
        mtimeNs: 1_700_000_000_123_456_789n + BigInt(i),
        atimeNs: 1_700_000_000_000_000_000n,
        ctimeNs: 1_700_000_000_000_000_000n,
        size: i * 10,
        dev: '2049',
        inode: String(1000 + i),
        links: i % 17 === 0 ? 2 : 1,
        ...(i % 5 === 0 ? { subtree: crypto.randomBytes(32).toString('hex') } : {}),
        ...(i % 13 === 0 && i % 5 !== 0 ? { linkTarget: Buffer.from(`../target "${i}" ]}`) } : {}),
        ...(i % 5 !== 0 && i % 13 !== 0 ? { content: [crypto.randomBytes(32).toString('hex'), crypto.randomBytes(32).toString('hex')] } : {}),
      });
    }
    nodes.sort((a, b) => Buffer.compare(a.name, b.name));
    const plain = encodeTree({ nodes });
    expect(plain.length).toBeGreaterThan(1024 * 1024);
    const sliced = await decodeTreeSliced('id', plain);
    expect(sliced.entries).toEqual(decodeTree(plain).nodes.map(toEntry));
    expect(sliced.get(displayName(nodes[100]!.name))).toEqual(toEntry(nodes[100]!));
    expect(sliced.get('no such name')).toBeUndefined();
    // The mode carries the file type; times are milliseconds.
    const e = sliced.entries.find((x) => x.type === 'dir')!;
    expect(e.mode & 0o170000).toBe(0o040000);
    expect(e.mtimeMs).toBe(1_700_000_000_123 + 0);
  });

  it('rejects a blob that is not a tree', async () => {
    await expect(decodeTreeSliced('abc', Buffer.from('{"nodes":[{"broken"'.padEnd(300_000, ' ')))).rejects.toThrow(/does not parse/);
  });
});

/** A repository stand-in: blobs laid out in packs, range reads counted, "opening" is the identity. */
function fakeRepo(blobs: Array<{ id: string; data: Buffer; pack: string; offset: number }>) {
  const packs = new Map<string, Buffer>();
  const index = new Map<string, BlobLocation>();
  for (const b of blobs) {
    const p = packs.get(b.pack) ?? Buffer.alloc(0);
    const grown = Buffer.alloc(Math.max(p.length, b.offset + b.data.length));
    p.copy(grown);
    b.data.copy(grown, b.offset);
    packs.set(b.pack, grown);
    index.set(b.id, { type: 0 as never, packId: b.pack, offset: b.offset, length: b.data.length, rawLength: b.data.length });
  }
  const reads: Array<{ pack: string; offset: number; length: number }> = [];
  const repo = {
    index: { get: (id: string) => index.get(id) },
    readPackRange: async (pack: string, offset: number, length: number) => {
      reads.push({ pack, offset, length });
      return Buffer.from(packs.get(pack)!.subarray(offset, offset + length));
    },
    opener: { open: async (_t: unknown, _id: Buffer, sealed: Buffer) => Buffer.from(sealed) },
  };
  return { repo: repo as unknown as Repository, reads };
}

const hexId = (i: number) => crypto.createHash('sha256').update(String(i)).digest('hex');
const packId = (i: number) => crypto.createHash('sha256').update(`pack${i}`).digest('hex');

describe('chunk cache and file reads', () => {
  /** A file of 40 blobs of 100,000 bytes: 20 in each of two packs, with small gaps between some. */
  function fixture() {
    const content: string[] = [];
    const blobs: Array<{ id: string; data: Buffer; pack: string; offset: number }> = [];
    let offset = 0;
    for (let i = 0; i < 40; i++) {
      if (i === 20) offset = 0;
      const id = hexId(i);
      content.push(id);
      blobs.push({ id, data: crypto.randomBytes(100_000), pack: packId(i < 20 ? 0 : 1), offset });
      offset += 100_000 + (i % 4 === 3 ? 5000 : 0);
    }
    const whole = Buffer.concat(blobs.map((b) => b.data));
    const { repo, reads } = fakeRepo(blobs);
    const node: FileNode = { kind: 'file', ino: 5, path: '/snapshots/x/file', size: whole.length, content, attr: () => ({}) as never };
    return { repo, reads, node, whole };
  }

  it('serves sequential reads with read-ahead in few range reads, and the right bytes', async () => {
    const { repo, reads, node, whole } = fixture();
    const cache = new BlobCache(repo, { maxBytes: 64 * 1024 * 1024, maxRunBytes: 1_000_000 });
    const f = new OpenFile(node, repo, cache, () => {}, 2 * 1024 * 1024);
    const out = Buffer.alloc(whole.length);
    for (let pos = 0; pos < whole.length; pos += 65536) {
      const n = await f.read(out.subarray(pos), Math.min(65536, whole.length - pos), pos);
      expect(n).toBe(Math.min(65536, whole.length - pos));
    }
    expect(out.equals(whole)).toBe(true);
    expect(cache.stats.prefetched).toBeGreaterThan(30);
    expect(reads.length).toBeLessThan(20); // runs of neighbouring blobs share a range read
    for (const r of reads) expect(r.length).toBeLessThanOrEqual(1_000_000);
  });

  it('random reads fetch only the blobs they cover', async () => {
    const { repo, reads, node, whole } = fixture();
    const cache = new BlobCache(repo, {});
    const f = new OpenFile(node, repo, cache, () => {}, 2 * 1024 * 1024);
    const buf = Buffer.alloc(149_999);
    const n = await f.read(buf, 149_999, 2_950_001); // the last bytes of blob 29 and all of 30, not 31
    expect(n).toBe(149_999);
    expect(buf.equals(whole.subarray(2_950_001, 3_100_000))).toBe(true);
    expect(reads.length).toBe(2);
    expect(cache.stats.prefetched).toBe(0);
    expect(await f.read(buf, 10, whole.length)).toBe(0);
    expect(await f.read(buf, 100, whole.length - 7)).toBe(7);
  });

  it('keeps each small blob in memory of its own, not in a slice of the shared Buffer pool', async () => {
    const blobs = Array.from({ length: 8 }, (_, i) => ({ id: hexId(100 + i), data: crypto.randomBytes(300 + i), pack: packId(9), offset: i * 1000 }));
    const { repo } = fakeRepo(blobs); // its opener returns Buffer.from(sealed): a pool slice below 4 KiB
    const cache = new BlobCache(repo, {});
    for (const b of blobs) {
      const got = await cache.get(b.id);
      expect(got.equals(b.data)).toBe(true);
      expect(got.buffer.byteLength).toBe(got.length);
    }
  });

  it('does not cache a failed fetch, and names the blob', async () => {
    const { repo, node } = fixture();
    let fail = true;
    const open = repo.opener.open.bind(repo.opener);
    repo.opener = { open: async (...a: Parameters<typeof open>) => (fail ? Promise.reject(new Error('authentication failed')) : open(...a)) };
    const cache = new BlobCache(repo, {});
    const f = new OpenFile(node, repo, cache, () => {}, 2 * 1024 * 1024);
    const buf = Buffer.alloc(10);
    await expect(f.read(buf, 10, 5)).rejects.toMatchObject({ name: 'BlobReadError', blobId: node.content[0] });
    fail = false;
    expect(await f.read(buf, 10, 5)).toBe(10);
  });
});

describe('chunk cache arena', () => {
  it('hands out regions first fit in 64 KiB units and merges freed neighbours', () => {
    const arena = new BlobArena(10 * ARENA_UNIT);
    const a = arena.allocRegion(1)!.offset; // one unit
    const b = arena.allocRegion(ARENA_UNIT + 1)!.offset; // two
    const c = arena.allocRegion(3 * ARENA_UNIT)!.offset; // three
    expect([a, b, c]).toEqual([0, ARENA_UNIT, 3 * ARENA_UNIT]);
    expect(arena.freeBytes).toBe(4 * ARENA_UNIT);
    expect(arena.allocRegion(5 * ARENA_UNIT)).toBeUndefined();
    arena.release(b, ARENA_UNIT + 1);
    expect(arena.allocRegion(3 * ARENA_UNIT)?.offset).toBe(6 * ARENA_UNIT); // the gap of two is too small
    arena.release(6 * ARENA_UNIT, 3 * ARENA_UNIT);
    arena.release(a, 1);
    arena.release(c, 3 * ARENA_UNIT); // all free again, as one extent
    expect(arena.freeBytes).toBe(10 * ARENA_UNIT);
    expect(arena.allocRegion(10 * ARENA_UNIT)?.offset).toBe(0);
    arena.release(0, 10 * ARENA_UNIT);
    expect(() => arena.release(0, 1)).toThrow(/released twice/);
    expect(() => arena.release(ARENA_UNIT / 2, 1)).toThrow(/no region/);
  });

  it('keeps freed regions resident up to its limit and hands the rest back to the system', () => {
    const discarded: Array<[number, number]> = [];
    const arena = new BlobArena(8 * ARENA_UNIT, (b) => discarded.push([b.byteOffset / ARENA_UNIT, b.length / ARENA_UNIT]), 2 * ARENA_UNIT);
    const regions = [0, 1, 2, 3].map(() => arena.allocRegion(2 * ARENA_UNIT)!.offset);
    arena.release(regions[0]!, 2 * ARENA_UNIT);
    expect(arena.residentFreeBytes).toBe(2 * ARENA_UNIT);
    expect(discarded).toEqual([]);
    arena.release(regions[2]!, 2 * ARENA_UNIT); // over the limit: its pages go back
    expect(discarded).toEqual([[4, 2]]);
    expect(arena.residentFreeBytes).toBe(2 * ARENA_UNIT);
    expect(arena.allocRegion(2 * ARENA_UNIT)).toEqual({ offset: 0, fresh: false }); // the resident one, first fit
    expect(arena.residentFreeBytes).toBe(0);
    arena.release(regions[1]!, 2 * ARENA_UNIT);
    expect(arena.residentFreeBytes).toBe(2 * ARENA_UNIT);
    expect(discarded).toHaveLength(1);
    // The discarded region is fresh again, to be faulted in by whoever writes it; the kept one is not.
    expect(arena.allocRegion(2 * ARENA_UNIT)).toEqual({ offset: 2 * ARENA_UNIT, fresh: false });
    expect(arena.allocRegion(2 * ARENA_UNIT)).toEqual({ offset: 4 * ARENA_UNIT, fresh: true });
  });

  it('says a region is fresh when any of its units was never used', () => {
    const arena = new BlobArena(4 * ARENA_UNIT, () => undefined, 4 * ARENA_UNIT);
    expect(arena.allocRegion(ARENA_UNIT)).toEqual({ offset: 0, fresh: true });
    arena.release(0, ARENA_UNIT);
    expect(arena.allocRegion(ARENA_UNIT)).toEqual({ offset: 0, fresh: false });
    arena.release(0, ARENA_UNIT);
    // Straddles the used unit and a never-used one.
    expect(arena.allocRegion(2 * ARENA_UNIT)).toEqual({ offset: 0, fresh: true });
  });

  it('discards with the native addon: the whole pages of a freed region read as zeros after', () => {
    const arena = new BlobArena(4 * ARENA_UNIT, undefined, 0);
    const at = arena.allocRegion(2 * ARENA_UNIT)!.offset;
    arena.view(at, 2 * ARENA_UNIT).fill(7);
    arena.release(at, 2 * ARENA_UNIT);
    // The arena's memory need not start on a page boundary: a page at either edge may keep its bytes.
    expect(arena.view(at + 4096, 2 * ARENA_UNIT - 8192).every((b) => b === 0)).toBe(true);
  });

  it('views are of the shared memory, and the cache knows them from buffers of their own', () => {
    const arena = new BlobArena(ARENA_UNIT);
    const v = arena.view(arena.allocRegion(10)!.offset, 10);
    expect(arena.holds(v)).toBe(true);
    expect(arena.holds(Buffer.alloc(10))).toBe(false);
    expect(v.buffer).toBeInstanceOf(SharedArrayBuffer);
  });
});

describe('chunk cache with an arena (blobs opened into shared memory)', () => {
  /**
   * 40 blobs of 100,000 bytes in one pack; "worker threads" that write each blob
   * into its region at once (as a thread may, while this one goes on) and answer
   * a turn later.
   */
  function fixture(maxBytes: number) {
    const blobs = Array.from({ length: 40 }, (_, i) => ({ id: hexId(1000 + i), data: crypto.randomBytes(100_000), pack: packId(7), offset: i * 100_000 }));
    const { repo, reads } = fakeRepo(blobs);
    const pack = Buffer.concat(blobs.map((b) => b.data));
    (repo as unknown as { packFile: () => string }).packFile = () => '/not/read/by/the/fake';
    let placed = 0;
    const open = (data: Buffer, list: RangeBlob[], arena?: SharedArrayBuffer): Promise<OpenedBlob[]> => {
      const results = list.map((b): OpenedBlob => {
        const plain = data.subarray(b.offset, b.offset + b.length);
        if (!b.into || !arena) return { plain: Buffer.from(plain) };
        placed++;
        Buffer.from(arena, b.into.offset, b.into.length).set(plain);
        return { placed: true };
      });
      return new Promise((resolve) => setImmediate(() => resolve(results)));
    };
    const cache = new BlobCache(repo, {
      maxBytes,
      maxRunBytes: 300_000,
      arena: true,
      openRange: (_p, data, list, arena) => open(data, list, arena),
      openFileRange: (_p, src, list, arena) => open(pack.subarray(src.offset, src.offset + src.length), list, arena),
    });
    const node: FileNode = { kind: 'file', ino: 6, path: '/snapshots/x/arena', size: pack.length, content: blobs.map((b) => b.id), attr: () => ({}) as never };
    return { cache, node, whole: pack, repo, reads, placed: () => placed };
  }

  it('serves a sequential read from blobs opened into the arena', async () => {
    const { cache, node, whole, repo, placed } = fixture(64 * 1024 * 1024);
    const f = new OpenFile(node, repo, cache, () => {}, 2 * 1024 * 1024);
    const out = Buffer.alloc(whole.length);
    for (let pos = 0; pos < whole.length; pos += 131072) await f.read(out.subarray(pos), Math.min(131072, whole.length - pos), pos);
    expect(out.equals(whole)).toBe(true);
    expect(placed()).toBe(40);
    expect(cache.size).toBe(whole.length);
  });

  // Two blobs fit (each takes two 64 KiB units of five): every fetch evicts, and a region
  // freed is written again a turn later while other reads still wait for theirs.
  it('gives the right bytes to many concurrent reads in a cache that holds two blobs', async () => {
    const { cache, node, whole, repo, placed } = fixture(5 * ARENA_UNIT);
    const f = new OpenFile(node, repo, cache, () => {}, 2 * 1024 * 1024);
    const rnd = (n: number) => crypto.randomInt(n);
    // Eight readers, each starting its next read as soon as one is done: fetches start while others wait.
    const readers = Array.from({ length: 8 }, async () => {
      let wrong = 0;
      for (let i = 0; i < 40; i++) {
        const pos = rnd(whole.length - 1);
        const len = 1 + rnd(Math.min(250_000, whole.length - pos));
        const out = Buffer.alloc(len);
        const n = await f.read(out, len, pos);
        if (n !== len || !out.equals(whole.subarray(pos, pos + len))) wrong++;
      }
      return wrong;
    });
    expect(await Promise.all(readers)).toEqual(Array(8).fill(0));
    // Blobs were opened into the arena (others, while every region was taken, into buffers of their own), and evicted and fetched again.
    expect(placed()).toBeGreaterThan(0);
    expect(cache.stats.loaded).toBeGreaterThan(40);
    expect(cache.size).toBeLessThanOrEqual(5 * ARENA_UNIT);
  });
});

describe('tree places from an index object', () => {
  it('finds exactly the tree blobs, with the places decodeIndex gives, the first place winning', () => {
    const treeId = crypto.randomBytes(32);
    const packs = [0, 1, 2].map((p) => ({
      packId: packId(p),
      entries: entriesOf(
        Array.from({ length: 50 }, (_, i) => ({
          type: (i % 3 === 0 || i === 7 ? 1 : 0) as never,
          id: i === 7 ? treeId : crypto.randomBytes(32), // blob 7 is the same tree in every pack
          offset: i * 1000 + p,
          length: 900 + i,
          rawLength: 2000 + i + p,
        })),
      ),
    }));
    const plain = encodeIndex(packs, [crypto.randomBytes(32).toString('hex')]);
    const found = new Map<string, BlobLocation>();
    decodeTreeLocations(plain, found);

    const expected = new Map<string, BlobLocation>();
    for (const p of decodeIndex(plain).packs) {
      for (const b of blobsOf(p.entries)) {
        const id = b.id.toString('hex');
        if (b.type === (1 as never) && !expected.has(id)) expected.set(id, { type: b.type, packId: p.packId, offset: b.offset, length: b.length, rawLength: b.rawLength });
      }
    }
    expect(found.size).toBe(3 * 17 + 1);
    expect(found).toEqual(expected);
    expect(found.get(treeId.toString('hex'))!.packId).toBe(packId(0));
  });

  it('refuses a truncated or unknown index object', () => {
    const plain = encodeIndex([{ packId: packId(0), entries: entriesOf([{ type: 1 as never, id: crypto.randomBytes(32), offset: 0, length: 10, rawLength: 10 }]) }]);
    expect(() => decodeTreeLocations(plain.subarray(0, plain.length - 1), new Map())).toThrow(/truncated/);
    expect(() => decodeTreeLocations(Buffer.concat([Buffer.of(2), plain.subarray(1)]), new Map())).toThrow(/version/);
  });
});
