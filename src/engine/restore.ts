import crypto from 'node:crypto';
import fs, { promises as fsp, constants as fsc } from 'node:fs';
import path from 'node:path';
import picomatch from 'picomatch';
import { keyedId } from '../crypto/ids.js';
import { InterruptedError, UserError } from '../errors.js';
import { BlobType, DamagedBlobError } from '../repo/blob.js';
import { StorageError } from '../storage/storage.js';
import { type Repository } from '../repo/repository.js';
import { type TreeNode } from '../snapshot/tree.js';
import { mapLimit } from '../util/concurrency.js';
import { type WorkerPool } from '../workers/pool.js';
import { makeDevice, makeFifo } from './special-files.js';
import { nativeSyscalls } from '../native/syscalls.js';
import { type WalkEntry, findNode, walk } from './walk.js';

export type OverwritePolicy = 'always' | 'if-changed' | 'never';

export interface RestoreOptions {
  target: string;
  /** Path inside the snapshot to restore; its contents land directly in target. Default: everything. */
  subpath?: string;
  include?: string[];
  exclude?: string[];
  verify?: boolean;
  overwrite?: OverwritePolicy;
  signal?: AbortSignal;
  onProgress?: (p: RestoreProgress) => void;
  onWarning?: (message: string) => void;
  /** Worker threads to decrypt and verify on; without one, the repository's opener is used. */
  pool?: WorkerPool;
}

export interface RestoreProgress {
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface RestoreSummary {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  special: number;
  skipped: number;
  bytes: number;
  errors: number;
  verified: number;
}

/** Where one blob's plaintext goes: which file, at which offset. */
interface Target {
  file: PendingFile;
  offset: number;
}

interface PendingFile {
  entry: WalkEntry;
  dest: Buffer;
  tmp: Buffer;
  remaining: number;
  /** Open while a file of several blobs is being written; single-blob files never keep one. */
  fd?: number;
  created?: boolean;
}

interface PackPlan {
  packId: string;
  blobs: Map<string, { offset: number; length: number; targets: Target[] }>;
}

const TMP_PREFIX = '.aegis-restore-';
/** Read neighbouring blobs of a pack in one request when the gap between them is smaller than this. */
const COALESCE_GAP = 1024 * 1024;
const MAX_RANGE = 8 * 1024 * 1024;

const isRoot = process.getuid?.() === 0;
/** Exact with the native addon; Node's fs.utimes alone lands within about a microsecond. */
const TIME_TOLERANCE_NS = nativeSyscalls() ? 1n : 2000n;

/**
 * Restore a snapshot (or a part of it) into a directory. Every file is written
 * under a temporary name in its final directory and renamed when complete, so an
 * interruption never leaves a partial file under a real name. Blobs are read pack
 * by pack (neighbours in one ranged read), decrypted and verified on worker
 * threads, and written to every file that uses them.
 */
export async function restore(repo: Repository, treeId: string, opts: RestoreOptions): Promise<RestoreSummary> {
  const summary: RestoreSummary = { files: 0, dirs: 0, symlinks: 0, hardlinks: 0, special: 0, skipped: 0, bytes: 0, errors: 0, verified: 0 };
  const overwrite = opts.overwrite ?? 'if-changed';
  const target = Buffer.from(path.resolve(opts.target));
  await repo.loadIndex();
  const start = await findNode(repo, treeId, opts.subpath ?? '/');
  const base = start.node.type === 'dir' ? start.path : Buffer.from(path.posix.dirname(start.path.toString('latin1')), 'latin1');
  const include = opts.include?.length ? picomatch(opts.include, { dot: true }) : undefined;
  const exclude = opts.exclude?.length ? picomatch(opts.exclude, { dot: true }) : undefined;

  const warn = (msg: string) => {
    summary.errors++;
    opts.onWarning?.(msg);
  };
  const checkAbort = () => {
    if (opts.signal?.aborted) throw new InterruptedError();
  };

  ensureDir(target, true);
  const dirs: Array<{ dest: Buffer; node: TreeNode }> = [];
  // Restoring SNAPSHOT:/some/dir into a target: the target takes that directory's metadata.
  if (start.node.type === 'dir' && start.path.length > 1 && !include) dirs.push({ dest: target, node: start.node });
  const files: PendingFile[] = [];
  const plans = new Map<string, PackPlan>();
  const hardlinkFirst = new Map<string, Buffer>();
  const hardlinkLater: Array<{ dest: Buffer; key: string }> = [];
  const verifyList: PendingFile[] = [];
  const createdDirs = new Set<string>([target.toString('latin1')]);

  const destFor = (p: Buffer): Buffer => {
    const rel = p.subarray(base.length === 1 ? 1 : base.length + 1);
    return rel.length ? Buffer.concat([target, Buffer.from('/'), rel]) : target;
  };
  const selected = (p: Buffer, node: TreeNode): boolean => {
    const s = p.toString('utf8');
    if (exclude && matchesSelfOrParent(exclude, s)) return false;
    if (!include) return true;
    return node.type === 'dir' ? true : matchesSelfOrParent(include, s);
  };
  const parentReady = (dest: Buffer) => {
    const parent = Buffer.from(path.posix.dirname(dest.toString('latin1')), 'latin1');
    if (!createdDirs.has(parent.toString('latin1'))) {
      fs.mkdirSync(parent, { recursive: true, mode: 0o700 });
      createdDirs.add(parent.toString('latin1'));
    }
  };

  const entries: WalkEntry[] = start.node.type === 'dir' ? [] : [start];
  if (start.node.type === 'dir') for await (const e of walk(repo, start)) entries.push(e);

  for (const entry of entries) {
    checkAbort();
    const { node } = entry;
    if (!selected(entry.path, node)) continue;
    const dest = destFor(entry.path);
    try {
      switch (node.type) {
        case 'dir': {
          if (include) break; // created on demand below, metadata applied if it exists
          ensureDir(dest, false);
          createdDirs.add(dest.toString('latin1'));
          dirs.push({ dest, node });
          summary.dirs++;
          break;
        }
        case 'file': {
          parentReady(dest);
          const linkKey = node.links > 1 ? `${node.dev}:${node.inode}` : undefined;
          if (linkKey && hardlinkFirst.has(linkKey)) {
            hardlinkLater.push({ dest, key: linkKey });
            break;
          }
          if (linkKey) hardlinkFirst.set(linkKey, dest);
          if (keepExisting(dest, node, overwrite)) {
            summary.skipped++;
            break;
          }
          const file = startFile(entry, dest);
          files.push(file);
          if (opts.verify) verifyList.push(file);
          let offset = 0;
          for (const id of node.content ?? []) {
            const loc = repo.index.get(id);
            if (!loc) throw new DamagedBlobError(id, `missing from the index (needed by ${entry.path.toString()})`);
            let plan = plans.get(loc.packId);
            if (!plan) plans.set(loc.packId, (plan = { packId: loc.packId, blobs: new Map() }));
            let b = plan.blobs.get(id);
            if (!b) plan.blobs.set(id, (b = { offset: loc.offset, length: loc.length, targets: [] }));
            b.targets.push({ file, offset });
            file.remaining++;
            offset += loc.rawLength;
          }
          summary.bytes += offset;
          if (file.remaining === 0) finishFile(file);
          summary.files++;
          break;
        }
        case 'symlink': {
          parentReady(dest);
          if (keepExisting(dest, node, overwrite)) {
            summary.skipped++;
            break;
          }
          replaceWith(dest, node, (tmp) => fs.symlinkSync(node.linkTarget ?? Buffer.alloc(0), tmp));
          summary.symlinks++;
          break;
        }
        case 'fifo':
        case 'chardev':
        case 'blockdev': {
          parentReady(dest);
          if (keepExisting(dest, node, overwrite)) {
            summary.skipped++;
            break;
          }
          replaceWith(dest, node, (tmp) => (node.type === 'fifo' ? makeFifo(tmp, node.mode) : makeDevice(tmp, node.type as 'chardev', node.rdev ?? 0, node.mode)));
          summary.special++;
          break;
        }
        case 'socket':
          break; // a socket is only meaningful while its server runs
      }
    } catch (err) {
      if (err instanceof DamagedBlobError || err instanceof InterruptedError || err instanceof UserError) throw err;
      warn(`${entry.path.toString()}: ${(err as Error).message}`);
    }
  }

  let filesDone = 0;
  let bytesDone = 0;
  const report = () => opts.onProgress?.({ filesDone, filesTotal: files.length, bytesDone, bytesTotal: summary.bytes });
  const timer = opts.onProgress ? setInterval(report, 250) : undefined;
  timer?.unref();

  const failed = new Set<PendingFile>();
  // A damaged blob fails only the files that need it: they are dropped (no
  // partial file under a real name), reported by name, and the rest is restored.
  const failFiles = async (targets: Target[], reason: string) => {
    for (const t of targets) {
      if (failed.has(t.file)) continue;
      failed.add(t.file);
      warn(`${t.file.entry.path.toString()}: not restored: ${reason}`);
      closeQuietly(t.file);
      fs.rmSync(t.file.tmp, { force: true });
    }
  };
  try {
    // Two packs at a time keep both worker threads busy; more only holds more data in memory.
    await mapLimit([...plans.values()], 2, async (plan) => {
      checkAbort();
      for (const range of coalesce(plan)) {
        let data: Buffer;
        try {
          // A restore reads each blob once: no point keeping a second copy in a remote repository's cache.
          data = await repo.readPackRange(plan.packId, range.start, range.end - range.start, { kind: 'data', keep: false });
        } catch (err) {
          if (err instanceof StorageError && err.kind === 'transient') throw err;
          await failFiles(range.blobs.flatMap(([, b]) => b.targets), `pack ${plan.packId.slice(0, 16)} cannot be read: ${(err as Error).message}`);
          continue;
        }
        const opened = await openRangeBlobs(repo, opts.pool, plan.packId, data, range);
        await Promise.all(
          range.blobs.map(async ([id, b], i) => {
            const result = opened[i]!;
            if (!result.plain) {
              await failFiles(b.targets, `blob ${id.slice(0, 16)} in pack ${plan.packId.slice(0, 16)} is damaged: ${result.error}`);
              return;
            }
            const plain = result.plain;
            const zero = isAllZero(plain);
            for (const t of b.targets) {
              if (failed.has(t.file)) continue;
              if (!zero) writeAt(t.file, plain, t.offset);
              bytesDone += plain.length;
              if (--t.file.remaining === 0) {
                finishFile(t.file);
                filesDone++;
              } else if (t.file.fd === undefined) {
                // More blobs to come: keep it open (only files spanning several blobs do).
                t.file.fd = openTmp(t.file);
              }
            }
          }),
        );
      }
    });
  } catch (err) {
    // Nothing half-written keeps a real name: drop every temporary file.
    for (const f of files.filter((x) => x.remaining > 0)) {
      closeQuietly(f);
      fs.rmSync(f.tmp, { force: true });
    }
    throw err;
  } finally {
    if (timer) clearInterval(timer);
  }
  report();
  summary.files -= failed.size;

  for (const { dest, key } of hardlinkLater) {
    try {
      replaceWith(dest, null, (tmp) => fs.linkSync(hardlinkFirst.get(key)!, tmp));
      summary.hardlinks++;
    } catch (err) {
      warn(`${dest.toString()}: hardlink: ${(err as Error).message}`);
    }
  }

  // Directory metadata last and deepest first: creating entries changes a directory's mtime.
  for (let i = dirs.length - 1; i >= 0; i--) {
    try {
      applyMetadata(dirs[i]!.dest, dirs[i]!.node);
    } catch (err) {
      warn(`${dirs[i]!.dest.toString()}: ${(err as Error).message}`);
    }
  }

  if (opts.verify) {
    for (const f of verifyList.filter((x) => !failed.has(x))) {
      checkAbort();
      await verifyFile(repo, f.dest, f.entry);
      summary.verified++;
    }
  }
  return summary;

  /** The temporary file is created on the first write (or at the end, for empty and all-zero files). */
  function startFile(entry: WalkEntry, dest: Buffer): PendingFile {
    const dir = Buffer.from(path.posix.dirname(dest.toString('latin1')), 'latin1');
    const tmp = Buffer.concat([dir, Buffer.from(`/${TMP_PREFIX}${crypto.randomBytes(8).toString('hex')}`)]);
    return { entry, dest, tmp, remaining: 0 };
  }

}

/**
 * The write path is synchronous: writes land in the page cache in microseconds,
 * while each promise-based call queues on libuv's four-thread pool (measured: the
 * main thread waited most of a 30,000-file restore). No fsync per file: like
 * restic, a restore relies on the rename being last, not on per-file durability.
 */
function openTmp(f: PendingFile): number {
  if (f.fd !== undefined) return f.fd;
  if (f.created) return fs.openSync(f.tmp, fsc.O_WRONLY | fsc.O_NOFOLLOW);
  f.created = true;
  return fs.openSync(f.tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
}

function writeAt(f: PendingFile, data: Buffer, offset: number): void {
  const fd = f.fd ?? openTmp(f);
  try {
    let done = 0;
    while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, offset + done);
  } finally {
    if (f.fd === undefined) fs.closeSync(fd);
  }
}

function closeQuietly(f: PendingFile): void {
  if (f.fd === undefined) return;
  try {
    fs.closeSync(f.fd);
  } catch {
    /* already gone */
  }
  f.fd = undefined;
}

/** Truncate to the full size (skipped zero blobs become holes), set metadata, rename into place. */
function finishFile(f: PendingFile): void {
  const fd = openTmp(f);
  f.fd = undefined;
  try {
    fs.ftruncateSync(fd, f.entry.node.size);
  } finally {
    fs.closeSync(fd);
  }
  applyMetadata(f.tmp, f.entry.node);
  fs.renameSync(f.tmp, f.dest);
}

type RangeBlob = [string, { offset: number; length: number; targets: Target[] }];

/** Decrypt and verify the blobs of one ranged read: on a worker in one message, or one by one. */
async function openRangeBlobs(
  repo: Repository,
  pool: WorkerPool | undefined,
  packId: string,
  data: Buffer,
  range: { start: number; blobs: RangeBlob[] },
): Promise<Array<{ plain?: Buffer; error?: string }>> {
  if (pool) {
    return pool.openRange(
      packId,
      data,
      range.blobs.map(([id, b]) => ({ type: BlobType.Data, id: Buffer.from(id, 'hex'), offset: b.offset - range.start, length: b.length })),
    );
  }
  return Promise.all(
    range.blobs.map(async ([id, b]) => {
      try {
        const sealed = data.subarray(b.offset - range.start, b.offset - range.start + b.length);
        return { plain: await repo.opener.open(BlobType.Data, Buffer.from(id, 'hex'), sealed, packId) };
      } catch (err) {
        if (!(err instanceof DamagedBlobError)) throw err;
        return { error: err.detail };
      }
    }),
  );
}

function matchesSelfOrParent(m: (s: string) => boolean, p: string): boolean {
  for (let q = p; q && q !== '/'; q = path.posix.dirname(q)) if (m(q)) return true;
  return false;
}

function isAllZero(b: Buffer): boolean {
  if (b.length === 0) return true;
  if (b[0] !== 0 || b[b.length - 1] !== 0) return false;
  // Compare against itself shifted by one: all bytes equal and the first is zero.
  return b.subarray(1).equals(b.subarray(0, b.length - 1));
}

function* coalesce(plan: PackPlan): Generator<{ start: number; end: number; blobs: Array<[string, { offset: number; length: number; targets: Target[] }]> }> {
  const sorted = [...plan.blobs.entries()].sort((a, b) => a[1].offset - b[1].offset);
  let cur: { start: number; end: number; blobs: typeof sorted } | undefined;
  for (const item of sorted) {
    const { offset, length } = item[1];
    if (cur && offset - cur.end <= COALESCE_GAP && offset + length - cur.start <= MAX_RANGE) {
      cur.end = Math.max(cur.end, offset + length);
      cur.blobs.push(item);
    } else {
      if (cur) yield cur;
      cur = { start: offset, end: offset + length, blobs: [item] };
    }
  }
  if (cur) yield cur;
}

/** Create a directory for the restore; an existing symlink there is never followed. */
function ensureDir(dir: Buffer, isTarget: boolean): void {
  let existed = false;
  try {
    fs.mkdirSync(dir, { recursive: isTarget, mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    existed = true;
  }
  if (!fs.lstatSync(dir).isDirectory()) throw new UserError(`${dir.toString()} exists and is not a directory; refusing to restore through it`);
  if (existed && !isTarget) removeStaleTemporaries(dir);
}

/** Temporary files left by a restore that was killed (only an existing directory can have them). */
function removeStaleTemporaries(dir: Buffer): void {
  for (const n of fs.readdirSync(dir, { encoding: 'buffer' })) {
    if (n.toString('latin1').startsWith(TMP_PREFIX)) fs.rmSync(Buffer.concat([dir, Buffer.from('/'), n]), { force: true });
  }
}

/** Whether an existing destination may stay as it is under the overwrite policy. */
function keepExisting(dest: Buffer, node: TreeNode, policy: OverwritePolicy): boolean {
  const st = fs.lstatSync(dest, { bigint: true, throwIfNoEntry: false });
  if (!st) return false;
  if (st.isDirectory()) throw new UserError(`${dest.toString()} is a directory; the snapshot has a ${node.type} there`);
  if (policy === 'never') return true;
  if (policy === 'always') return false;
  if (node.type === 'file') {
    return st.isFile() && Number(st.size) === node.size && absBig(st.mtimeNs - node.mtimeNs) < TIME_TOLERANCE_NS;
  }
  if (node.type === 'symlink' && st.isSymbolicLink()) {
    return fs.readlinkSync(dest, { encoding: 'buffer' }).equals(node.linkTarget ?? Buffer.alloc(0));
  }
  return false;
}

function absBig(n: bigint): bigint {
  return n < 0n ? -n : n;
}

/** Create something under a temporary name next to `dest`, then rename it into place. */
function replaceWith(dest: Buffer, node: TreeNode | null, create: (tmp: Buffer) => void): void {
  const dir = Buffer.from(path.posix.dirname(dest.toString('latin1')), 'latin1');
  const tmp = Buffer.concat([dir, Buffer.from(`/${TMP_PREFIX}${crypto.randomBytes(8).toString('hex')}`)]);
  try {
    create(tmp);
    applyMetadata(tmp, node);
    fs.renameSync(tmp, dest);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

function secondsOf(ns: bigint): number {
  return Number(ns / 1000n) / 1e6;
}

/** Set times without following a symlink: to the nanosecond with the addon, else to about a microsecond. */
function setTimes(p: Buffer, atimeNs: bigint, mtimeNs: bigint): void {
  const native = nativeSyscalls();
  if (native) native.utimens(p, atimeNs, mtimeNs, false);
  else fs.lutimesSync(p, secondsOf(atimeNs), secondsOf(mtimeNs));
}

/** Owner (when root), mode and times; never follows a symlink. */
function applyMetadata(p: Buffer, node: TreeNode | null): void {
  if (!node) return;
  if (isRoot) fs.lchownSync(p, node.uid, node.gid);
  // chmod after chown: chown clears setuid/setgid bits.
  if (node.type !== 'symlink') fs.chmodSync(p, node.mode);
  setTimes(p, node.atimeNs, node.mtimeNs);
}

async function verifyFile(repo: Repository, dest: Buffer, entry: WalkEntry): Promise<void> {
  const fh = await fsp.open(dest, 'r');
  try {
    let offset = 0;
    for (const id of entry.node.content ?? []) {
      const loc = repo.index.get(id)!;
      const buf = Buffer.alloc(loc.rawLength);
      const { bytesRead } = await fh.read(buf, 0, loc.rawLength, offset);
      if (bytesRead !== loc.rawLength || keyedId(repo.keys.id, buf).toString('hex') !== id) {
        throw new UserError(`verification failed: ${dest.toString()} differs from the snapshot at offset ${offset}`);
      }
      offset += loc.rawLength;
    }
  } finally {
    await fh.close();
  }
}
