import crypto from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import picomatch from 'picomatch';
import { keyedId } from '../crypto/ids.js';
import { InterruptedError, UserError } from '../errors.js';
import { DamagedBlobError } from '../repo/blob.js';
import { StorageError } from '../storage/storage.js';
import { type Repository } from '../repo/repository.js';
import { type TreeNode } from '../snapshot/tree.js';
import { type Xattr, sameXattrs, settableXattrs } from '../snapshot/xattrs.js';
import { readXattrs } from './fsmeta.js';
import { type WorkerPool } from '../workers/pool.js';
import { makeDevice, makeFifo } from './special-files.js';
import { nativeSyscalls } from '../native/syscalls.js';
import { type FinishSpec, type RangeBlobWrites, type RangeWriteResult, type RestoreRoot, XATTRS_UNSUPPORTED, applyDirMetadata, applyMetadata, finishFile, isRoot, writeRangeBlobs } from '../workers/restored-file.js';
import { TargetDirs, joinRel, parentOf } from '../workers/target-dirs.js';
import { type WalkEntry, findNode, walk } from './walk.js';
import { progressIntervalMs } from '../util/progress-interval.js';
import { makeDirsSync } from '../util/make-dirs.js';

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
  /** Worker threads that decrypt, verify and write the blobs; without one, this thread does it. */
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
  /** Relative to the target (TargetDirs), latin1. */
  dest: string;
  tmp: string;
  /** Blob writes still to come. */
  remaining: number;
  /** Set for a file that is one blob: whoever writes that blob finishes the file. */
  whole?: FinishSpec;
}

interface PlannedBlob {
  offset: number;
  length: number;
  rawLength: number;
  targets: Target[];
}

interface PackPlan {
  packId: string;
  blobs: Map<string, PlannedBlob>;
}

const TMP_PREFIX = '.aegis-restore-';
/** Errors of a write that say the target's file system is full, or the user's quota is. */
const TARGET_FULL = new Set(['ENOSPC', 'EDQUOT']);
/** Read neighbouring blobs of a pack in one request when the gap between them is smaller than this. */
const COALESCE_GAP = 1024 * 1024;
const MAX_RANGE = 8 * 1024 * 1024;
/** A batch of planned files goes to the writers at whichever comes first (local repositories). */
const BATCH_FILES = 1024;
const BATCH_BYTES = 32 * 1024 * 1024;
/** Entries planned between two turns of the event loop while writes are in flight. */
const YIELD_EVERY = 256;
/**
 * Files planned and not yet written, at most, where writing starts during the
 * walk (local repositories): beyond this the walk waits until the writers have
 * caught up by half. The walk is several times faster than the writes; without
 * a bound it held every planned file (12,300 of the bench tree's 30,000 at
 * once, a third of the main thread's live heap), so memory grew with the tree.
 */
const MAX_UNFINISHED = 4 * BATCH_FILES;

/** Exact with the native addon; Node's fs.utimes alone lands within about a microsecond. */
const TIME_TOLERANCE_NS = nativeSyscalls() ? 1n : 2000n;

/**
 * Restore a snapshot (or a part of it) into a directory. A file of several blobs
 * is written under a temporary name in its final directory and renamed when
 * complete; a file of one blob is made under its final name and finished inside
 * one addon call (restored-file.ts). So an interruption never leaves a partial
 * file under a real name, short of a kill inside that call, after which the
 * file's time is not the snapshot's and a rerun writes it again. Blobs are read pack
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

  // A file system without extended attributes (vfat, say) refuses them for every
  // entry that has some: the first is named, the others counted in one line at the end.
  let unsupported = 0;
  const warn = (msg: string) => {
    summary.errors++;
    if (msg.endsWith(XATTRS_UNSUPPORTED) && unsupported++ > 0) return;
    opts.onWarning?.(msg);
  };
  const checkAbort = () => {
    if (opts.signal?.aborted) throw new InterruptedError();
  };

  // Everything below the target is reached through descriptors (TargetDirs), never by path.
  const rootFd = openTarget(target);
  // Said, not counted: the restore itself is whole.
  if (!TargetDirs.guarded) opts.onWarning?.('/proc is not mounted: restoring by path names, so someone else who can write inside the target could redirect this restore (mount /proc to prevent it)');
  const root: RestoreRoot = { fd: rootFd, path: target.toString('latin1') };
  const at = new TargetDirs(rootFd, root.path);
  try {
    return await restoreInto();
  } finally {
    at.close();
    fs.closeSync(rootFd);
  }

  /** The restore proper, once the target is open. */
  async function restoreInto(): Promise<RestoreSummary> {
    removeStaleTemporaries(at, '');
    const dirs: Array<{ dest: string; node: TreeNode }> = [];
    // Restoring SNAPSHOT:/some/dir into a target: the target takes that directory's metadata.
    if (start.node.type === 'dir' && start.path.length > 1 && !include) dirs.push({ dest: '', node: start.node });
    // Files whose writes are not all done: only these are kept (finished ones are
    // garbage at once), and an interruption removes their temporary files.
    const unfinished = new Set<PendingFile>();
    let filesTotal = 0;
    const plans = new Map<string, PackPlan>();
    const hardlinkFirst = new Map<string, string>();
    const hardlinkLater: Array<{ dest: string; key: string }> = [];
    const verifyList: PendingFile[] = [];
    const createdDirs = new Set<string>(['']);
    const freshDirs = new Set<string>();
    // With --include, a directory the patterns do not select is made only when
    // something selected goes inside it, and then gets its metadata like any other.
    const dirsOnDemand = new Map<string, TreeNode>();
    // Directories the target has something else in place of (TargetConflict): nothing goes under them.
    const refusedDirs = new Set<string>();
    const ensureDirOrRefuse = (rel: string): boolean => {
      try {
        return ensureDir(at, rel);
      } catch (err) {
        if (err instanceof TargetConflict) refusedDirs.add(rel);
        throw err;
      }
    };

    /** Where a snapshot path goes, relative to the target. */
    const destFor = (p: Buffer): string => p.subarray(base.length === 1 ? 1 : base.length + 1).toString('latin1');
    const selected = (p: Buffer, node: TreeNode): boolean => {
      if (!exclude && !include) return true;
      const s = p.toString('utf8');
      if (exclude && matchesSelfOrParent(exclude, s)) return false;
      if (!include) return true;
      return node.type === 'dir' ? true : matchesSelfOrParent(include, s);
    };
    // Paths as latin1 strings are their bytes one to one: one conversion per entry serves every lookup.
    /** Create the parent of `dest` (and above it) if this restore has not; returns the parent. */
    const parentReady = (dest: string): string => {
      const parent = parentOf(dest);
      if (!createdDirs.has(parent)) {
        if (refusedDirs.has(parent)) throw new UnderRefusedDir();
        parentReady(parent);
        if (ensureDirOrRefuse(parent)) freshDirs.add(parent);
        createdDirs.add(parent);
        const node = dirsOnDemand.get(parent);
        if (node) {
          dirsOnDemand.delete(parent);
          dirs.push({ dest: parent, node });
          summary.dirs++;
        }
      }
      return parent;
    };
    // A directory this restore created holds nothing it did not put there: no need to look for existing files.
    const inFreshDir = (parent: string): boolean => freshDirs.has(parent);

    let filesDone = 0;
    let bytesDone = 0;
    const report = () => opts.onProgress?.({ filesDone, filesTotal, bytesDone, bytesTotal: summary.bytes });
    const timer = opts.onProgress ? setInterval(report, progressIntervalMs()) : undefined;
    timer?.unref();

    const failed = new Set<PendingFile>();
    // A damaged blob fails only the files that need it: they are dropped (no
    // partial file under a real name), reported by name, and the rest is restored.
    const failFile = (file: PendingFile, reason: string, code?: string) => {
      if (failed.has(file)) return;
      failed.add(file);
      // Not unfinished any more: its temporary file goes now, and the walk's
      // bound (MAX_UNFINISHED) counts only files the writers will still finish.
      unfinished.delete(file);
      removeQuietly(at, file.tmp);
      if (code !== undefined && TARGET_FULL.has(code)) {
        // Every file after this one would fail the same way: one line instead of one per file, and stop.
        writeFailure ??= {
          err: new UserError(
            `restore stopped: no room left on the target (${reason}) for ${file.entry.path.toString()}; the files restored so far are complete; free space and run the same restore again to finish it`,
          ),
        };
        return;
      }
      warn(`${file.entry.path.toString()}: not restored: ${reason}`);
    };
    // Worker threads decrypt each ranged read and write its blobs into the files
    // themselves; a file that is one blob is finished there too, the others here
    // once their last blob is written.
    const writeRange = async (plan: PackPlan, range: CoalescedRange): Promise<void> => {
      const length = range.end - range.start;
      // A blob whose files have all failed already is not opened at all.
      const pick = () => range.blobs.map(([id, b]) => ({ id, b, targets: b.targets.filter((t) => !failed.has(t.file)) })).filter((s) => s.targets.length > 0);
      const requestFor = (sent: ReturnType<typeof pick>): RangeBlobWrites[] =>
        sent.map(({ id, b, targets }) => ({
          id: Buffer.from(id, 'hex'),
          offset: b.offset - range.start,
          length: b.length,
          writes: targets.map((t) => ({ tmp: Buffer.from(t.file.tmp, 'latin1'), offset: t.offset, finish: t.file.whole })),
        }));
      let sent = pick();
      let results: RangeWriteResult | null = null;
      const packFile = opts.pool && repo.packFile(plan.packId);
      if (packFile && sent.length > 0) results = await opts.pool!.writeRangeFromFile(plan.packId, { file: packFile, offset: range.start, length }, requestFor(sent), root);
      if (!results) {
        let data: Buffer;
        try {
          // A restore reads each blob once: no point keeping a second copy in a remote repository's cache.
          data = await repo.readPackRange(plan.packId, range.start, length, { kind: 'data', keep: false });
        } catch (err) {
          if (err instanceof StorageError && err.kind === 'transient') throw err;
          for (const [, b] of range.blobs) for (const t of b.targets) failFile(t.file, `pack ${plan.packId.slice(0, 16)} cannot be read: ${(err as Error).message}`);
          return;
        }
        sent = pick();
        const request = requestFor(sent);
        results = opts.pool ? await opts.pool.writeRange(plan.packId, data, request, root) : writeRangeBlobs(repo.keys, plan.packId, data, request, root);
      }
      results.forEach((r, i) => {
        const { id, b, targets } = sent[i]!;
        for (const w of r.warnings ?? []) warn(w);
        if (r.damaged !== undefined) {
          for (const t of targets) failFile(t.file, `blob ${id.slice(0, 16)} in pack ${plan.packId.slice(0, 16)} is damaged: ${r.damaged}`);
          return;
        }
        r.writes.forEach((error, j) => {
          const file = targets[j]!.file;
          if (failed.has(file)) return;
          if (error !== null) return failFile(file, error.message, error.code);
          bytesDone += b.rawLength;
          if (--file.remaining > 0) return;
          unfinished.delete(file);
          try {
            const warning = file.whole ? undefined : finishFile(at, file.tmp, file.dest, file.entry.node.size, file.entry.node);
            if (warning) warn(warning);
            filesDone++;
          } catch (err) {
            failFile(file, (err as Error).message, (err as NodeJS.ErrnoException).code);
          }
        });
      });
    };
    // Ranges wait here in plan order; at most `limit` are being read and written
    // at once: two per worker thread, one being written while the next is read
    // (with one each, the threads waited a third of the time). At most 8 MiB each.
    const limit = 2 * (opts.pool?.size ?? 1);
    const queue: Array<{ plan: PackPlan; range: CoalescedRange } | undefined> = [];
    let queueHead = 0;
    const inFlight = new Set<Promise<void>>();
    let writeFailure: { err: unknown } | undefined;
    let onIdle: (() => void) | undefined;
    /** The walk waiting for the writers (MAX_UNFINISHED). */
    let onWritten: (() => void) | undefined;
    // Queue entries before this one have had their read-ahead asked for (PackReadAhead):
    // those in flight and the next few, so that the disk works ahead of the threads.
    let hintedTo = 0;
    const readAhead = new PackReadAhead();
    const hintAhead = (): void => {
      if (!opts.pool) return;
      const end = Math.min(queue.length, queueHead + limit + READ_AHEAD_RANGES);
      for (let i = Math.max(hintedTo, queueHead); i < end; i++) {
        const { plan, range } = queue[i]!;
        const file = repo.packFile(plan.packId);
        if (file) readAhead.hint(file, range.start, range.end - range.start);
      }
      hintedTo = Math.max(hintedTo, end);
    };
    const pump = (): void => {
      hintAhead();
      while (!writeFailure && inFlight.size < limit && queueHead < queue.length) {
        if (opts.signal?.aborted) {
          writeFailure = { err: new InterruptedError() };
          break;
        }
        const { plan, range } = queue[queueHead]!;
        // Let the plan go once its last range is written, although the queue is not empty yet.
        queue[queueHead++] = undefined;
        const job: Promise<void> = writeRange(plan, range)
          .catch((err: unknown) => {
            writeFailure ??= { err };
          })
          .finally(() => {
            inFlight.delete(job);
            pump();
            const walk = onWritten;
            onWritten = undefined;
            walk?.();
          });
        inFlight.add(job);
      }
      if (queueHead === queue.length || queueHead >= 4096) {
        queue.splice(0, queueHead);
        hintedTo = Math.max(0, hintedTo - queueHead);
        queueHead = 0;
      }
      if (inFlight.size === 0 && (queue.length === 0 || writeFailure)) onIdle?.();
    };
    let batchFiles = 0;
    let batchBytes = 0;
    let lastPack = '';
    /** Hand the plans made so far to the writers, and start planning afresh. */
    const flush = (): void => {
      for (const plan of plans.values()) for (const range of coalesce(plan)) queue.push({ plan, range });
      plans.clear();
      batchFiles = 0;
      batchBytes = 0;
      pump();
    };

    const source = start.node.type === 'dir' ? walk(repo, start) : single(start);
    try {
      let sinceYield = 0;
      for await (const entry of source) {
        checkAbort();
        if (writeFailure) throw writeFailure.err;
        // Let the writers' replies in now and then (the walk's own awaits rarely leave this turn).
        if (++sinceYield >= YIELD_EVERY && inFlight.size > 0) {
          sinceYield = 0;
          await new Promise((resolve) => setImmediate(resolve));
        }
        const { node } = entry;
        if (!selected(entry.path, node)) continue;
        const dest = destFor(entry.path);
        try {
          switch (node.type) {
            case 'dir': {
              if (include && !matchesSelfOrParent(include, entry.path.toString('utf8'))) {
                if (dest !== '') dirsOnDemand.set(dest, node);
                break;
              }
              if (dest !== '') {
                parentReady(dest);
                if (ensureDirOrRefuse(dest)) freshDirs.add(dest);
                createdDirs.add(dest);
              }
              dirs.push({ dest, node });
              summary.dirs++;
              break;
            }
            case 'file': {
              const parent = parentReady(dest);
              const linkKey = node.links > 1 ? `${node.dev}:${node.inode}` : undefined;
              if (linkKey && hardlinkFirst.has(linkKey)) {
                hardlinkLater.push({ dest, key: linkKey });
                break;
              }
              if (linkKey) hardlinkFirst.set(linkKey, dest);
              if (!inFreshDir(parent) && keepExisting(at, dest, node, overwrite, warn)) {
                summary.skipped++;
                break;
              }
              const file = startFile(entry, dest);
              unfinished.add(file);
              filesTotal++;
              if (opts.verify) verifyList.push(file);
              let offset = 0;
              for (const id of node.content ?? []) {
                const loc = repo.index.get(id);
                if (!loc) throw new DamagedBlobError(id, `missing from the index (needed by ${entry.path.toString()})`);
                let plan = plans.get(loc.packId);
                if (!plan) plans.set(loc.packId, (plan = { packId: loc.packId, blobs: new Map() }));
                let b = plan.blobs.get(id);
                if (!b) plan.blobs.set(id, (b = { offset: loc.offset, length: loc.length, rawLength: loc.rawLength, targets: [] }));
                b.targets.push({ file, offset });
                file.remaining++;
                offset += loc.rawLength;
                lastPack = loc.packId;
              }
              summary.bytes += offset;
              batchFiles++;
              batchBytes += offset;
              if (file.remaining === 0) {
                unfinished.delete(file);
                const warning = finishFile(at, file.tmp, file.dest, node.size, node);
                if (warning) warn(warning);
              }
              summary.files++;
              break;
            }
            case 'symlink': {
              parentReady(dest);
              if (keepExisting(at, dest, node, overwrite, warn)) {
                summary.skipped++;
                break;
              }
              const warning = replaceWith(at, dest, node, (tmp) => fs.symlinkSync(node.linkTarget ?? Buffer.alloc(0), tmp));
              if (warning) warn(warning);
              summary.symlinks++;
              break;
            }
            case 'fifo':
            case 'chardev':
            case 'blockdev': {
              parentReady(dest);
              if (keepExisting(at, dest, node, overwrite, warn)) {
                summary.skipped++;
                break;
              }
              const warning = replaceWith(at, dest, node, (tmp) => (node.type === 'fifo' ? makeFifo(tmp, node.mode) : makeDevice(tmp, node.type as 'chardev', node.rdev ?? 0, node.mode)));
              if (warning) warn(warning);
              summary.special++;
              break;
            }
            case 'socket':
              break; // a socket is only meaningful while its server runs
          }
        } catch (err) {
          if (err instanceof DamagedBlobError || err instanceof InterruptedError || err instanceof UserError) throw err;
          // Its directory was refused, and said so once.
          if (err instanceof UnderRefusedDir) continue;
          warn(`${entry.path.toString()}: ${at.explain((err as Error).message)}`);
        }
        // From a local repository, writing starts while the walk goes on: a batch
        // of planned files goes out when it is big enough. A blob that files of two
        // batches share is read twice; from a remote repository every blob is read
        // once, after the whole walk, as before.
        const tooMany = unfinished.size >= MAX_UNFINISHED;
        if ((tooMany || batchFiles >= BATCH_FILES || batchBytes >= BATCH_BYTES) && lastPack && opts.pool && repo.packFile(lastPack)) {
          flush();
          while (tooMany && !writeFailure && unfinished.size > MAX_UNFINISHED / 2 && inFlight.size > 0) await new Promise<void>((resolve) => (onWritten = resolve));
        }
      }
      flush();
      await new Promise<void>((resolve) => {
        onIdle = resolve;
        pump();
      });
      if (writeFailure) throw writeFailure.err;
    } catch (err) {
      // Let writes already handed to worker threads end, then drop every temporary
      // file: nothing half-written keeps a real name.
      writeFailure ??= { err };
      await Promise.allSettled([...inFlight]);
      for (const f of unfinished) if (f.remaining > 0) removeQuietly(at, f.tmp);
      throw err;
    } finally {
      if (timer) clearInterval(timer);
      readAhead.close();
    }
    // A write already on its way when its file failed may have created the temporary file again.
    for (const f of failed) removeQuietly(at, f.tmp);
    report();
    // The summary counts what was restored: the files that failed, and their bytes, are not.
    summary.files -= failed.size;
    for (const f of failed) summary.bytes -= f.entry.node.size;

    for (const { dest, key } of hardlinkLater) {
      try {
        const first = at.at(hardlinkFirst.get(key)!);
        // Already a link to that file (a rerun): rename() of one link onto another
        // of the same file does nothing and succeeds, which would leave the temporary name behind.
        if (linkedAlready(at, dest, first, overwrite)) {
          summary.skipped++;
          continue;
        }
        replaceWith(at, dest, null, (tmp) => fs.linkSync(first, tmp));
        summary.hardlinks++;
      } catch (err) {
        warn(`${at.shown(dest)}: hardlink: ${at.explain((err as Error).message)}`);
      }
    }

    // Directory metadata last and deepest first: creating entries changes a directory's mtime.
    for (let i = dirs.length - 1; i >= 0; i--) {
      const { dest, node } = dirs[i]!;
      try {
        const warning = applyDirMetadata(at.dir(dest), node);
        if (warning) warn(`${at.shown(dest)}: ${warning}`);
      } catch (err) {
        warn(`${at.shown(dest)}: ${at.explain((err as Error).message)}`);
      }
    }

    if (opts.verify) {
      for (const f of verifyList.filter((x) => !failed.has(x))) {
        checkAbort();
        await verifyFile(repo, at, f.dest, f.entry);
        summary.verified++;
      }
    }
    if (unsupported > 1) opts.onWarning?.(`${unsupported - 1} more entries restored without their extended attributes: the target file system does not support them`);
    return summary;
  }

  /** The temporary file is created on the first write (or at the end, for empty and all-zero files). */
  function startFile(entry: WalkEntry, dest: string): PendingFile {
    return { entry, dest, tmp: temporaryNameOf(dest), remaining: 0, whole: wholeFile(entry.node, dest) };
  }
}

/**
 * The target has something of another kind where the snapshot has an entry (a
 * file where a directory goes, or a directory or symlink where a file goes).
 * That entry is reported and left alone, and the restore goes on, as restic's does.
 */
class TargetConflict extends Error {}

/** An entry under a directory refused for a TargetConflict: skipped without a message of its own. */
class UnderRefusedDir extends Error {}

// Temporary names: unpredictable per process, then counted (a random draw per file cost measurably).
const TMP_RUN = crypto.randomBytes(6).toString('hex');
let tmpCounter = 0;
/** Exactly the names temporaryNameOf makes, of any run: nothing else is ever removed as a leftover. */
const TMP_NAME = new RegExp(`^${TMP_PREFIX.replace('.', '\\.')}[0-9a-f]{${TMP_RUN.length}}-[0-9a-z]+$`);

/** A temporary name next to `dest` (a relative path as a latin1 string, its bytes one to one). */
function temporaryNameOf(dest: string): string {
  return `${dest.slice(0, dest.lastIndexOf('/') + 1)}${TMP_PREFIX}${TMP_RUN}-${(tmpCounter++).toString(36)}`;
}

/** A file whose content is one blob is written and finished by whoever opens that blob. */
function wholeFile(n: TreeNode, dest: string): FinishSpec | undefined {
  if (n.content?.length !== 1) return undefined;
  return { dest: Buffer.from(dest, 'latin1'), size: n.size, meta: { type: n.type, uid: n.uid, gid: n.gid, mode: n.mode, atimeNs: n.atimeNs, mtimeNs: n.mtimeNs, xattrs: n.xattrs } };
}

type RangeEntry = [string, PlannedBlob];
type CoalescedRange = { start: number; end: number; blobs: RangeEntry[] };

async function* single(entry: WalkEntry): AsyncGenerator<WalkEntry> {
  yield entry;
}

function matchesSelfOrParent(m: (s: string) => boolean, p: string): boolean {
  for (let q = p; q && q !== '/'; q = path.posix.dirname(q)) if (m(q)) return true;
  return false;
}

function* coalesce(plan: PackPlan): Generator<CoalescedRange> {
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

/**
 * Create the target if it is not there and open it: its own path may lead
 * through symlinks, its last name too (the user chose it), to a directory.
 */
function openTarget(target: Buffer): number {
  try {
    makeDirsSync(target, 0o700);
  } catch (err) {
    // Something that is not a directory is there: the open below says so.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST') throw code ? new UserError(`cannot create the restore target ${target.toString()}: ${(err as Error).message}`) : err;
  }
  try {
    return TargetDirs.openRoot(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new UserError(`${target.toString()} exists and is not a directory; refusing to restore through it`);
    if (code !== undefined) throw new UserError(`cannot open the restore target ${target.toString()}: ${(err as Error).message}`);
    throw err;
  }
}

/**
 * Create a directory for the restore (mode 0700 until the end, when it gets
 * its own: so no one else can add to it meanwhile); an existing symlink there
 * is never followed. Returns whether the directory is new (so nothing in it
 * predates this restore).
 */
function ensureDir(at: TargetDirs, rel: string): boolean {
  try {
    fs.mkdirSync(at.at(rel), { mode: 0o700 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw at.explained(err, rel);
  }
  try {
    at.dir(rel);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR') throw new TargetConflict(`${at.shown(rel)} exists and is not a directory; refusing to restore through it (nothing under it is restored)`);
    throw err;
  }
  removeStaleTemporaries(at, rel);
  return false;
}

/**
 * Temporary files left by a restore that was killed (only an existing directory
 * can have them), the target's own included: files restored into the target
 * itself get their temporary names there.
 */
function removeStaleTemporaries(at: TargetDirs, rel: string): void {
  for (const n of fs.readdirSync(at.self(rel), { encoding: 'buffer' })) {
    const name = n.toString('latin1');
    if (TMP_NAME.test(name)) fs.rmSync(at.at(joinRel(rel, name)), { force: true });
  }
}

/** Remove a temporary file if it is there; a failure to is not worth a second message. */
function removeQuietly(at: TargetDirs, rel: string): void {
  try {
    fs.rmSync(at.at(rel), { force: true });
  } catch {
    // the file's failure was reported already
  }
}

/**
 * Whether an existing destination may stay as it is under the overwrite policy.
 * Under if-changed, a file or symlink whose content is the snapshot's stays,
 * and gets the snapshot's owner, mode and times again if they differ (a chmod
 * since the last restore); one whose extended attributes differ is written
 * again, so that it ends up exactly as a fresh restore would leave it (an
 * attribute added since is not the snapshot's either).
 */
function keepExisting(at: TargetDirs, rel: string, node: TreeNode, policy: OverwritePolicy, warn: (message: string) => void): boolean {
  const dest = at.at(rel);
  const st = fs.lstatSync(dest, { bigint: true, throwIfNoEntry: false });
  if (!st) return false;
  if (st.isDirectory()) throw new TargetConflict(`${at.shown(rel)} is a directory; the snapshot has a ${node.type} there; left as it is`);
  if (policy === 'never') return true;
  if (policy === 'always') return false;
  if (node.type === 'file') {
    if (!(st.isFile() && Number(st.size) === node.size && absBig(st.mtimeNs - node.mtimeNs) < TIME_TOLERANCE_NS)) return false;
  } else if (node.type === 'symlink' && st.isSymbolicLink()) {
    if (!fs.readlinkSync(dest, { encoding: 'buffer' }).equals(node.linkTarget ?? Buffer.alloc(0))) return false;
  } else {
    return false;
  }
  const present = existingXattrs(dest);
  if (!present || !sameXattrs(present, settableXattrs(node.xattrs, isRoot))) return false;
  const modeDiffers = node.type !== 'symlink' && Number(st.mode & 0o7777n) !== (node.mode & 0o7777);
  const ownerDiffers = isRoot && (Number(st.uid) !== node.uid || Number(st.gid) !== node.gid);
  if (modeDiffers || ownerDiffers) {
    const problem = applyMetadata(dest, node);
    if (problem) warn(`${at.shown(rel)}: ${problem}`);
  }
  return true;
}

/** Whether a later name of a hardlinked file may stay: it is that file already, or the policy keeps whatever is there. */
function linkedAlready(at: TargetDirs, rel: string, first: Buffer, policy: OverwritePolicy): boolean {
  const st = fs.lstatSync(at.at(rel), { bigint: true, throwIfNoEntry: false });
  if (!st) return false;
  if (st.isDirectory()) throw new TargetConflict(`${at.shown(rel)} is a directory; the snapshot has a file there; left as it is`);
  if (policy === 'never') return true;
  const of = fs.lstatSync(first, { bigint: true });
  return st.ino === of.ino && st.dev === of.dev;
}

/** The attributes this process sees on an existing file; null (so: not known to be the same) if they cannot be read. */
function existingXattrs(p: Buffer): Xattr[] | null {
  try {
    return settableXattrs(readXattrs(p), isRoot);
  } catch {
    return null;
  }
}

function absBig(n: bigint): bigint {
  return n < 0n ? -n : n;
}

/**
 * Create something under a temporary name next to `dest`, then rename it into
 * place. Returns a warning if it is there without all its extended attributes.
 */
function replaceWith(at: TargetDirs, dest: string, node: TreeNode | null, create: (tmp: Buffer) => void): string | undefined {
  const tmp = temporaryNameOf(dest);
  const tmpPath = at.at(tmp);
  const destPath = at.at(dest);
  let problem: string | undefined;
  try {
    create(tmpPath);
    problem = applyMetadata(tmpPath, node);
    fs.renameSync(tmpPath, destPath);
  } catch (err) {
    removeQuietly(at, tmp);
    throw at.explained(err, dest);
  }
  return problem && `${at.shown(dest)}: ${problem}`;
}

async function verifyFile(repo: Repository, at: TargetDirs, dest: string, entry: WalkEntry): Promise<void> {
  const fh = await fsp.open(at.at(dest), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    let offset = 0;
    for (const id of entry.node.content ?? []) {
      const loc = repo.index.get(id)!;
      const buf = Buffer.alloc(loc.rawLength);
      const { bytesRead } = await fh.read(buf, 0, loc.rawLength, offset);
      if (bytesRead !== loc.rawLength || keyedId(repo.keys.id, buf).toString('hex') !== id) {
        throw new UserError(`verification failed: ${at.shown(dest)} differs from the snapshot at offset ${offset}`);
      }
      offset += loc.rawLength;
    }
  } finally {
    await fh.close();
  }
}

/** Ranges past those in flight whose reading the kernel is asked to start (PackReadAhead). */
const READ_AHEAD_RANGES = 4;

/**
 * Has the kernel start reading ranges of local packs now. The worker thread a
 * range goes to is still busy with the range before (two are in flight per
 * thread) and would otherwise wait for the disk before it can decrypt: after a
 * backup the packs are not in the page cache (they were written with O_DIRECT).
 * Ranges are queued pack by pack, so the last pack asked about stays open (an
 * open and a close per range before). Best effort: without the addon, or if the
 * pack cannot be opened here, the worker's own read is all there is.
 */
class PackReadAhead {
  private readonly willNeed = nativeSyscalls()?.willNeed;
  private pack: { file: string; fd: number } | undefined;

  hint(file: string, offset: number, length: number): void {
    if (!this.willNeed) return;
    if (this.pack?.file !== file) {
      this.close();
      try {
        this.pack = { file, fd: fs.openSync(file, 'r') };
      } catch {
        return;
      }
    }
    this.willNeed(this.pack.fd, offset, length);
  }

  close(): void {
    if (this.pack) fs.closeSync(this.pack.fd);
    this.pack = undefined;
  }
}
