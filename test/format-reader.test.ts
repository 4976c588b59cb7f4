/**
 * An independent reader of the repository format, written from docs/FORMAT.md
 * alone. It imports nothing from src/: the repository is made by the real CLI,
 * and everything here (key unwrapping, AEAD, index and pack decoding, trees,
 * chunking) is reimplemented from the document. If this test fails after a
 * format change, the change must be reflected in docs/FORMAT.md.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Blake3Hasher } from '@napi-rs/blake-hash';
import { Decompressor } from 'zstd-napi';
import { argon2id } from 'hash-wasm';

const BIN = path.resolve(import.meta.dirname, '../bin/aegis');
const PASSPHRASE = 'format reader passphrase ✓';
const CHUNK = { min: 65536, avg: 131072, max: 524288 };

// ---------------------------------------------------------------------------
// The reader (FORMAT.md §2–§15)
// ---------------------------------------------------------------------------

const ascii = (s: string) => Buffer.from(s, 'ascii');

/** §2.2: nonce(24) ‖ ct ‖ tag(16); subkey = HMAC-SHA256(K, "aegis-xgcm-v1" ‖ nonce[0..12]); IV = nonce[12..24]. */
function aeadOpen(key: Buffer, ad: Buffer, sealed: Buffer): Buffer {
  if (sealed.length < 40) throw new Error('sealed value shorter than 40 bytes');
  const nonce = sealed.subarray(0, 24);
  const subkey = crypto.createHmac('sha256', key).update(Buffer.concat([ascii('aegis-xgcm-v1'), nonce.subarray(0, 12)])).digest();
  const d = crypto.createDecipheriv('aes-256-gcm', subkey, nonce.subarray(12, 24), { authTagLength: 16 });
  d.setAAD(ad);
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([d.update(sealed.subarray(24, sealed.length - 16)), d.final()]);
}

/** §13: codec byte 0 = raw, 1 = one zstd frame. */
function decodeCodec(plain: Buffer): { codec: number; data: Buffer } {
  const codec = plain[0];
  if (codec === 0) return { codec, data: plain.subarray(1) };
  if (codec === 1) return { codec, data: new Decompressor().decompress(plain.subarray(1)) };
  throw new Error(`unknown codec ${codec}`);
}

/** §2.4: keyed BLAKE3-256. */
function keyedBlake3(key: Buffer, data: Buffer): Buffer {
  return Blake3Hasher.newKeyed(key).update(data).digestBuffer();
}

interface Keys {
  encryption: Buffer;
  id: Buffer;
  chunker: Buffer;
}

interface Loc {
  packId: string;
  type: number;
  offset: number;
  length: number;
  rawLength: number;
}

interface PackEntry {
  type: number;
  id: string;
  offset: number;
  length: number;
  rawLength: number;
}

interface TreeNodeJson {
  name?: string;
  name_b64?: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: string;
  atime: string;
  ctime: string;
  size: number;
  dev: string;
  inode: string;
  links: number;
  content?: string[];
  subtree?: string;
  link_target?: string;
  link_target_b64?: string;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Every object name below the repository directory (§1), skipping `.tmp-` files. */
function listObjects(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
    if (e.name.startsWith('.tmp-')) continue;
    const name = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listObjects(root, name));
    else out.push(name);
  }
  return out;
}

function readRange(file: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fd, buf, done, length - done, offset + done);
      if (n === 0) throw new Error(`short read of ${file}`);
      done += n;
    }
    return buf;
  } finally {
    fs.closeSync(fd);
  }
}

function decodeBytesField(o: Record<string, unknown>, key: string): Buffer | undefined {
  if (typeof o[key] === 'string') return Buffer.from(o[key] as string, 'utf8');
  if (typeof o[`${key}_b64`] === 'string') return Buffer.from(o[`${key}_b64`] as string, 'base64');
  return undefined;
}

class IndependentReader {
  readonly index = new Map<string, Loc>();
  readonly packsInIndex = new Map<string, PackEntry[]>();
  config!: { version: number; id: string; chunker: { min: number; avg: number; max: number }; packSize: number; compression: string };
  readonly codecsSeen = new Map<number, Set<number>>([[0, new Set()], [1, new Set()]]);

  private constructor(readonly root: string, readonly keys: Keys) {}

  /** §3 and §15 step 1: try every key file until one opens. */
  static async open(root: string, passphrase: string): Promise<IndependentReader> {
    const keyNames = listObjects(root).filter((n) => /^keys\/[0-9a-f]{64}$/.test(n));
    for (const name of keyNames) {
      const file = JSON.parse(fs.readFileSync(path.join(root, name), 'utf8'));
      if (file.version !== 1 || file.kdf?.algorithm !== 'argon2id' || file.kdf.memoryKiB < 65536) {
        throw new Error(`unacceptable key file ${name}`);
      }
      const kek = Buffer.from(
        await argon2id({
          password: passphrase.normalize('NFC'),
          salt: Buffer.from(file.kdf.salt, 'base64'),
          memorySize: file.kdf.memoryKiB,
          iterations: file.kdf.iterations,
          parallelism: file.kdf.parallelism,
          hashLength: 32,
          outputType: 'binary',
        }),
      );
      let plain: Buffer;
      try {
        plain = aeadOpen(kek, ascii('aegis-key-v1'), Buffer.from(file.masterKeys, 'base64'));
      } catch {
        continue; // wrong passphrase for this key file
      }
      if (plain.length !== 96) throw new Error('master keys of the wrong length');
      const reader = new IndependentReader(root, {
        encryption: plain.subarray(0, 32),
        id: plain.subarray(32, 64),
        chunker: plain.subarray(64, 96),
      });
      reader.config = reader.openJson('config');
      if (reader.config.version !== 1) throw new Error(`unsupported format version ${reader.config.version}`);
      return reader;
    }
    throw new Error('wrong passphrase');
  }

  /** §4: sealed objects, AD = "aegis-object-v1" ‖ name. */
  openObject(name: string): Buffer {
    const sealed = fs.readFileSync(path.join(this.root, name));
    const plain = aeadOpen(this.keys.encryption, Buffer.concat([ascii('aegis-object-v1'), Buffer.from(name, 'utf8')]), sealed);
    return decodeCodec(plain).data;
  }

  openJson<T>(name: string): T {
    return JSON.parse(this.openObject(name).toString('utf8')) as T;
  }

  /** §8: decode every index object. */
  loadIndex(): number {
    const names = listObjects(this.root).filter((n) => /^index\/[0-9a-f]{64}$/.test(n));
    for (const name of names) {
      const buf = this.openObject(name);
      let o = 0;
      const u8 = () => buf.readUInt8((o += 1) - 1);
      const u32 = () => buf.readUInt32LE((o += 4) - 4);
      const id = () => buf.toString('hex', o, (o += 32));
      if (u8() !== 1) throw new Error('index version');
      const superseded = u32();
      for (let i = 0; i < superseded; i++) id();
      const packCount = u32();
      for (let p = 0; p < packCount; p++) {
        const packId = id();
        const n = u32();
        const entries: PackEntry[] = [];
        for (let b = 0; b < n; b++) {
          const e = { type: u8(), id: id(), offset: u32(), length: u32(), rawLength: u32() };
          entries.push(e);
          if (!this.index.has(e.id)) this.index.set(e.id, { packId, type: e.type, offset: e.offset, length: e.length, rawLength: e.rawLength });
        }
        this.packsInIndex.set(packId, entries);
      }
      if (o !== buf.length) throw new Error(`index ${name} has trailing bytes`);
    }
    return names.length;
  }

  packFile(packId: string): string {
    return path.join(this.root, 'data', packId.slice(0, 2), packId);
  }

  /** §7: read and decode a pack header from the pack's tail. */
  readPackHeader(packId: string): PackEntry[] {
    const file = this.packFile(packId);
    const size = fs.statSync(file).size;
    const hlen = readRange(file, size - 4, 4).readUInt32LE(0);
    if (hlen + 4 > size) throw new Error('header length outside the pack');
    const sealed = readRange(file, size - 4 - hlen, hlen);
    const h = aeadOpen(this.keys.encryption, Buffer.concat([ascii('aegis-pack-header-v1'), Buffer.from(packId, 'hex')]), sealed);
    if (h.readUInt8(0) !== 1) throw new Error('pack header version');
    const n = h.readUInt32LE(1);
    if (h.length !== 5 + 45 * n) throw new Error('pack header length');
    const out: PackEntry[] = [];
    for (let i = 0, p = 5; i < n; i++, p += 45) {
      const e = {
        type: h.readUInt8(p),
        id: h.toString('hex', p + 1, p + 33),
        offset: h.readUInt32LE(p + 33),
        length: h.readUInt32LE(p + 37),
        rawLength: h.readUInt32LE(p + 41),
      };
      if (e.offset + e.length > size - 4 - hlen) throw new Error('blob outside the pack');
      out.push(e);
    }
    return out;
  }

  /** §15 step 7: ranged read, open with the blob AD, decompress, verify the ID. */
  loadBlob(type: number, id: string): Buffer {
    const loc = this.index.get(id);
    if (!loc) throw new Error(`blob ${id} not in the index`);
    if (loc.type !== type) throw new Error(`blob ${id} has type ${loc.type}, expected ${type}`);
    const sealed = readRange(this.packFile(loc.packId), loc.offset, loc.length);
    const ad = Buffer.concat([ascii('aegis-blob-v1'), Buffer.of(type), Buffer.from(id, 'hex')]);
    const { codec, data } = decodeCodec(aeadOpen(this.keys.encryption, ad, sealed));
    this.codecsSeen.get(type)!.add(codec);
    if (data.length !== loc.rawLength) throw new Error(`blob ${id}: ${data.length} bytes, index says ${loc.rawLength}`);
    // §2.4: tree IDs are keyed with a subkey derived from the ID key.
    const idKey = type === 1 ? Blake3Hasher.deriveKey('aegis 2026 tree blob id v1', this.keys.id) : this.keys.id;
    if (!keyedBlake3(idKey, data).equals(Buffer.from(id, 'hex'))) throw new Error(`blob ${id} does not match its ID`);
    return data;
  }

  loadTree(id: string): TreeNodeJson[] {
    const parsed = JSON.parse(this.loadBlob(1, id).toString('utf8')) as { nodes: TreeNodeJson[] };
    if (!Array.isArray(parsed.nodes)) throw new Error('tree without nodes');
    return parsed.nodes;
  }

  listSnapshots(): Array<{ id: string; snapshot: { time: string; tree: string; paths: string[]; hostname: string; tags: string[]; program_version: string; parent?: string } }> {
    return listObjects(this.root)
      .filter((n) => /^snapshots\/[0-9a-f]{64}$/.test(n))
      .map((n) => ({ id: n.slice('snapshots/'.length), snapshot: this.openJson<any>(n) }))
      .sort((a, b) => (a.snapshot.time < b.snapshot.time ? -1 : a.snapshot.time > b.snapshot.time ? 1 : a.id < b.id ? -1 : 1));
  }

  /** §10 and §15 step 5: follow an absolute path from the root tree. */
  findNode(rootTree: string, absPath: string): TreeNodeJson {
    let nodes = this.loadTree(rootTree);
    let found: TreeNodeJson | undefined;
    const parts = absPath.split('/').filter(Boolean);
    for (let i = 0; i < parts.length; i++) {
      found = nodes.find((n) => nodeName(n).equals(Buffer.from(parts[i]!, 'utf8')));
      if (!found) throw new Error(`no ${parts[i]} in the tree`);
      if (i < parts.length - 1) {
        if (found.type !== 'dir' || !found.subtree) throw new Error(`${parts[i]} is not a directory`);
        nodes = this.loadTree(found.subtree);
      }
    }
    return found!;
  }

  readFile(node: TreeNodeJson): Buffer {
    return Buffer.concat((node.content ?? []).map((id) => this.loadBlob(0, id)));
  }
}

function nodeName(n: TreeNodeJson): Buffer {
  const b = decodeBytesField(n as unknown as Record<string, unknown>, 'name');
  if (!b) throw new Error('node without a name');
  return b;
}

// ---------------------------------------------------------------------------
// The chunker (FORMAT.md §12), in plain unsigned arithmetic
// ---------------------------------------------------------------------------

function gearTable(chunkerSecret: Buffer): number[] {
  const gk = Blake3Hasher.deriveKey('aegis 2026 chunker gear table v1', chunkerSecret);
  const c = crypto.createCipheriv('aes-256-ctr', gk, Buffer.alloc(16));
  const stream = Buffer.concat([c.update(Buffer.alloc(1024)), c.final()]);
  return Array.from({ length: 256 }, (_, i) => stream.readUInt32LE(4 * i));
}

/** Chunk lengths of `data`. "h & MASK == 0" with the top k bits set is "h < 2^(32−k)". */
function chunkLengths(data: Buffer, gear: number[], p: { min: number; avg: number; max: number }): number[] {
  const bits = Math.log2(p.avg);
  const strictLimit = 2 ** (32 - (bits + 2));
  const looseLimit = 2 ** (32 - (bits - 2));
  const out: number[] = [];
  let pos = 0;
  while (pos < data.length) {
    let n = data.length - pos;
    let len = n;
    if (n > p.min) {
      if (n > p.max) n = p.max;
      len = n;
      const normal = Math.min(p.avg, n);
      let h = 0;
      for (let i = p.min; i < n; i++) {
        h = (h * 2 + gear[data[pos + i]!]!) % 2 ** 32;
        if (h < (i < normal ? strictLimit : looseLimit)) {
          len = i + 1;
          break;
        }
      }
    }
    out.push(len);
    pos += len;
  }
  return out;
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

const CANARY_CONTENT = 'AEGIS-CANARY-CONTENT-71c9e4';
const CANARY_NAME = 'CANARYNAME-5d02b8';
const CANARY_LINK = 'CANARY-LINK-TARGET-a83f17';
const NON_UTF8_NAME = Buffer.concat([Buffer.from('bin-'), Buffer.from([0xff, 0xfe, 0x80]), Buffer.from('-name.dat')]);
const NON_UTF8_DIR = Buffer.concat([Buffer.from('dir-'), Buffer.from([0xe9]), Buffer.from('-latin1')]);

describe('independent reader from docs/FORMAT.md', () => {
  let work: string;
  let repo: string;
  let src: string;
  let env: NodeJS.ProcessEnv;
  let bigFile: Buffer;
  let firstSmall: Buffer;
  const snapshotIds: string[] = [];

  const aegis = (...args: string[]) => execFileSync(process.execPath, [BIN, '-r', repo, ...args], { env, encoding: 'utf8' });
  const backup = () => {
    const lines = aegis('backup', '--json', src).trim().split('\n').map((l) => JSON.parse(l));
    const summary = lines.find((l) => l.message_type === 'summary');
    expect(summary?.snapshot_id).toMatch(HEX64);
    snapshotIds.push(summary.snapshot_id);
  };

  beforeAll(() => {
    work = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-fmt-')));
    repo = path.join(work, 'repo');
    src = path.join(work, `src-${CANARY_NAME}`);
    env = { ...process.env, AEGIS_PASSWORD: PASSPHRASE, AEGIS_STATE_DIR: path.join(work, 'state') };
    delete env.AEGIS_PASSWORD_FILE;
    delete env.AEGIS_PASSWORD_COMMAND;
    delete env.AEGIS_REPOSITORY;

    fs.mkdirSync(path.join(src, 'nested', 'deeper'), { recursive: true });
    fs.mkdirSync(path.join(src, 'emptydir'));
    // Larger than many chunks: random, a long run of zeros (cut at max, zstd), random again.
    bigFile = Buffer.concat([crypto.randomBytes(2 * 1024 * 1024 + 12345), Buffer.alloc(1536 * 1024), crypto.randomBytes(1024 * 1024 + 777)]);
    fs.writeFileSync(path.join(src, 'big.bin'), bigFile);
    fs.writeFileSync(path.join(src, 'big-copy.bin'), bigFile);
    const sentence = `${CANARY_CONTENT}: the quick brown fox jumps over the lazy dog.\n`;
    const lines: string[] = [];
    for (let i = 0; i < 12000; i++) lines.push(`${i} ${sentence}`);
    fs.writeFileSync(path.join(src, `notes-${CANARY_NAME}.txt`), lines.join(''));
    firstSmall = Buffer.from(`${CANARY_CONTENT} small v1\n`);
    fs.writeFileSync(path.join(src, 'small.txt'), firstSmall);
    fs.writeFileSync(path.join(src, 'empty.txt'), '');
    fs.writeFileSync(path.join(src, 'nested', 'deeper', 'leaf.txt'), `${CANARY_CONTENT} leaf\n`);
    fs.writeFileSync(Buffer.concat([Buffer.from(src + '/'), NON_UTF8_NAME]), `${CANARY_CONTENT} in a file with a non-UTF-8 name\n`);
    fs.mkdirSync(Buffer.concat([Buffer.from(src + '/'), NON_UTF8_DIR]));
    fs.writeFileSync(Buffer.concat([Buffer.from(src + '/'), NON_UTF8_DIR, Buffer.from('/inside.txt')]), `${CANARY_CONTENT} inside\n`);
    fs.symlinkSync(`${CANARY_LINK}/notes-${CANARY_NAME}.txt`, path.join(src, 'link'));
    fs.symlinkSync(Buffer.concat([Buffer.from('target-'), Buffer.from([0xc3, 0x28])]), path.join(src, 'link-binary-target'));
    fs.chmodSync(path.join(src, 'small.txt'), 0o640);

    aegis('init', '--chunk-min', String(CHUNK.min), '--chunk-avg', String(CHUNK.avg), '--chunk-max', String(CHUNK.max), '--pack-size', '1');
    backup();
    // A second snapshot: one file changed, one added.
    fs.writeFileSync(path.join(src, 'small.txt'), `${CANARY_CONTENT} small v2 (changed)\n`);
    fs.writeFileSync(path.join(src, 'added-later.txt'), `${CANARY_CONTENT} added later\n`);
    backup();
  });

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('has only the objects FORMAT.md §1 names', () => {
    const names = listObjects(repo);
    const patterns = [/^config$/, /^keys\/[0-9a-f]{64}$/, /^index\/[0-9a-f]{64}$/, /^snapshots\/[0-9a-f]{64}$/, /^locks\/[0-9a-f]{64}$/];
    for (const n of names) {
      const pack = /^data\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(n);
      if (pack) expect(pack[2]!.slice(0, 2)).toBe(pack[1]);
      else expect(patterns.some((p) => p.test(n)), n).toBe(true);
    }
    expect(names.filter((n) => n.startsWith('keys/'))).toHaveLength(1);
    expect(names.filter((n) => n.startsWith('locks/'))).toHaveLength(0);
    const keyFile = JSON.parse(fs.readFileSync(path.join(repo, names.find((n) => n.startsWith('keys/'))!), 'utf8'));
    expect(keyFile).toMatchObject({ version: 1, kdf: { algorithm: 'argon2id', memoryKiB: 65536, iterations: 3, parallelism: 4 } });
    // §3: who made the key is sealed in `info`; nothing about the user or host is in the clear.
    expect(Object.keys(keyFile).sort()).toEqual(['info', 'kdf', 'masterKeys', 'version']);
    expect(Buffer.from(keyFile.kdf.salt, 'base64')).toHaveLength(16);
    expect(Buffer.from(keyFile.masterKeys, 'base64')).toHaveLength(136);
  });

  it('opens the repository, reads the index and every pack header, and reads every file back', async () => {
    await expect(IndependentReader.open(repo, 'not the passphrase')).rejects.toThrow(/wrong passphrase/);
    const r = await IndependentReader.open(repo, PASSPHRASE);
    expect(r.config).toMatchObject({ version: 1, chunker: CHUNK, packSize: 1024 * 1024, compression: 'auto' });
    expect(r.config.id).toMatch(HEX64);

    // Index (§8) against pack headers (§7): every stored pack is indexed with exactly its header.
    expect(r.loadIndex()).toBeGreaterThanOrEqual(2);
    const packs = listObjects(repo).filter((n) => n.startsWith('data/')).map((n) => n.slice(-64));
    expect(packs.length).toBeGreaterThan(3);
    expect(new Set(r.packsInIndex.keys())).toEqual(new Set(packs));
    for (const packId of packs) {
      const header = r.readPackHeader(packId);
      expect(r.packsInIndex.get(packId)).toEqual(header);
      // backup keeps tree and data blobs in separate packs (§7, §14)
      expect(new Set(header.map((e) => e.type)).size).toBe(1);
      for (const e of header) expect(e.length).toBeLessThanOrEqual(e.rawLength + 41);
    }

    // Snapshots (§10).
    const snaps = r.listSnapshots();
    expect(snaps.map((s) => s.id)).toEqual(snapshotIds);
    const [first, latest] = [snaps[0]!, snaps[1]!];
    expect(latest.snapshot.paths).toEqual([src]);
    expect(latest.snapshot.hostname).toBe(os.hostname());
    expect(latest.snapshot.parent).toBe(first.id);
    expect(latest.snapshot.program_version).toMatch(/^aegis /);

    // The root tree mirrors the absolute path; intermediate directories list only the way down.
    let nodes = r.loadTree(latest.snapshot.tree);
    let walked = '';
    for (const part of src.split('/').filter(Boolean)) {
      walked += `/${part}`;
      expect(nodes.map((n) => nodeName(n).toString())).toEqual([part]);
      expect(nodes[0]!.type).toBe('dir');
      expect(nodes[0]!.inode).toBe(fs.lstatSync(walked, { bigint: true }).ino.toString());
      nodes = r.loadTree(nodes[0]!.subtree!);
    }
    const srcNode = r.findNode(latest.snapshot.tree, src);
    expect(srcNode.type).toBe('dir');
    expect(srcNode.mtime).toBe(fs.lstatSync(src, { bigint: true }).mtimeNs.toString());

    // Every entry of the backed-up directory matches the disk, recursively, and every
    // file's chunk list is what our own chunker computes.
    const gear = gearTable(r.keys.chunker);
    let files = 0;
    let chunksChecked = 0;
    const verifyDir = (treeId: string, dir: Buffer) => {
      const tree = r.loadTree(treeId);
      const diskNames = (fs.readdirSync(dir, { encoding: 'buffer' }) as Buffer[]).sort(Buffer.compare);
      expect(tree.map(nodeName)).toEqual(diskNames);
      for (const node of tree) {
        const name = nodeName(node);
        const p = Buffer.concat([dir, Buffer.from('/'), name]);
        const st = fs.lstatSync(p, { bigint: true });
        expect(node.mode).toBe(Number(st.mode) & 0o7777);
        expect(node.uid).toBe(Number(st.uid));
        expect(node.mtime).toBe(st.mtimeNs.toString());
        expect(node.inode).toBe(st.ino.toString());
        if (node.name === undefined) expect(node.name_b64).toBe(name.toString('base64'));
        if (st.isDirectory()) {
          expect(node.type).toBe('dir');
          verifyDir(node.subtree!, p);
        } else if (st.isSymbolicLink()) {
          expect(node.type).toBe('symlink');
          expect(decodeBytesField(node as unknown as Record<string, unknown>, 'link_target')).toEqual(fs.readlinkSync(p, { encoding: 'buffer' }));
        } else {
          expect(node.type).toBe('file');
          const disk = fs.readFileSync(p);
          const restored = r.readFile(node);
          expect(restored.equals(disk), p.toString()).toBe(true);
          expect(node.size).toBe(disk.length);
          // §12: recompute the cut points and the keyed IDs.
          const lens = chunkLengths(disk, gear, CHUNK);
          let off = 0;
          const ids = lens.map((len) => keyedBlake3(r.keys.id, disk.subarray(off, (off += len))).toString('hex'));
          expect(ids).toEqual(node.content);
          chunksChecked += ids.length;
          files++;
        }
      }
    };
    verifyDir(srcNode.subtree!, Buffer.from(src));
    expect(files).toBe(9); // big, big-copy, notes, small, empty, leaf, non-UTF-8 name, inside, added-later

    // The big file is many chunks; some cut at max (the zeros), some content-defined; dedup of the copy.
    const big = r.findNode(latest.snapshot.tree, `${src}/big.bin`);
    const bigLens = chunkLengths(bigFile, gear, CHUNK);
    expect(big.content!.length).toBeGreaterThan(8);
    expect(bigLens).toContain(CHUNK.max);
    expect(bigLens.some((l) => l > CHUNK.min && l < CHUNK.max)).toBe(true);
    expect(r.findNode(latest.snapshot.tree, `${src}/big-copy.bin`).content).toEqual(big.content);
    expect(r.readFile(big).equals(bigFile)).toBe(true);
    expect(chunksChecked).toBeGreaterThan(20);
    expect(r.findNode(latest.snapshot.tree, `${src}/empty.txt`).content).toEqual([]);

    // Both codecs occur (§13): the random chunks stay raw, zeros and text compress.
    expect(r.codecsSeen.get(0)).toEqual(new Set([0, 1]));
    expect(r.codecsSeen.get(1)!.has(1)).toBe(true);

    // The first snapshot still holds the old content and not the later file.
    expect(r.readFile(r.findNode(first.snapshot.tree, `${src}/small.txt`)).equals(firstSmall)).toBe(true);
    expect(() => r.findNode(first.snapshot.tree, `${src}/added-later.txt`)).toThrow(/no added-later.txt/);
    expect(r.readFile(r.findNode(latest.snapshot.tree, `${src}/added-later.txt`)).toString()).toContain('added later');

    // Associated data binds the type: a data blob does not open as a tree blob (§6).
    const someData = big.content![0]!;
    const loc = r.index.get(someData)!;
    const sealed = readRange(r.packFile(loc.packId), loc.offset, loc.length);
    expect(() => aeadOpen(r.keys.encryption, Buffer.concat([ascii('aegis-blob-v1'), Buffer.of(1), Buffer.from(someData, 'hex')]), sealed)).toThrow();
    expect(() => aeadOpen(r.keys.encryption, Buffer.concat([ascii('aegis-blob-v1'), Buffer.of(0), Buffer.from(someData, 'hex')]), sealed)).not.toThrow();
  });

  it('stores no plaintext names or contents', () => {
    const needles = [
      CANARY_CONTENT,
      CANARY_NAME,
      CANARY_LINK,
      'quick brown fox',
      'leaf.txt',
      'added-later',
      path.basename(work),
      NON_UTF8_NAME,
      NON_UTF8_DIR,
    ].map((s): Buffer => (typeof s === 'string' ? Buffer.from(s) : s));
    // Also a 64-byte window of the random file: raw data must not appear either.
    needles.push(bigFile.subarray(100_000, 100_064));
    for (const name of listObjects(repo)) {
      const bytes = fs.readFileSync(path.join(repo, name));
      for (const needle of needles) {
        expect(bytes.includes(needle), `${name} contains ${needle.toString('latin1')}`).toBe(false);
        expect(bytes.includes(Buffer.from(needle.toString('latin1'), 'utf16le')), `${name} contains UTF-16 ${needle.toString('latin1')}`).toBe(false);
      }
    }
  });
});
