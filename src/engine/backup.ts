// Metadata calls are synchronous on purpose: from the dentry cache they take a
// microsecond or two, while each promise-based call is a round trip through
// libuv's four-thread pool (measured: 1.2 s of a 30,000-file backup).
import fs, { promises as fsp, type BigIntStats } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError, InterruptedError } from '../errors.js';
import { BlobType } from '../repo/blob.js';
import { type CompressionMode } from '../repo/compression.js';
import { type IndexedPack } from '../repo/index.js';
import { IdTable } from '../repo/id-table.js';
import { type Packer } from '../repo/packer.js';
import { type Repository } from '../repo/repository.js';
import { type BackupSummary, type Snapshot } from '../snapshot/snapshot.js';
import { type TreeNode, compareNames } from '../snapshot/tree.js';
import { type CachedDir, type CachedFile, FileCache } from '../state/filecache.js';
import { forgetStaleRepos, noteBackup, openStateDb } from '../state/statedb.js';
import { MemoReader, TreeMemo } from '../state/treememo.js';
import { type FinishedPack, FileReadError, WorkerPool } from '../workers/pool.js';
import { ChangedTypeError, type FileIdentity } from '../workers/source-file.js';
import { ExcludeMatcher } from './excludes.js';
import { DevStrings, REC, identityAt, nativeScanDir, nodeFromRecord, recordType, u64 } from './dirscan.js';
import { accounts, nodeFromStat, nodeType, readXattrs } from './fsmeta.js';
import { adoptUnindexedPacks } from './orphans.js';
import { findParent, resolveSnapshot } from './snapshots.js';
import { VERSION } from '../version.js';
import { Semaphore, mapLimit } from '../util/concurrency.js';
import { progressIntervalMs } from '../util/progress-interval.js';

export interface BackupOptions {
  paths: string[];
  tags?: string[];
  host?: string;
  excludes?: string[];
  oneFileSystem?: boolean;
  dryRun?: boolean;
  compression?: CompressionMode;
  /** Snapshot ID to compare against; default: the newest with the same host and paths. */
  parent?: string;
  signal?: AbortSignal;
  onProgress?: (p: BackupProgress) => void;
  /** A file that could not be read, vanished, or changed while read. */
  onWarning?: (w: BackupWarning) => void;
  /** Threads for chunking/hashing/sealing; default: the number of cores. */
  threads?: number;
  /** When an index object is written (tests); default CHECKPOINT_PACKS and CHECKPOINT_BLOBS. */
  indexCheckpoint?: { packs: number; blobs: number };
}

export interface BackupProgress {
  /** Size of the parent snapshot, when there is one (an estimate of the total). */
  bytesExpected?: number;
  filesDone: number;
  bytesDone: number;
  bytesRead: number;
  currentPath?: string;
  errors: number;
}

export interface BackupWarning {
  /** The path decoded as UTF-8 (names that are not valid UTF-8 get U+FFFD). */
  path: string;
  /** The path's exact bytes, for display with escapes. */
  rawPath: Buffer;
  kind: 'unreadable' | 'vanished' | 'changed';
  /** What happened, without the path: "permission denied". */
  reason: string;
  /** `path: reason`. */
  message: string;
}

export interface BackupResult {
  snapshotId?: string;
  snapshot: Snapshot;
  summary: BackupSummary;
  warnings: BackupWarning[];
}

/**
 * An index object is written once this many packs or blobs wait for one: a
 * backup killed later loses no more than that to re-reading (packs it stored
 * are adopted, see orphans.ts), and the queue and each index object stay
 * small. A pack of small files holds ~100,000 blobs; waiting for 32 of them
 * had held every entry until the end and then encoded, compressed and sealed
 * one index object of all of them at once.
 */
const CHECKPOINT_PACKS = 32;
const CHECKPOINT_BLOBS = 65_536;
const SLASH = Buffer.from('/');

/** Entries of one directory examined at once (lstat, cache lookup, queueing reads). */
const DIR_CONCURRENCY = 32;

/** Start one entry's work; resolves when the walk may go on, with the promise of that work. */
type WalkStep = () => Promise<{ done: Promise<unknown> }>;

/**
 * One backup run: scan → (unchanged? reuse) → chunk/hash/compress/seal in the
 * worker pool → pack → upload → index → snapshot. The snapshot is written only
 * after every pack it needs is stored and indexed.
 */
export async function backup(repo: Repository, opts: BackupOptions): Promise<BackupResult> {
  const started = new Date();
  const absPaths = await resolvePaths(opts.paths);
  const lock = opts.dryRun ? undefined : await repo.lock(false);
  const db = openStateDb();
  let pool: WorkerPool | undefined;
  try {
    await repo.loadIndex();
    if (!opts.dryRun) await adoptUnindexedPacks(repo);
    const hostname = opts.host ?? os.hostname();
    const parentEntry = opts.parent !== undefined ? await resolveSnapshot(repo, opts.parent) : await findParent(repo, hostname, absPaths);
    const parent = parentEntry?.id;

    const staging = await repo.staging(opts.dryRun);
    let run: BackupRun | undefined;
    pool = new WorkerPool({
      keys: repo.keys,
      chunker: repo.config.chunker,
      size: opts.threads,
      knownIds: keysOf(repo),
      // Four batches queued per thread, not two: a thread drained its queue
      // while the main thread was busy for a few milliseconds (a tree, a
      // state-database write). Bench tree, ten alternating runs against two:
      // median 2.54 s against 2.61 s, faster in eight pairs; peak RSS median
      // 245 MiB against 237 MiB (docs/DECISIONS.md, "Backup pipeline").
      tasksPerWorker: 4,
      packSize: repo.config.packSize,
      staging,
      onPack: (pack) => run!.storeDataPack(pack),
    });
    // Owner names and the tree memo's digest of the account files come from one read of them.
    const memos = new TreeMemo(db, repo.config.id, accounts.refresh());
    run = new BackupRun(repo, pool, new FileCache(db, repo.config.id), memos, opts, parent !== undefined, parentEntry?.snapshot.summary?.total_bytes_processed);
    let root: string;
    try {
      root = await run.buildRoot(absPaths);
    } catch (err) {
      await run.salvage();
      throw err;
    }
    await run.finish();
    // Interrupted while the last packs were being stored: they are indexed now,
    // for the next backup to reuse, but a stop asked for writes no snapshot.
    if (opts.signal?.aborted) throw new InterruptedError();

    const summary: BackupSummary = { ...run.summary, backup_start: started.toISOString(), backup_end: new Date().toISOString() };
    const snapshot: Snapshot = {
      time: started.toISOString(),
      tree: root,
      paths: absPaths,
      hostname,
      username: safeUser(),
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      tags: opts.tags ?? [],
      program_version: `aegis ${VERSION}`,
      summary,
    };
    if (parent) snapshot.parent = parent;
    if (opts.excludes?.length) snapshot.excludes = opts.excludes;
    if (run.sawXattrs) snapshot.has_xattrs = true;
    const snapshotId = opts.dryRun ? undefined : await repo.saveSnapshot(snapshot);
    if (!opts.dryRun) {
      noteBackup(db, repo.config.id);
      forgetStaleRepos(db);
    }
    return { snapshotId, snapshot, summary, warnings: run.warnings };
  } finally {
    await pool?.close();
    db.close();
    await lock?.release();
  }
}

function keysOf(repo: Repository): Iterable<string> {
  return (function* () {
    yield* repo.index.ids();
  })();
}

async function resolvePaths(paths: string[]): Promise<string[]> {
  if (paths.length === 0) throw new UserError('nothing to back up: give at least one path');
  const out: string[] = [];
  for (const p of paths) {
    const abs = path.resolve(p);
    try {
      await fsp.lstat(abs);
    } catch (err) {
      throw new UserError(`cannot back up ${p}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`);
    }
    if (!out.includes(abs)) out.push(abs);
  }
  return out.sort();
}

/** "EACCES: permission denied, open '/x'" → "permission denied": the path is reported on its own. */
function describeFsError(err: unknown): string {
  const m = /^[A-Z0-9_]+: (.*?), \w+ '/s.exec((err as Error).message);
  return m ? m[1]! : (err as Error).message;
}

function safeUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return String(process.getuid?.() ?? '');
  }
}

/** Directory entries chosen for the virtual root that leads to each backed-up path. */
interface PathTrie {
  children: Map<string, PathTrie>;
  /** This node is itself a backed-up path: take everything below it. */
  whole: boolean;
}

class BackupRun {
  readonly warnings: BackupWarning[] = [];
  /** Whether an entry of the snapshot has extended attributes (read now, or in a tree reused from the memo). */
  sawXattrs = false;
  readonly summary = {
    files_new: 0,
    files_changed: 0,
    files_unmodified: 0,
    dirs_new: 0,
    dirs_changed: 0,
    dirs_unmodified: 0,
    data_blobs: 0,
    tree_blobs: 0,
    data_added: 0,
    data_added_packed: 0,
    total_files_processed: 0,
    total_bytes_processed: 0,
    bytes_read: 0,
    files_read: 0,
    errors: 0,
  };
  private readonly treePacker: Packer;
  /**
   * Blobs this run will have stored that the repository's index does not hold
   * yet: trees waiting in the tree packer, and in a dry run every new blob.
   * Stored packs go into the index in memory at once (Repository.learnPack).
   */
  private readonly pending = new IdTable();
  private readonly indexQueue: IndexedPack[] = [];
  private queuedBlobs = 0;
  /** Data packs whose store began and that no index object written by this run names yet. */
  private readonly unindexedPacks = new Set<string>();
  private readonly excludes: ExcludeMatcher;
  private readonly compression: CompressionMode;
  private readonly isStored = (id: string): boolean => this.repo.index.has(id) || (this.pending.size > 0 && this.pending.findHex(id) >= 0);
  /** isStored for the 32 bytes of an ID at `buf[at]`. */
  private readonly isStoredAt = (buf: Buffer, at: number): boolean => this.repo.index.hasBytes(buf, at) || (this.pending.size > 0 && this.pending.find(buf, at) >= 0);
  /** Every chunk ID of the files read in this run: each must be stored before the snapshot is. */
  private readonly readIds = new IdTable();
  /** Content lists of files that changed while read: never offered to the next backup as unchanged. */
  private readonly readWhileChanging = new WeakSet<string[]>();
  /** dev:inode → content of a hardlinked file already read in this run. */
  private readonly hardlinks = new Map<string, Promise<{ content: string[]; size: number } | undefined>>();
  private readonly onStored: (pack: IndexedPack) => Promise<void>;
  /**
   * Files started and not finished: enough to keep every worker busy, few
   * enough to bound memory. The native walk takes a place before it starts a
   * file and goes on without waiting for it, so however large the tree, only
   * this many files and the directories above them are held in memory; the
   * other paths (saveEntry) hold a place while they read.
   */
  private readonly window: Semaphore;
  private progressTimer: NodeJS.Timeout | undefined;
  /** The file being read, as bytes: made a string only when progress is reported. */
  private current: Buffer | undefined;

  constructor(
    private readonly repo: Repository,
    private readonly pool: WorkerPool,
    private readonly cache: FileCache,
    private readonly memos: TreeMemo,
    private readonly opts: BackupOptions,
    private readonly hasParent: boolean,
    /** The parent snapshot's size: the best cheap guess of this one's, for an ETA. */
    private readonly bytesExpected?: number,
  ) {
    const onStored = async (pack: IndexedPack) => {
      this.repo.learnPack(pack);
      this.indexQueue.push(pack);
      this.queuedBlobs += pack.entries.count;
      const every = this.opts.indexCheckpoint ?? { packs: CHECKPOINT_PACKS, blobs: CHECKPOINT_BLOBS };
      if (this.indexQueue.length >= every.packs || this.queuedBlobs >= every.blobs) await this.flushIndex();
    };
    this.onStored = onStored;
    this.treePacker = repo.newPacker(onStored, 1);
    this.excludes = new ExcludeMatcher(opts.excludes ?? []);
    // Enough files waiting that every thread gets full batches while the scan goes on;
    // a waiting file costs a path and a promise, never its contents.
    this.window = new Semaphore(pool.size * 256);
    this.compression = opts.compression ?? repo.config.compression;
    if (opts.onProgress) {
      this.progressTimer = setInterval(() => this.reportProgress(), progressIntervalMs());
      this.progressTimer.unref();
    }
  }

  private reportProgress(): void {
    this.opts.onProgress?.({
      filesDone: this.summary.total_files_processed,
      bytesDone: this.summary.total_bytes_processed,
      bytesRead: this.summary.bytes_read,
      currentPath: this.current?.toString(),
      errors: this.summary.errors,
      bytesExpected: this.bytesExpected,
    });
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw new InterruptedError();
  }

  private warn(p: Buffer, kind: BackupWarning['kind'], reason: string): void {
    const w = { path: p.toString('utf8'), rawPath: p, kind, reason, message: `${p.toString('utf8')}: ${reason}` };
    if (kind !== 'changed') this.summary.errors++;
    this.warnings.push(w);
    this.opts.onWarning?.(w);
  }

  private async flushIndex(): Promise<void> {
    const packs = this.indexQueue.splice(0);
    this.queuedBlobs = 0;
    if (this.opts.dryRun) return;
    await this.repo.writeIndex(packs);
    for (const p of packs) this.unindexedPacks.delete(p.packId);
  }

  /** A pack of new data blobs assembled by a worker thread: store it, then index it. */
  async storeDataPack(pack: FinishedPack): Promise<void> {
    const { entries } = pack;
    for (let i = 0; i < entries.count; i++) {
      this.summary.data_blobs++;
      this.summary.data_added += entries.rawLength(i);
      this.summary.data_added_packed += entries.length(i);
    }
    if (this.opts.dryRun) {
      for (let i = 0; i < entries.count; i++) this.pending.insert(entries.bytes, entries.idAt(i));
      return;
    }
    this.unindexedPacks.add(pack.packId);
    if (pack.data) await this.repo.storePack(pack.packId, pack.data, pack.sha256);
    else await this.repo.storePackFile(pack.packId, pack.file, pack.sha256);
    await this.onStored({ packId: pack.packId, entries });
  }

  /** Store a new tree blob once per run and once per repository. */
  private async storeTree(id: Buffer, seal: () => Buffer, rawLength: number): Promise<void> {
    if (this.repo.index.hasBytes(id, 0) || this.pending.insert(id) < 0) return;
    this.summary.tree_blobs++;
    if (this.opts.dryRun) return;
    await this.treePacker.add(BlobType.Tree, id, seal(), rawLength);
  }

  async buildRoot(absPaths: string[]): Promise<string> {
    this.memos.preload(absPaths);
    const trie: PathTrie = { children: new Map(), whole: false };
    for (const p of absPaths) {
      let t = trie;
      for (const part of p.split('/').filter(Boolean)) {
        let c = t.children.get(part);
        if (!c) {
          c = { children: new Map(), whole: false };
          t.children.set(part, c);
        }
        t = c;
      }
      t.whole = true;
    }
    if (trie.whole) {
      // Backing up "/" itself.
      const st = fs.lstatSync('/', { bigint: true });
      const rootNode = await this.saveDir(Buffer.from('/'), this.withXattrs(Buffer.from('/'), nodeFromStat(Buffer.from('/'), st, 'dir')), st.dev);
      return rootNode?.subtree ?? this.saveTree([]);
    }
    return this.saveTrie(Buffer.alloc(0), trie);
  }

  /** A directory on the way to a backed-up path: real metadata, only the chosen entries. */
  private async saveTrie(dirPath: Buffer, trie: PathTrie): Promise<string> {
    const nodes: TreeNode[] = [];
    for (const [name, child] of trie.children) {
      const childPath = Buffer.concat([dirPath, Buffer.from('/' + name)]);
      // A backed-up path is recorded as it is (a symlink stays a symlink); the
      // directories leading to it are followed, so /var -> /private/var reads as a directory.
      const st = child.whole ? fs.lstatSync(childPath, { bigint: true }) : fs.statSync(childPath, { bigint: true });
      if (child.whole) {
        const node = await this.saveEntry(childPath, Buffer.from(name), st);
        if (node) nodes.push(node);
      } else {
        const node = this.withXattrs(childPath, nodeFromStat(Buffer.from(name), st, 'dir'));
        node.subtree = await this.saveTrie(childPath, child);
        nodes.push(node);
      }
    }
    // Files named on the command line: remembered with their directory (which then lists only them).
    if (nodes.some((n) => n.type === 'file')) this.rememberFiles(dirPath.length > 0 ? dirPath : Buffer.from('/'), nodes);
    return this.saveTree(nodes);
  }

  private async saveTree(nodes: TreeNode[]): Promise<string> {
    nodes.sort(compareNames);
    const { id, seal, rawLength } = this.repo.encodeTree({ nodes });
    // Same listing as before → unmodified; otherwise new on a first backup, changed after one.
    if (this.isStoredAt(id, 0)) this.summary.dirs_unmodified++;
    else if (this.hasParent) this.summary.dirs_changed++;
    else this.summary.dirs_new++;
    await this.storeTree(id, seal, rawLength);
    return id.toString('hex');
  }

  private async saveEntry(p: Buffer, name: Buffer, st: BigIntStats, rootDev?: bigint): Promise<TreeNode | undefined> {
    this.checkAbort();
    const type = nodeType(st);
    if (!type) return undefined;
    const identity = { dev: st.dev, ino: st.ino };
    if (type === 'dir') return this.saveDir(p, this.withXattrs(p, nodeFromStat(name, st, 'dir')), rootDev ?? st.dev, identity);
    const node = this.withXattrs(p, nodeFromStat(name, st, type));
    if (type === 'symlink') {
      if (!this.readLink(p, node)) return undefined;
    } else if (type === 'file') {
      const linkKey = st.nlink > 1n ? `${st.dev}:${st.ino}` : undefined;
      const got = await this.window.with(() =>
        this.saveFileContent(p, Number(st.size), linkKey, () => this.cache.lookup(p, st, this.isStoredAt), () => this.cache.knows(p), identity),
      );
      if (!got) return undefined;
      node.content = got.content;
      node.size = got.size;
    }
    this.summary.total_files_processed++;
    return node;
  }

  /**
   * `node` with the extended attributes `p` has now. One that cannot be read is
   * reported (the backup is then partial) and the entry kept without them.
   */
  private withXattrs(p: Buffer, node: TreeNode): TreeNode {
    try {
      const xattrs = readXattrs(p);
      if (xattrs) {
        node.xattrs = xattrs;
        this.sawXattrs = true;
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.warn(p, 'unreadable', `cannot read its extended attributes: ${describeFsError(err)}`);
    }
    return node;
  }

  private readLink(p: Buffer, node: TreeNode): boolean {
    try {
      node.linkTarget = fs.readlinkSync(p, { encoding: 'buffer' });
      return true;
    } catch (err) {
      this.fileError(p, err);
      return false;
    }
  }

  private fileError(p: Buffer, err: unknown): void {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') this.warn(p, 'vanished', 'vanished during backup');
    else this.warn(p, 'unreadable', describeFsError(err));
  }

  /**
   * A file's content: the cached list when the file is unchanged, else read.
   * Every name of a hardlinked file gets what the first one got.
   */
  private async saveFileContent(
    p: Buffer,
    size: number,
    linkKey: string | undefined,
    cached: () => string[] | undefined,
    known: () => boolean,
    identity: FileIdentity,
  ): Promise<{ content: string[]; size: number } | undefined> {
    if (linkKey) {
      const earlier = this.hardlinks.get(linkKey);
      if (earlier) return earlier;
    }
    const content = cached();
    const work = content ? Promise.resolve(this.unmodified(content, size)) : this.readFile(p, size, known, identity);
    if (linkKey) this.hardlinks.set(linkKey, work);
    return work;
  }

  private unmodified(content: string[], size: number): { content: string[]; size: number } {
    this.summary.files_unmodified++;
    this.summary.total_bytes_processed += size;
    return { content, size };
  }

  private async readFile(p: Buffer, size: number, known: () => boolean, identity: FileIdentity): Promise<{ content: string[]; size: number } | undefined> {
    let result;
    try {
      this.checkAbort();
      this.current = p;
      if (this.pool.packFailure) throw this.pool.packFailure;
      result = await this.pool.chunkFile(p, this.compression, size, identity);
    } catch (err) {
      if (err instanceof FileReadError) {
        this.fileError(p, err);
        return undefined;
      }
      throw err;
    }
    this.checkAbort();
    if (known()) this.summary.files_changed++;
    else this.summary.files_new++;
    this.summary.files_read++;
    this.summary.bytes_read += result.size;
    this.summary.total_bytes_processed += result.size;
    for (const id of result.content) this.readIds.insertHex(id);
    if (result.changed) {
      this.warn(p, 'changed', 'changed while being read; the snapshot holds the bytes as read');
      this.readWhileChanging.add(result.content);
    }
    return { content: result.content, size: result.size };
  }

  /** A directory: `node` is its own entry; `dev` the device of the backed-up path. Undefined if it vanished. */
  private async saveDir(p: Buffer, node: TreeNode, dev: bigint, identity?: FileIdentity): Promise<TreeNode | undefined> {
    const subtree = await this.dirTree(p, dev, undefined, identity);
    if (subtree === undefined) return undefined;
    node.subtree = subtree;
    return node;
  }

  /**
   * The tree ID of directory `p`; undefined if it vanished. `walked` is called
   * once every entry's work has started (the files to read hold a place in the
   * walk's window): the parent walks on from there without waiting for the reads.
   */
  private async dirTree(p: Buffer, dev: bigint, walked: () => void = () => {}, identity?: FileIdentity): Promise<string | undefined> {
    try {
      return await this.dirTreeWalk(p, dev, walked, identity);
    } finally {
      walked();
    }
  }

  private async dirTreeWalk(p: Buffer, dev: bigint, walked: () => void, identity?: FileIdentity): Promise<string | undefined> {
    const scan = nativeScanDir();
    const scanned = scan ? scan(p, identity?.dev, identity?.ino) : undefined;
    if (!(scanned instanceof Buffer)) {
      // Not the directory its parent's scan found (a symlink or another directory
      // swapped in since): left out, never listed through the new path.
      const now = identity && this.replacedDirectory(p, identity);
      if (now) {
        this.warn(p, 'unreadable', new ChangedTypeError(now, 'the directory').message);
        return undefined;
      }
      // No addon, or the directory could not be read: Node's calls, which also word the error.
      return this.dirTreeWithNode(p, dev);
    }
    this.checkAbort();
    const prefix = p.length === 1 && p[0] === 0x2f ? p : Buffer.concat([p, SLASH]);
    const memo = this.memos.get(p);
    let subtrees: Map<number, string | undefined> | undefined;
    if (memo && this.memos.matches(memo, scanned)) {
      const reused = await this.reuseTree(prefix, scanned, memo, dev);
      if (typeof reused === 'string') return reused;
      subtrees = reused;
    }
    const cached = this.cache.dir(p);
    const nodes: TreeNode[] = [];
    // What each entry of the scan became, in the scan's order; undefined if left out.
    const slots: Array<TreeNode | undefined> = [];
    // Entries that wait for something (a subdirectory, a file to read): started after the others, in order.
    const later: WalkStep[] = [];
    const devs = new DevStrings();
    for (let o = 0, i = 0; o < scanned.length; i++) {
      const slot = i;
      const nameLength = scanned.readUInt16LE(o);
      const r = o + 2 + nameLength;
      const name = scanned.subarray(o + 2, r);
      o = r + REC.LENGTH;
      slots.push(undefined);
      let childPath: Buffer | undefined;
      const pathOf = () => (childPath ??= Buffer.concat([prefix, name]));
      if (!this.excludes.empty && this.excludes.excluded(pathOf().toString('utf8'), name.toString('utf8'))) continue;
      if (scanned.readUInt32LE(r + REC.ERRNO) !== 0) {
        // lstat failed (the entry vanished since it was listed, say): once more with Node's lstat, for its error.
        later.push(async () => ({
          done: (async () => {
            const n = await this.saveChild(pathOf(), name, dev);
            if (n) nodes.push(n);
          })(),
        }));
        continue;
      }
      const type = recordType(scanned, r);
      if (!type) continue;
      const child = this.withXattrs(pathOf(), nodeFromRecord(name, scanned, r, type, devs.of(scanned, r)));
      if (type === 'dir') {
        if (subtrees?.has(slot)) {
          // Done already, by the attempt to reuse this directory's tree.
          child.subtree = subtrees.get(slot);
          if (child.subtree !== undefined) nodes.push((slots[slot] = child));
        } else {
          later.push(async () => {
            let walkedOn!: () => void;
            const childWalked = new Promise<void>((resolve) => (walkedOn = resolve));
            const done = (async () => {
              const subtree = await this.dirEntrySubtree(pathOf(), scanned, r, dev, walkedOn);
              if (subtree === undefined) return;
              child.subtree = subtree;
              nodes.push((slots[slot] = child));
            })();
            await Promise.race([childWalked, done]);
            return { done };
          });
        }
        continue;
      }
      if (type === 'symlink') {
        if (!this.readLink(pathOf(), child)) continue;
      } else if (type === 'file') {
        const key = name.toString('latin1');
        const lookup = () => cached.lookup(key, scanned, r + REC.CACHE_STAT, this.isStoredAt);
        const links = child.links;
        const content = links === 1 ? lookup() : undefined;
        if (content) {
          child.content = this.unmodified(content, child.size).content;
        } else {
          const linkKey = links > 1 ? `${child.dev}:${child.inode}` : undefined;
          later.push(async () => {
            await this.window.acquire();
            const done = (async () => {
              try {
                const got = await this.saveFileContent(pathOf(), child.size, linkKey, lookup, () => cached.knows(key), identityAt(scanned, r));
                if (!got) return;
                child.content = got.content;
                child.size = got.size;
                this.summary.total_files_processed++;
                nodes.push((slots[slot] = child));
              } finally {
                this.window.release();
              }
            })();
            return { done };
          });
          continue;
        }
      }
      this.summary.total_files_processed++;
      nodes.push((slots[slot] = child));
    }
    // One step at a time, so the walk goes depth first and what waits is bounded
    // by the window (files) and the depth (directories), not by the tree's size.
    const running: Promise<unknown>[] = [];
    for (const step of later) {
      const { done } = await step();
      // Marked handled now: if the walk stops on an error, the rest must not crash the process.
      done.catch(() => {});
      running.push(done);
    }
    walked();
    await Promise.all(running);
    this.rememberFiles(p, nodes, cached);
    const tree = await this.saveTree(nodes);
    this.rememberTree(p, tree, scanned, slots, memo);
    return tree;
  }

  /**
   * What a directory's path leads to now, if not the directory its parent's
   * scan found (`identity`): "a symbolic link", "another directory"…; undefined
   * if it is that directory (or is gone: Node's calls then report it).
   */
  private replacedDirectory(p: Buffer, identity: FileIdentity): string | undefined {
    let st: BigIntStats;
    try {
      st = fs.lstatSync(p, { bigint: true });
    } catch {
      return undefined;
    }
    if (st.isSymbolicLink()) return 'a symbolic link';
    if (!st.isDirectory()) return 'something other than a directory';
    if (st.dev !== identity.dev || st.ino !== identity.ino) return 'another directory';
    return undefined;
  }

  /**
   * The subtree of a directory entry from a scan: its own tree, or an empty one
   * for a mount point under --one-file-system; undefined if it vanished.
   */
  private async dirEntrySubtree(childPath: Buffer, scanned: Buffer, r: number, dev: bigint, walked?: () => void): Promise<string | undefined> {
    const identity = identityAt(scanned, r);
    // A mount point: record the directory itself, not what is mounted on it.
    if (this.opts.oneFileSystem && identity.dev !== dev) return this.saveTree([]);
    return this.dirTree(childPath, dev, walked, identity);
  }

  /**
   * A directory whose entries are, byte for byte, what its memo was made from:
   * its tree is the memo's if every content blob and the tree are still stored,
   * every symlink points where it did, and every subdirectory (done here, bottom
   * up) has the tree it had. Otherwise the subtrees already done, by entry.
   */
  private async reuseTree(prefix: Buffer, scanned: Buffer, memo: Buffer, dev: bigint): Promise<string | Map<number, string | undefined>> {
    const subtrees = new Map<number, string | undefined>();
    const row = new MemoReader(memo);
    const treeId = row.tree;
    const hasXattrs = row.hasXattrs;
    if (!this.isStored(treeId)) return subtrees;
    const dirs: Array<{ slot: number; path: Buffer; r: number; expected: string }> = [];
    let files = 0;
    let nonDirs = 0;
    let bytes = 0;
    for (let o = 0, slot = 0; o < scanned.length; slot++) {
      const nameLength = scanned.readUInt16LE(o);
      const r = o + 2 + nameLength;
      const name = scanned.subarray(o + 2, r);
      o = r + REC.LENGTH;
      const childPath = (): Buffer => Buffer.concat([prefix, name]);
      // Only scans without a failed lstat are remembered, so none is met here.
      if (!this.excludes.empty && this.excludes.excluded(childPath().toString('utf8'), name.toString('utf8'))) return subtrees;
      const type = recordType(scanned, r);
      if (type === 'file') {
        const { at, count } = row.file();
        for (let i = 0; i < count; i++) if (!this.isStoredAt(memo, at + 32 * i)) return subtrees;
        files++;
        nonDirs++;
        bytes += u64(scanned, r + REC.SIZE);
      } else if (type === 'dir') {
        dirs.push({ slot, path: childPath(), r, expected: row.dir() });
      } else if (type === 'symlink') {
        const stored = row.symlink();
        let target: Buffer;
        try {
          target = fs.readlinkSync(childPath(), { encoding: 'buffer' });
        } catch {
          return subtrees; // the usual path reports it
        }
        if (!target.equals(stored)) return subtrees;
        nonDirs++;
      } else {
        nonDirs++;
      }
    }
    let same = true;
    await mapLimit(dirs, DIR_CONCURRENCY, async (d) => {
      const subtree = await this.dirEntrySubtree(d.path, scanned, d.r, dev);
      subtrees.set(d.slot, subtree);
      if (subtree !== d.expected) same = false;
    });
    if (!same) return subtrees;
    this.summary.files_unmodified += files;
    this.summary.total_files_processed += nonDirs;
    this.summary.total_bytes_processed += bytes;
    this.summary.dirs_unmodified++;
    if (hasXattrs) this.sawXattrs = true;
    return treeId;
  }

  /**
   * Remember what `tree` was made of (see src/state/treememo.ts), if every entry
   * of the scan is in it as scanned: none left out, none failed, none read while
   * it changed.
   */
  private rememberTree(dir: Buffer, tree: string, scanned: Buffer, slots: Array<TreeNode | undefined>, stored: Buffer | undefined): void {
    if (this.opts.dryRun) return;
    for (const n of slots) {
      if (!n) return;
      if (n.type === 'file' && (!n.content || this.readWhileChanging.has(n.content))) return;
    }
    const memo = this.memos.encode(tree, scanned, slots as TreeNode[]);
    if (stored?.equals(memo)) return;
    this.memos.record(dir, memo);
  }

  /** An entry whose lstat the scan could not take: Node's lstat, and the usual path from there. */
  private saveChild(childPath: Buffer, childName: Buffer, dev: bigint): Promise<TreeNode | undefined> {
    let cst: BigIntStats;
    try {
      cst = fs.lstatSync(childPath, { bigint: true });
    } catch (err) {
      this.fileError(childPath, err);
      return Promise.resolve(undefined);
    }
    return this.saveStatted(childPath, childName, cst, dev);
  }

  private async saveStatted(childPath: Buffer, childName: Buffer, cst: BigIntStats, dev: bigint): Promise<TreeNode | undefined> {
    if (this.opts.oneFileSystem && cst.isDirectory() && cst.dev !== dev) {
      // A mount point: record the directory itself, not what is mounted on it.
      const mp = this.withXattrs(childPath, nodeFromStat(childName, cst, 'dir'));
      mp.subtree = await this.saveTree([]);
      return mp;
    }
    return this.saveEntry(childPath, childName, cst, dev);
  }

  /** dirTree with Node's readdir and lstat: without the native addon, and to report a directory's error. */
  private async dirTreeWithNode(p: Buffer, dev: bigint): Promise<string | undefined> {
    let names: Buffer[];
    try {
      names = fs.readdirSync(p, { encoding: 'buffer' });
    } catch (err) {
      this.fileError(p, err);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      return this.saveTree([]);
    }
    const prefix = p.length === 1 && p[0] === 0x2f ? p : Buffer.concat([p, SLASH]);
    const entries = await mapLimit(names, DIR_CONCURRENCY, async (childName): Promise<TreeNode | undefined> => {
      const childPath = Buffer.concat([prefix, childName]);
      if (!this.excludes.empty && this.excludes.excluded(childPath.toString('utf8'), childName.toString('utf8'))) return undefined;
      return this.saveChild(childPath, childName, dev);
    });
    const saved = entries.filter((e): e is TreeNode => e !== undefined);
    this.rememberFiles(p, saved);
    return this.saveTree(saved);
  }

  /** Tell the file cache what this directory's files were, so the next backup can skip them. */
  private rememberFiles(dir: Buffer, nodes: TreeNode[], handle?: CachedDir): void {
    if (this.opts.dryRun) return;
    const remembered = (n: TreeNode) => n.type === 'file' && n.content !== undefined && !this.readWhileChanging.has(n.content);
    let count = 0;
    for (const n of nodes) if (remembered(n)) count++;
    if (this.cache.unchanged(dir, count, handle)) return;
    const files: CachedFile[] = [];
    for (const n of nodes) {
      if (!remembered(n)) continue;
      files.push({ name: n.name, size: n.size, mtimeNs: n.mtimeNs, ctimeNs: n.ctimeNs, inode: BigInt(n.inode), content: n.content! });
    }
    this.cache.recordDir(dir, files, handle);
  }

  /**
   * After an interruption or error: index the packs already stored so the next
   * backup reuses them. No snapshot is written, so nothing refers to partial work.
   */
  async salvage(): Promise<void> {
    if (this.progressTimer) clearInterval(this.progressTimer);
    this.pool.abort();
    await Promise.allSettled([this.pool.flushPacks(), this.treePacker.drain()]);
    await this.flushIndex().catch(() => {});
    this.cache.commit();
    this.memos.commit();
  }

  /** Wait for every upload and write the final index; after this the snapshot may be written. */
  async finish(): Promise<void> {
    if (this.progressTimer) clearInterval(this.progressTimer);
    this.reportProgress();
    await this.pool.flushPacks();
    await this.treePacker.flush();
    await this.flushIndex();
    this.cache.commit();
    this.memos.commit();
    // The snapshot may refer only to stored, indexed data: check before it is written.
    if (!this.opts.dryRun) {
      const [unindexed] = this.unindexedPacks;
      if (unindexed) throw new Error(`internal error: pack ${unindexed} was stored but not indexed before the snapshot; no snapshot written`);
      for (const ids of [this.pending, this.readIds]) {
        const id = ids.firstMissingFrom(this.repo.index);
        if (id) throw new Error(`internal error: blob ${id} was not stored before the snapshot; no snapshot written`);
      }
    }
  }
}
