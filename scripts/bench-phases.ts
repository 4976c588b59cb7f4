/**
 * One timed step of one tool, turned into a result row: run the command under the
 * RSS meter, flush the disks afterwards (outside the timing), and for a restore,
 * check the restored tree against the source.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { MARKER } from './bench-data.js';
import { type CommandSpec, type Measurement, dropCaches, failureNote, measure, primeMemory, syncDisks } from './bench-measure.js';
import type { ToolAdapter, ToolContext } from './bench-tools.js';
import type { PhaseResult, Section } from './bench-types.js';
import { type Manifest, findMarkedRoot, verifyTree } from './bench-verify.js';

export interface PhaseSettings {
  /** Drop the page cache before each timed command (root only). */
  cold: boolean;
  /** Fault in and free memory before each timed command (bench-measure.ts, primeMemory). */
  prime: boolean;
  /** Keep restore targets instead of deleting them after verification. */
  keep: boolean;
  log: (message: string) => void;
}

export interface PhaseRun {
  result: PhaseResult;
  measurement: Measurement;
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** Run one command as a phase; `bytes` is what the phase processed (for MB/s). */
export async function timedPhase(
  spec: CommandSpec,
  row: { section: Section; tool: string; phase: string; bytes?: number },
  settings: PhaseSettings,
): Promise<PhaseRun> {
  if (settings.cold) dropCaches();
  if (settings.prime) primeMemory();
  settings.log(`  ${row.tool}: ${row.phase} …`);
  const m = await measure(spec);
  syncDisks();
  const result: PhaseResult = { ...row, ok: m.ok, seconds: m.seconds, peakRssKiB: m.peakRssKiB, cpuSeconds: m.cpuSeconds };
  if (m.ok && row.bytes !== undefined && m.seconds > 0) result.mbPerSec = row.bytes / m.seconds / 1e6;
  if (!m.ok) result.note = failureNote(m);
  settings.log(
    m.ok
      ? `  ${row.tool}: ${row.phase} took ${m.seconds.toFixed(2)} s` +
          (result.mbPerSec !== undefined ? ` (${result.mbPerSec.toFixed(1)} MB/s)` : '') +
          (m.cpuSeconds !== null ? `, CPU ${m.cpuSeconds.toFixed(2)} s` : '') +
          (m.peakRssKiB !== null ? `, peak RSS ${(m.peakRssKiB / 1024).toFixed(0)} MiB` : '')
      : `  ${row.tool}: ${row.phase} FAILED: ${result.note}`,
  );
  return { result, measurement: m };
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * One row for several runs of the same step by the same tool (--repeat): the
 * median wall and CPU time, the highest peak RSS, every wall time in `runs`, and
 * the other fields (notes, repository size) of the last run, which is the one
 * later phases build on. Any failed run makes the row failed.
 */
export function combineRuns(runs: PhaseResult[]): PhaseResult {
  const last = runs[runs.length - 1]!;
  if (runs.length === 1) return last;
  const failed = runs.find((r) => !r.ok);
  if (failed) return { ...failed, note: `run ${runs.indexOf(failed) + 1} of ${runs.length}: ${failed.note ?? 'failed'}` };
  const seconds = median(runs.map((r) => r.seconds!));
  const cpus = runs.map((r) => r.cpuSeconds).filter((c): c is number => typeof c === 'number');
  const rss = runs.map((r) => r.peakRssKiB).filter((k): k is number => typeof k === 'number');
  const combined: PhaseResult = {
    ...last,
    seconds,
    runs: runs.map((r) => r.seconds!),
    cpuSeconds: cpus.length === runs.length ? median(cpus) : last.cpuSeconds,
    peakRssKiB: rss.length > 0 ? Math.max(...rss) : last.peakRssKiB,
  };
  if (last.bytes !== undefined && seconds > 0) combined.mbPerSec = last.bytes / seconds / 1e6;
  return combined;
}

/** A row for a step that did not run. */
export function skippedPhase(section: Section, tool: string, phase: string, note: string): PhaseResult {
  return { section, tool, phase, ok: false, skipped: true, note };
}

/**
 * Restore the newest snapshot into a fresh file system (see freshFileSystem), time
 * it, and verify it against `manifest`.
 */
export async function restorePhase(
  adapter: ToolAdapter,
  ctx: ToolContext,
  section: Section,
  manifest: Manifest,
  settings: PhaseSettings,
): Promise<PhaseResult> {
  if (!adapter.has('restore')) return skippedPhase(section, adapter.name, 'restore', `${adapter.name} has no restore command yet`);
  const fresh = settings.keep ? undefined : freshFileSystem(ctx.dir, manifest.bytes, settings.log);
  const target = path.join(fresh?.mountpoint ?? ctx.dir, 'restore');
  try {
    fs.rmSync(target, { recursive: true, force: true });
    fs.mkdirSync(target, { recursive: true });
    const { result } = await timedPhase(adapter.restore(ctx, target), { section, tool: adapter.name, phase: 'restore', bytes: manifest.bytes }, settings);
    if (result.ok) {
      const root = findMarkedRoot(target, MARKER);
      if (!root) {
        result.ok = false;
        result.note = `restored tree has no ${MARKER}: nothing restored where expected`;
      } else {
        const v = await verifyTree(manifest, root);
        if (v.ok) result.note = `verified: ${v.files} files, ${mb(v.bytes)}, sizes and SHA-1 equal`;
        else {
          result.ok = false;
          result.note = `restore differs: ${v.problems.join('; ')}`;
        }
      }
      if (fresh) result.note = `${result.note ?? ''}${result.note ? '; ' : ''}into a fresh ext4`;
      settings.log(`  ${adapter.name}: ${result.note}`);
    }
    return result;
  } finally {
    if (fresh) fresh.dispose();
    else if (!settings.keep) fs.rmSync(target, { recursive: true, force: true });
  }
}

/**
 * Every tool restores into a new ext4 file system of its own (a sparse image on a
 * loop device with direct I/O, so the page cache holds the data once). Restoring
 * into a directory of the shared disk was unfair to whichever tool came next: ext4
 * skips inodes freed in the last minutes when it allocates, and the previous
 * tool's restore had just freed 30,000 of them (measured: restic 0.14 took 16.4 s
 * there and 5.7-6.5 s on a fresh file system). Needs root, mkfs.ext4 and losetup;
 * without them the restore goes into a directory, with that caveat.
 */
function freshFileSystem(dir: string, dataBytes: number, log: (m: string) => void): { mountpoint: string; dispose(): void } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const image = path.join(dir, 'restore-fs.img');
  const mountpoint = path.join(dir, 'restore-fs');
  const run = (cmd: string, args: string[]): string => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr || r.error?.message || '').trim()}`);
    return r.stdout.trim();
  };
  let loop: string | undefined;
  let mounted = false;
  const dispose = (): void => {
    if (mounted) spawnSync('umount', [mountpoint]);
    if (loop) spawnSync('losetup', ['-d', loop]);
    fs.rmSync(image, { force: true });
    fs.rmSync(mountpoint, { recursive: true, force: true });
  };
  try {
    fs.writeFileSync(image, '');
    fs.truncateSync(image, Math.max(2 * dataBytes + 1024 ** 3, 2 * 1024 ** 3));
    // Inode tables and journal are written now, not by a background thread during the timing.
    run('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', image]);
    loop = run('losetup', ['--direct-io=on', '-f', '--show', image]);
    fs.mkdirSync(mountpoint, { recursive: true });
    run('mount', [loop, mountpoint]);
    mounted = true;
    return { mountpoint, dispose };
  } catch (err) {
    log(`  (no fresh file system for the restore: ${(err as Error).message}; restoring into a directory)`);
    dispose();
    return undefined;
  }
}
