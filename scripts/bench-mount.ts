/**
 * The mount section of `npm run bench` (scripts/bench.ts loads this file when it
 * exists): aegis mount beside restic mount and borg mount -f, on the repositories
 * the bench has just filled, in one run, on one machine.
 *
 * For each tool, in this order and with the same commands:
 *   1. mount ready: wall time from starting the mount command until the
 *      snapshot directory is visible (polled every 5 ms);
 *   2. ls -lR of the newest snapshot's copy of the dataset (stdout to /dev/null);
 *   3. first cat of the largest file of the dataset, then a second cat (MB/s);
 *   4. read every file once (find -type f | xargs cat), then the RSS of the mount
 *      process (VmRSS; the peak VmHWM goes in the note).
 * Then it unmounts (SIGINT, then fusermount -u -z as a fallback). With `repeat`
 * N > 1, N − 1 more rounds (every tool once per round) mount afresh, time the
 * mount until ready, a first and a second cat, and unmount; those three rows
 * show the median.
 *
 * Paths: aegis shows snapshots/<time>/<absolute path>, restic shows
 * snapshots/<time>/<absolute path>, borg shows <archive>/<path without the
 * leading slash>. "latest" links are resolved once before timing so that every
 * tool's ls -lR walks a real directory (a symlink in the path costs a readlink
 * round trip per file on FUSE).
 *
 * Two entry points:
 *   benchMount(opts: MountBenchOptions) → PhaseResult[]   (scripts/bench.ts)
 *   benchMount({ aegis, repo, env, snapshotSubdir, bigFile, workDir, restic?, borg? })
 *     → Record<string, number | string>                   (standalone use)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { BenchToolHandle, MountBenchOptions, PhaseResult } from './bench-types.js';
import { primeMemory } from './bench-measure.js';
import { median } from './bench-phases.js';

/** The standalone form: one aegis repository, optional peers. */
export interface SimpleMountBenchOptions {
  /** Path of bin/aegis (run with this Node). */
  aegis: string;
  repo: string;
  /** Environment for aegis (AEGIS_PASSWORD or AEGIS_PASSWORD_FILE, AEGIS_STATE_DIR…). */
  env: NodeJS.ProcessEnv;
  /** The backed-up directory, as an absolute path (what to ls -lR inside the snapshot). */
  snapshotSubdir: string;
  /** Absolute path (as backed up) of the large file to cat. */
  bigFile: string;
  workDir: string;
  restic?: { repo: string; env: NodeJS.ProcessEnv };
  borg?: { repo: string; env: NodeJS.ProcessEnv; archive: string };
}

interface ToolRun {
  name: string;
  /** argv of the mount command (runs in the foreground). */
  argv: string[];
  env: NodeJS.ProcessEnv;
  /** Given the mountpoint: the directory that shows the dataset, once mounted (may resolve links). */
  datasetDir: (mnt: string) => string | undefined;
  /** Path of the big file under the dataset directory. */
  bigRel: string;
}

interface Measured {
  tool: string;
  /** Every round's time to a ready mount (the first is the full round's). */
  readyRuns: number[];
  /** Every round's first cat of the big file, in seconds. */
  firstCatRuns: number[];
  /** Every round's second cat of it (served from the caches), in seconds. */
  secondCatRuns: number[];
  readySeconds?: number;
  lsSeconds?: number;
  firstCatMBps?: number;
  secondCatMBps?: number;
  bigBytes?: number;
  rssKiB?: number;
  hwmKiB?: number;
  readAllSeconds?: number;
  error?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function wall(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ seconds: number; code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: env ?? process.env });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr = (stderr + String(d)).slice(-2000)));
    child.on('error', (err) => resolve({ seconds: 0, code: -1, stderr: err.message }));
    child.on('close', (code) => resolve({ seconds: Number(process.hrtime.bigint() - t0) / 1e9, code, stderr }));
  });
}

function procStatus(pid: number): { rss?: number; hwm?: number } {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const get = (k: string) => {
      const m = new RegExp(`${k}:\\s+(\\d+) kB`).exec(s);
      return m ? Number(m[1]) : undefined;
    };
    return { rss: get('VmRSS'), hwm: get('VmHWM') };
  } catch {
    return {};
  }
}

function isMounted(mnt: string): boolean {
  try {
    return fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[4] === mnt);
  } catch {
    return false;
  }
}

async function unmount(child: ChildProcess, mnt: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGINT');
    const deadline = Date.now() + 10_000;
    while (child.exitCode === null && child.signalCode === null && Date.now() < deadline) await sleep(20);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  if (isMounted(mnt)) await wall('fusermount', ['-u', '-z', mnt]);
}

interface Mounted {
  child: ChildProcess;
  mnt: string;
  /** The dataset's directory inside the mount. */
  dir: string;
  readySeconds: number;
}

/**
 * Start the tool's mount and wait until the dataset's directory is visible
 * (polled every 5 ms); the child is handed to `onChild` at once, so that the
 * caller can unmount it even when it never becomes ready.
 */
async function startMount(t: ToolRun, workDir: string, prime: boolean, onChild: (child: ChildProcess, mnt: string) => void): Promise<Mounted> {
  const mnt = path.join(workDir, `mnt-${t.name}`);
  fs.mkdirSync(mnt, { recursive: true });
  if (isMounted(mnt)) await wall('fusermount', ['-u', '-z', mnt]);
  if (prime) primeMemory();
  let stderr = '';
  const t0 = process.hrtime.bigint();
  const child = spawn(t.argv[0]!, [...t.argv.slice(1), mnt], { env: t.env, stdio: ['ignore', 'ignore', 'pipe'] });
  onChild(child, mnt);
  child.stderr!.on('data', (d) => (stderr = (stderr + String(d)).slice(-4000)));
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`mount exited early: ${stderr.trim().split('\n').pop() ?? ''}`);
    if (isMounted(mnt)) {
      let dir: string | undefined;
      try {
        dir = t.datasetDir(mnt);
      } catch {
        dir = undefined;
      }
      if (dir && fs.existsSync(dir)) return { child, mnt, dir, readySeconds: Number(process.hrtime.bigint() - t0) / 1e9 };
    }
    if (Number(process.hrtime.bigint() - t0) / 1e9 > 120) throw new Error('mount not ready after 120 s');
    await sleep(5);
  }
}

/** Time one cat of `file` to /dev/null (seconds). */
async function timeCat(file: string): Promise<number> {
  const c = await wall('sh', ['-c', 'exec cat "$1" > /dev/null', 'sh', file]);
  if (c.code !== 0) throw new Error(`cat failed: ${c.stderr.trim()}`);
  return c.seconds;
}

async function measureTool(t: ToolRun, workDir: string, prime: boolean, log: (m: string) => void): Promise<Measured> {
  const out: Measured = { tool: t.name, readyRuns: [], firstCatRuns: [], secondCatRuns: [] };
  let running: { child: ChildProcess; mnt: string } | undefined;
  try {
    const { dir, readySeconds } = await startMount(t, workDir, prime, (child, mnt) => (running = { child, mnt }));
    out.readySeconds = readySeconds;
    out.readyRuns.push(readySeconds);
    log(`mount: ${t.name} ready in ${out.readySeconds.toFixed(2)} s`);

    if (prime) primeMemory();
    const ls = await wall('sh', ['-c', 'exec ls -lR "$1" > /dev/null', 'sh', dir]);
    if (ls.code !== 0) throw new Error(`ls -lR failed: ${ls.stderr.trim()}`);
    out.lsSeconds = ls.seconds;
    log(`mount: ${t.name} ls -lR ${ls.seconds.toFixed(2)} s`);

    const big = path.join(dir, t.bigRel);
    out.bigBytes = fs.statSync(big).size;
    for (const which of ['first', 'second'] as const) {
      if (prime) primeMemory();
      const seconds = await timeCat(big);
      const mbps = out.bigBytes / 1e6 / seconds;
      if (which === 'first') {
        out.firstCatMBps = mbps;
        out.firstCatRuns.push(seconds);
      } else {
        out.secondCatMBps = mbps;
        out.secondCatRuns.push(seconds);
      }
      log(`mount: ${t.name} ${which} cat ${mbps.toFixed(0)} MB/s`);
    }

    if (prime) primeMemory();
    const all = await wall('sh', ['-c', 'find "$1" -type f -print0 | xargs -0 -r cat > /dev/null', 'sh', dir]);
    if (all.code !== 0) throw new Error(`reading every file failed: ${all.stderr.trim()}`);
    out.readAllSeconds = all.seconds;
    const st = procStatus(running!.child.pid!);
    out.rssKiB = st.rss;
    out.hwmKiB = st.hwm;
    log(`mount: ${t.name} RSS after ls -lR and reading every file: ${((st.rss ?? 0) / 1024).toFixed(0)} MiB`);
  } catch (err) {
    out.error = (err as Error).message;
    log(`mount: ${t.name} failed: ${out.error}`);
  } finally {
    if (running) await unmount(running.child, running.mnt);
  }
  return out;
}

/** A further round for `out`'s tool: a fresh mount, its time to ready, one first cat, unmount. */
async function repeatRound(t: ToolRun, out: Measured, workDir: string, prime: boolean, log: (m: string) => void): Promise<void> {
  let running: { child: ChildProcess; mnt: string } | undefined;
  try {
    const { dir, readySeconds } = await startMount(t, workDir, prime, (child, mnt) => (running = { child, mnt }));
    out.readyRuns.push(readySeconds);
    if (prime) primeMemory();
    const seconds = await timeCat(path.join(dir, t.bigRel));
    out.firstCatRuns.push(seconds);
    // The second cat too: a single run of it once read 1.8 GB/s where six by hand gave 5-7 GB/s.
    if (prime) primeMemory();
    const again = await timeCat(path.join(dir, t.bigRel));
    out.secondCatRuns.push(again);
    log(`mount: ${t.name} ready in ${readySeconds.toFixed(2)} s, first cat ${(out.bigBytes! / 1e6 / seconds).toFixed(0)} MB/s, second ${(out.bigBytes! / 1e6 / again).toFixed(0)} MB/s`);
  } finally {
    if (running) await unmount(running.child, running.mnt);
  }
}

/** Fold the rounds into the figures the rows show: medians, every run kept. */
function settle(r: Measured): void {
  if (r.readyRuns.length > 1) r.readySeconds = median(r.readyRuns);
  if (r.firstCatRuns.length > 1 && r.bigBytes) r.firstCatMBps = r.bigBytes / 1e6 / median(r.firstCatRuns);
  if (r.secondCatRuns.length > 1 && r.bigBytes) r.secondCatMBps = r.bigBytes / 1e6 / median(r.secondCatRuns);
}

function largestFile(root: string): string | undefined {
  let best: { p: string; size: number } | undefined;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const size = fs.lstatSync(p).size;
        if (!best || size > best.size) best = { p, size };
      }
    }
  };
  walk(root);
  return best?.p;
}

/** The directory of `snapshots/latest` resolved to its real name (aegis and restic). */
function viaLatest(mnt: string, absPath: string): string | undefined {
  const link = path.join(mnt, 'snapshots', 'latest');
  const name = fs.readlinkSync(link);
  return path.join(mnt, 'snapshots', path.basename(name), absPath);
}

function toolRuns(handles: BenchToolHandle[], dataRoot: string, bigRel: string): ToolRun[] {
  const runs: ToolRun[] = [];
  for (const h of handles) {
    const env = { ...process.env, ...h.env };
    if (h.name === 'aegis') {
      runs.push({ name: 'aegis', argv: [...h.command, ...h.globalArgs, 'mount'], env, datasetDir: (m) => viaLatest(m, dataRoot), bigRel });
    } else if (h.name === 'restic') {
      runs.push({ name: 'restic', argv: [...h.command, ...h.globalArgs, 'mount'], env, datasetDir: (m) => viaLatest(m, dataRoot), bigRel });
    } else if (h.name === 'borg') {
      runs.push({ name: 'borg', argv: [...h.command, 'mount', '-f', `${h.repo}::${h.latest}`], env, datasetDir: (m) => path.join(m, dataRoot.replace(/^\/+/, '')), bigRel });
    }
  }
  return runs;
}

function rows(results: Measured[]): PhaseResult[] {
  const out: PhaseResult[] = [];
  const borg = results.find((r) => r.tool === 'borg' && !r.error);
  for (const r of results) {
    const base = { section: 'mount' as const, tool: r.tool };
    if (r.error && r.readySeconds === undefined) {
      out.push({ ...base, phase: 'mount', ok: false, note: r.error });
      continue;
    }
    const vsBorg = (mine: number | undefined, theirs: number | undefined, higherIsBetter: boolean) =>
      r.tool !== 'borg' && borg && mine && theirs ? `${higherIsBetter ? (mine / theirs).toFixed(2) : (theirs / mine).toFixed(2)}× as fast as borg` : '';
    const runs = (xs: number[]) => (xs.length > 1 ? { runs: xs } : {});
    out.push({ ...base, phase: 'mount ready', ok: true, seconds: r.readySeconds, ...runs(r.readyRuns) });
    if (r.lsSeconds !== undefined) out.push({ ...base, phase: 'ls -lR of a snapshot', ok: true, seconds: r.lsSeconds, note: vsBorg(r.lsSeconds, borg?.lsSeconds, false).trim() || undefined });
    if (r.firstCatMBps !== undefined) {
      out.push({
        ...base,
        phase: 'first cat of the largest file',
        ok: true,
        bytes: r.bigBytes,
        seconds: r.bigBytes! / 1e6 / r.firstCatMBps,
        mbPerSec: r.firstCatMBps,
        ...runs(r.firstCatRuns),
        note: vsBorg(r.firstCatMBps, borg?.firstCatMBps, true).trim() || undefined,
      });
    }
    if (r.secondCatMBps !== undefined) out.push({ ...base, phase: 'second cat (cached)', ok: true, bytes: r.bigBytes, seconds: r.bigBytes! / 1e6 / r.secondCatMBps, mbPerSec: r.secondCatMBps, ...runs(r.secondCatRuns) });
    if (r.rssKiB !== undefined) {
      out.push({ ...base, phase: 'RSS after ls -lR + reading every file', ok: true, seconds: r.readAllSeconds, peakRssKiB: r.rssKiB, note: r.hwmKiB ? `peak ${(r.hwmKiB / 1024).toFixed(0)} MiB` : undefined });
    }
    if (r.error) out.push({ ...base, phase: 'mount', ok: false, note: r.error });
  }
  return out;
}

export async function benchMount(opts: MountBenchOptions): Promise<PhaseResult[]>;
export async function benchMount(opts: SimpleMountBenchOptions): Promise<Record<string, number | string>>;
export async function benchMount(opts: MountBenchOptions | SimpleMountBenchOptions): Promise<PhaseResult[] | Record<string, number | string>> {
  if ('tools' in opts) {
    const big = largestFile(opts.dataRoot);
    if (!big) return [{ section: 'mount', tool: 'aegis', phase: 'mount', ok: false, skipped: true, note: 'the dataset has no files' }];
    const runs = toolRuns(opts.tools, opts.dataRoot, path.relative(opts.dataRoot, big));
    const prime = opts.prime ?? true;
    const results: Measured[] = [];
    for (const t of runs) results.push(await measureTool(t, opts.workDir, prime, opts.log));
    for (let round = 2; round <= (opts.repeat ?? 1); round++) {
      opts.log(`mount: round ${round} of ${opts.repeat}: mount ready, first and second cat`);
      for (const [i, t] of runs.entries()) {
        const r = results[i]!;
        if (r.error || r.bigBytes === undefined) continue;
        try {
          await repeatRound(t, r, opts.workDir, prime, opts.log);
        } catch (err) {
          r.error = `round ${round}: ${(err as Error).message}`;
          opts.log(`mount: ${t.name} failed: ${r.error}`);
        }
      }
    }
    for (const r of results) settle(r);
    return rows(results);
  }
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const bigRel = path.relative(opts.snapshotSubdir, opts.bigFile);
  const handles: BenchToolHandle[] = [
    { name: 'aegis', repo: opts.repo, command: [process.execPath, opts.aegis], env: opts.env as Record<string, string>, globalArgs: ['-r', opts.repo, '-q'], latest: 'latest', scratch: opts.workDir },
  ];
  if (opts.restic) handles.push({ name: 'restic', repo: opts.restic.repo, command: ['restic'], env: opts.restic.env as Record<string, string>, globalArgs: ['-r', opts.restic.repo], latest: 'latest', scratch: opts.workDir });
  if (opts.borg) handles.push({ name: 'borg', repo: opts.borg.repo, command: ['borg'], env: opts.borg.env as Record<string, string>, globalArgs: [], latest: opts.borg.archive, scratch: opts.workDir });
  const results: Measured[] = [];
  for (const t of toolRuns(handles, opts.snapshotSubdir, bigRel)) results.push(await measureTool(t, opts.workDir, true, log));
  const flat: Record<string, number | string> = {};
  for (const r of results) {
    const k = r.tool;
    if (r.readySeconds !== undefined) flat[`${k}.mountReadySeconds`] = r.readySeconds;
    if (r.lsSeconds !== undefined) flat[`${k}.lsLRSeconds`] = r.lsSeconds;
    if (r.firstCatMBps !== undefined) flat[`${k}.firstCatMBps`] = r.firstCatMBps;
    if (r.secondCatMBps !== undefined) flat[`${k}.secondCatMBps`] = r.secondCatMBps;
    if (r.rssKiB !== undefined) flat[`${k}.rssMiBAfterReadAll`] = r.rssKiB / 1024;
    if (r.error) flat[`${k}.error`] = r.error;
  }
  return flat;
}
