import crypto from 'node:crypto';
import { type ChunkerParams, validateChunkerParams } from '../chunker/fastcdc.js';
import { type KeyFile, type KeyInfo as KeyFileInfo, type MasterKeys, WrongPassphraseError, currentKeyInfo, generateMasterKeys, parseKeyFile, unwrapMasterKeys, wrapMasterKeys } from '../crypto/keys.js';
import { hexToId } from '../crypto/ids.js';
import { RepositoryMissingError, UserError } from '../errors.js';
import { type Tree, decodeTree, encodeTree } from '../snapshot/tree.js';
import { type Snapshot, type SnapshotEntry, sortByTime } from '../snapshot/snapshot.js';
import { type GetOptions, type Staging, type Storage, StorageError, collectList, isNotFound } from '../storage/storage.js';
import { BlobType, DamagedBlobError, blobId, openBlob, sealBlobWithId } from './blob.js';
import { type CompressionMode } from './compression.js';
import { FORMAT_VERSION, type RepoConfig, newConfig, validatePackSize } from './config.js';
import { BlobIndex, type BlobLocation, type IndexedPack, checkIndexLayout, decodeTreeLocations, encodeIndex } from './index.js';
import { CONFIG, INDEX, KEYS, SNAPSHOTS, idOf, packName } from './layout.js';
import { RepoLock } from './lock.js';
import { DamagedObjectError, openJson, openObject, sealJson, sealObject } from './objects.js';
import { Packer } from './packer.js';
import { mapLimit } from '../util/concurrency.js';

/**
 * Decrypts and verifies blobs. The default works on the calling thread; the
 * worker pool supplies one that moves the work off the event loop (mount, restore).
 */
export interface BlobOpener {
  open(type: BlobType, id: Buffer, sealed: Buffer, packId: string): Promise<Buffer>;
}

export interface InitOptions {
  chunker?: ChunkerParams;
  packSize?: number;
  compression?: CompressionMode;
}

/**
 * Decoded snapshots remembered between runs, by object name (the state
 * layer's SnapshotMemoFile): a listing then reads only snapshots it has not
 * seen. Sound because a snapshot object is written once and never changed.
 */
export interface SnapshotMemo {
  load(): Promise<Map<string, Snapshot>>;
  /** Remember exactly these (what the listing showed). */
  save(entries: Map<string, Snapshot>): Promise<void>;
}

export interface KeyInfo {
  id: string;
  current: boolean;
  created: string;
  hostname: string;
  username: string;
}

export class Repository {
  readonly index = new BlobIndex();
  private indexLoaded = false;
  private readonly loadedIndexFiles = new Set<string>();
  /** Index objects loadTreeLocations opened, for the loadIndex that follows it (the mount's start). */
  private readonly openedIndex = new Map<string, Buffer>();
  opener: BlobOpener;
  /** Where listSnapshots remembers what it decoded, if anywhere. */
  snapshotMemo: SnapshotMemo | undefined;

  private constructor(
    readonly storage: Storage,
    readonly keys: MasterKeys,
    readonly config: RepoConfig,
    readonly keyId: string,
  ) {
    this.opener = { open: async (type, id, sealed, packId) => openBlob(this.keys, type, id, sealed, packId) };
  }

  // ---- creating and opening -------------------------------------------------

  static async exists(storage: Storage): Promise<boolean> {
    try {
      await storage.stat(CONFIG);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  static async init(storage: Storage, passphrase: string, options: InitOptions = {}): Promise<Repository> {
    if (await Repository.exists(storage)) throw new UserError(`a repository already exists at ${storage.location}`);
    try {
      if (options.chunker) validateChunkerParams(options.chunker);
      if (options.packSize !== undefined) validatePackSize(options.packSize);
    } catch (err) {
      throw new UserError((err as Error).message);
    }
    const keys = generateMasterKeys();
    const config = newConfig(crypto.randomBytes(32).toString('hex'), options);
    const keyId = await writeKeyFile(storage, keys, passphrase);
    // The config is written last and only if absent: it is what marks a repository as existing.
    await storage.put(CONFIG, sealJson(keys, CONFIG, config), { ifNotExists: true });
    const repo = new Repository(storage, keys, config, keyId);
    repo.indexLoaded = true;
    return repo;
  }

  static async open(storage: Storage, passphrase: string): Promise<Repository> {
    if (!(await Repository.exists(storage))) {
      const anything = await firstObject(storage);
      throw new RepositoryMissingError(storage.location, anything ? 'not an Aegis repository (no config object)' : 'repository does not exist');
    }
    const keyNames = (await collectList(storage, KEYS)).map((o) => o.name).filter((n) => idOf(KEYS, n));
    if (keyNames.length === 0) throw new UserError(`repository at ${storage.location} has no key files`);
    const unusable: string[] = [];
    for (const name of keyNames) {
      let file: KeyFile;
      try {
        file = parseKeyFile(await storage.get(name), name);
      } catch (err) {
        if (isNotFound(err)) continue;
        if (err instanceof StorageError) throw err;
        // A damaged or foreign key file must not lock everyone out: try the others.
        unusable.push((err as Error).message);
        continue;
      }
      let keys: MasterKeys;
      try {
        keys = await unwrapMasterKeys(file, passphrase);
      } catch (err) {
        if (err instanceof WrongPassphraseError) continue;
        throw err;
      }
      const config = openJson<RepoConfig>(keys, CONFIG, await storage.get(CONFIG));
      if (config.version !== FORMAT_VERSION) {
        throw new UserError(`repository format version ${config.version} is not supported by this Aegis (knows ${FORMAT_VERSION})`);
      }
      return new Repository(storage, keys, config, idOf(KEYS, name)!);
    }
    if (unusable.length === keyNames.length) throw new UserError(`no usable key file: ${unusable.join('; ')}`);
    throw new WrongPassphraseError();
  }

  // ---- keys -----------------------------------------------------------------

  async listKeys(): Promise<KeyInfo[]> {
    const out: KeyInfo[] = [];
    for (const { name } of await collectList(this.storage, KEYS)) {
      const id = idOf(KEYS, name);
      if (!id) continue;
      const file = parseKeyFile(await this.storage.get(name), name);
      let info: KeyFileInfo = { created: '', hostname: '?', username: '?' };
      if (file.info) {
        try {
          info = openJson<KeyFileInfo>(this.keys, `${name}#info`, Buffer.from(file.info, 'base64'));
        } catch {
          /* info sealed by another repository's keys: list the key anyway */
        }
      }
      out.push({ id, current: id === this.keyId, ...info });
    }
    return out.sort((a, b) => a.created.localeCompare(b.created));
  }

  addKey(passphrase: string): Promise<string> {
    return writeKeyFile(this.storage, this.keys, passphrase);
  }

  /** Remove a key file by ID or unique prefix; the last key cannot be removed. */
  async removeKey(prefix: string): Promise<string> {
    const keys = await this.listKeys();
    const matches = keys.filter((k) => k.id.startsWith(prefix));
    if (matches.length === 0) throw new UserError(`no key matches "${prefix}"`);
    if (matches.length > 1) throw new UserError(`"${prefix}" matches ${matches.length} keys; give more characters`);
    if (keys.length === 1) throw new UserError('refusing to remove the last key: the repository would be unreadable forever');
    await this.storage.delete(`${KEYS}${matches[0]!.id}`);
    return matches[0]!.id;
  }

  // ---- locks ----------------------------------------------------------------

  lock(exclusive: boolean): Promise<RepoLock> {
    return RepoLock.acquire(this.storage, this.keys, exclusive);
  }

  // ---- index ----------------------------------------------------------------

  /** Load every index object not loaded yet. Cheap to call again: it reads only new ones. */
  async loadIndex(): Promise<void> {
    const fresh = (await this.indexNames()).filter((n) => !this.loadedIndexFiles.has(n));
    // Checked as they arrive, added in order (the first place of a blob wins), read in place.
    let blobs = 0;
    const checked = await this.readIndexObjects(fresh, (plain) => {
      blobs += checkIndexLayout(plain);
      return plain;
    });
    this.index.reserve(blobs);
    for (let i = 0; i < fresh.length; i++) {
      const plain = checked[i];
      this.loadedIndexFiles.add(fresh[i]!);
      if (plain) this.index.addIndexObject(plain);
    }
    this.indexLoaded = true;
  }

  /**
   * Where every tree blob is, from all index objects, without loading the index
   * (see decodeTreeLocations). The opened objects are kept for the next
   * loadIndex, which then reads none of them again.
   */
  async loadTreeLocations(): Promise<Map<string, BlobLocation>> {
    const out = new Map<string, BlobLocation>();
    await this.readIndexObjects(await this.indexNames(), (plain, name) => {
      this.openedIndex.set(name, plain);
      decodeTreeLocations(plain, out);
    });
    return out;
  }

  private async indexNames(): Promise<string[]> {
    return (await collectList(this.storage, INDEX)).map((o) => o.name).filter((n) => idOf(INDEX, n));
  }

  /** Read, open and decode index objects; undefined for one removed meanwhile (a concurrent compaction). */
  private readIndexObjects<T>(names: string[], decode: (plain: Buffer, name: string) => T): Promise<Array<T | undefined>> {
    return mapLimit(names, 8, async (name) => {
      try {
        const opened = this.openedIndex.get(name);
        this.openedIndex.delete(name);
        return decode(opened ?? openObject(this.keys, name, await this.storage.get(name)), name);
      } catch (err) {
        if (isNotFound(err)) return undefined;
        if (err instanceof DamagedObjectError) throw err;
        throw new DamagedObjectError(name, (err as Error).message);
      }
    });
  }

  async writeIndex(packs: IndexedPack[], superseded: string[] = []): Promise<string | undefined> {
    if (packs.length === 0 && superseded.length === 0) return undefined;
    const id = crypto.randomBytes(32).toString('hex');
    const name = `${INDEX}${id}`;
    await this.storage.put(name, sealObject(this.keys, name, encodeIndex(packs, superseded)));
    this.loadedIndexFiles.add(name);
    for (const p of packs) this.learnPack(p);
    return id;
  }

  /**
   * Make a stored pack's blobs findable in this process before an index object
   * names them, so that what a backup reads later deduplicates against them
   * without a second record of every blob it added. The pack must still be
   * given to writeIndex.
   */
  learnPack(pack: IndexedPack): void {
    if (!this.index.hasPack(pack.packId)) this.index.addPack(pack);
  }

  // ---- blobs ----------------------------------------------------------------

  /** Read one blob by ID: a ranged read of its pack, then decrypt and verify. */
  async loadBlob(type: BlobType, id: string): Promise<Buffer> {
    if (!this.indexLoaded) await this.loadIndex();
    const loc = this.index.get(id);
    if (!loc) throw new DamagedBlobError(id, 'not in the index (missing from the repository)');
    let sealed: Buffer;
    try {
      sealed = await this.storage.get(packName(loc.packId), { offset: loc.offset, length: loc.length }, { kind: type === BlobType.Tree ? 'tree' : 'data' });
    } catch (err) {
      throw packReadFailure(err, id, loc.packId);
    }
    // Tree blobs are small: opening one here costs less than a round trip to a worker thread.
    if (type === BlobType.Tree) return openBlob(this.keys, type, hexToId(id), sealed, loc.packId);
    return this.opener.open(type, hexToId(id), sealed, loc.packId);
  }

  async loadTree(id: string): Promise<Tree> {
    const plain = await this.loadBlob(BlobType.Tree, id);
    try {
      return decodeTree(plain);
    } catch (err) {
      throw new DamagedBlobError(id, `tree does not parse: ${(err as Error).message}`);
    }
  }

  /** Store a finished pack a worker wrote into a staged file (see pack.ts). The caller indexes it once this resolves. */
  storePackFile(packId: string, file: string, sha256?: string): Promise<void> {
    return this.storage.putFile(packName(packId), file, { sha256 });
  }

  /** Store a finished pack a worker assembled in memory. The caller indexes it once this resolves. */
  storePack(packId: string, data: Buffer, sha256?: string): Promise<void> {
    return this.storage.put(packName(packId), data, { sha256 });
  }

  /**
   * How packs are assembled before they are stored (Storage.staging). A dry run
   * stores nothing, so its packs are assembled in memory and dropped.
   */
  async staging(dryRun = false): Promise<Staging> {
    return dryRun ? { inMemory: true, sha256: false } : this.storage.staging();
  }

  /** Bytes [offset, offset + length) of a pack: several neighbouring blobs in one read. */
  readPackRange(packId: string, offset: number, length: number, options?: GetOptions): Promise<Buffer> {
    return this.storage.get(packName(packId), { offset, length }, options);
  }

  /** The pack as a local file its ranges can be read from directly, if the storage has one (Storage.localPath). */
  packFile(packId: string): string | undefined {
    return this.storage.localPath?.(packName(packId));
  }

  newPacker(onPackStored: (pack: IndexedPack) => void | Promise<void>, maxUploads?: number): Packer {
    return new Packer(this.storage, this.keys, this.config.packSize, onPackStored, maxUploads);
  }

  /**
   * Encode a tree on this thread and compute its ID; `seal()` compresses and
   * encrypts it for a Packer, which is only needed when the ID is new (most trees
   * of a backup after the first are already stored).
   */
  encodeTree(tree: Tree): { id: Buffer; rawLength: number; seal(): Buffer } {
    const plain = encodeTree(tree);
    const id = blobId(this.keys, BlobType.Tree, plain);
    return { id, rawLength: plain.length, seal: () => sealBlobWithId(this.keys, BlobType.Tree, id, plain, 'auto').sealed };
  }

  // ---- snapshots ------------------------------------------------------------

  /**
   * Every snapshot, oldest first. One that cannot be read fails the listing,
   * unless `onUnreadable` is given: then it is told and the snapshot left out
   * (the mount shows the others). One forgotten meanwhile is left out.
   */
  async listSnapshots(onUnreadable?: (id: string, err: unknown) => void): Promise<SnapshotEntry[]> {
    const listed = (await collectList(this.storage, SNAPSHOTS)).map(({ name }) => ({ name, id: idOf(SNAPSHOTS, name) }));
    const memo = this.snapshotMemo;
    const known = memo ? await memo.load() : new Map<string, Snapshot>();
    let opened = 0;
    const loaded = await mapLimit(listed, 8, async ({ name, id }) => {
      if (!id) return undefined;
      const remembered = known.get(name);
      if (remembered) return { id, name, snapshot: remembered };
      try {
        const snapshot = await this.loadSnapshot(id);
        opened++;
        return { id, name, snapshot };
      } catch (err) {
        if (isNotFound(err)) return undefined; // forgotten meanwhile
        if (!onUnreadable) throw err;
        onUnreadable(id, err);
        return undefined;
      }
    });
    const entries = loaded.filter((e) => e !== undefined);
    // Written again when it gained a snapshot or holds one the listing no longer shows.
    if (memo && (opened > 0 || known.size !== entries.length - opened)) {
      await memo.save(new Map(entries.map((e) => [e.name, e.snapshot])));
    }
    return sortByTime(entries.map(({ id, snapshot }) => ({ id, snapshot })));
  }

  async loadSnapshot(id: string): Promise<Snapshot> {
    const name = `${SNAPSHOTS}${id}`;
    return openJson<Snapshot>(this.keys, name, await this.storage.get(name));
  }

  async saveSnapshot(snapshot: Snapshot): Promise<string> {
    const id = crypto.randomBytes(32).toString('hex');
    const name = `${SNAPSHOTS}${id}`;
    await this.storage.put(name, sealJson(this.keys, name, snapshot), { ifNotExists: true });
    return id;
  }

  async deleteSnapshot(id: string): Promise<void> {
    await this.storage.delete(`${SNAPSHOTS}${id}`);
  }

  async close(): Promise<void> {
    await this.storage.close();
  }
}

/** Wrap the master keys for a passphrase and store them as a new key file; returns its ID. */
async function writeKeyFile(storage: Storage, keys: MasterKeys, passphrase: string): Promise<string> {
  const id = crypto.randomBytes(32).toString('hex');
  const name = `${KEYS}${id}`;
  const file = await wrapMasterKeys(keys, passphrase);
  file.info = sealJson(keys, `${name}#info`, currentKeyInfo()).toString('base64');
  await storage.put(name, Buffer.from(JSON.stringify(file, null, 2)), { ifNotExists: true });
  return id;
}

async function firstObject(storage: Storage): Promise<boolean> {
  for await (const _ of storage.list('')) return true;
  return false;
}

/**
 * What a failed read of a blob's bytes means: a missing or truncated pack is
 * damage to that blob (DamagedBlobError); anything else (a transient storage
 * error, say) is passed on as it is.
 */
export function packReadFailure(err: unknown, blobId: string, packId: string): unknown {
  if (isNotFound(err)) return new DamagedBlobError(blobId, 'its pack is missing', packId);
  if (err instanceof StorageError && err.kind === 'permanent' && /short read/.test(err.message)) return new DamagedBlobError(blobId, 'its pack is truncated', packId);
  return err;
}
