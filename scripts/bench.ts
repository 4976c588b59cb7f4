/**
 * `npm run bench`: aegis against restic and borg on the same ~1 GiB dataset, in one run.
 *
 * Phases, run tool by tool within each phase (so background noise spreads evenly):
 * init, first backup, unchanged backup, a small mutation of the source, backup after
 * the mutation (repository growth), full restore into an empty directory (verified
 * file by file). Then the optional mount section (scripts/bench-mount.ts, another
 * file's hook) and the optional S3 section (local Ceph gateway). Prints tables and
 * the issue's targets, writes JSON (--out) and a Markdown snippet (--markdown).
 *
 * Usage: node dist/scripts/bench.js [--scale 0.1] [--only aegis,restic,borg] [--data DIR]
 *        [--work DIR] [--out FILE] [--markdown FILE] [--repeat N] [--no-mount] [--no-s3] [--cold] [--no-prime] [--keep]
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_SEED, ensureDataset } from './bench-data.js';
import { diskUsage, failureNote, killRunning, measure, rssMethod, warmPageCache } from './bench-measure.js';
import { type MutationInfo, mutateDataset } from './bench-mutate.js';
import { type PhaseSettings, combineRuns, restorePhase, skippedPhase, timedPhase } from './bench-phases.js';
import { type BenchReport, type ToolInfo, checkTargets, fmtBytes, renderMarkdown, renderText } from './bench-report.js';
import { benchS3 } from './bench-s3.js';
import { PROJECT_ROOT, type ToolAdapter, type ToolContext, adapterFor, prepareContext } from './bench-tools.js';
import { type BenchMountFn, type PhaseResult, TOOL_NAMES, type ToolName } from './bench-types.js';
import { buildManifest } from './bench-verify.js';

const USAGE = `usage: node dist/scripts/bench.js [options]
  --scale N         dataset size factor (1 = ~1 GiB; 0.05 for a quick trial)
  --data DIR        dataset cache (default /tmp/aegis-bench/data, or data-scale-N when scaled)
  --work DIR        scratch root for repositories and restores (default /tmp/aegis-bench/work)
  --only LIST       tools to run, comma-separated (default aegis,restic,borg; missing ones are skipped)
  --out FILE        JSON results (default /tmp/aegis-bench/results.json)
  --markdown FILE   also write a Markdown table for the README
  --repeat N        time the first backup, the restore, the mount until ready and the
                    first cat through the mount N times per tool, in rounds (every tool
                    once per round), and report the median (default 3)
  --no-mount        skip the mount section (scripts/bench-mount.ts)
  --no-s3           skip the S3 section (scripts/s3-server.sh)
  --cold            drop the page cache before every timed command (root only; default: warm cache)
  --no-prime        do not fault in and free 2 GiB of memory before every timed command (see primeMemory)
  --seed N          dataset seed (default ${DEFAULT_SEED})
  --keep            keep repositories and restores (and a started S3 server)`;

interface Options {
  scale: number;
  data: string;
  work: string;
  only: ToolName[];
  out: string;
  markdown?: string;
  repeat: number;
  mount: boolean;
  s3: boolean;
  cold: boolean;
  prime: boolean;
  keep: boolean;
  seed: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      scale: { type: 'string', default: '1' },
      data: { type: 'string' },
      work: { type: 'string', default: '/tmp/aegis-bench/work' },
      only: { type: 'string', default: TOOL_NAMES.join(',') },
      out: { type: 'string', default: '/tmp/aegis-bench/results.json' },
      markdown: { type: 'string' },
      repeat: { type: 'string', default: '3' },
      'no-mount': { type: 'boolean', default: false },
      'no-s3': { type: 'boolean', default: false },
      cold: { type: 'boolean', default: false },
      'no-prime': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      seed: { type: 'string', default: String(DEFAULT_SEED) },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }
  const scale = Number(values.scale);
  if (!(scale > 0 && scale <= 8)) throw new Error(`--scale must be a number in (0, 8], got ${values.scale}`);
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got ${values.seed}`);
  const repeat = Number(values.repeat);
  if (!Number.isSafeInteger(repeat) || repeat < 1 || repeat > 9) throw new Error(`--repeat must be an integer from 1 to 9, got ${values.repeat}`);
  const only = values.only.split(',').map((s) => s.trim()).filter(Boolean);
  for (const t of only) if (!(TOOL_NAMES as readonly string[]).includes(t)) throw new Error(`--only: unknown tool "${t}" (aegis, restic, borg)`);
  return {
    scale,
    seed,
    data: path.resolve(values.data ?? (scale === 1 ? '/tmp/aegis-bench/data' : `/tmp/aegis-bench/data-scale-${scale}`)),
    work: path.resolve(values.work),
    only: only as ToolName[],
    out: path.resolve(values.out),
    markdown: values.markdown ? path.resolve(values.markdown) : undefined,
    repeat,
    mount: !values['no-mount'],
    s3: !values['no-s3'],
    cold: values.cold,
    prime: !values['no-prime'],
    keep: values.keep,
  };
}

const log = (message: string): void => {
  process.stderr.write(`${message}\n`);
};

interface Lane {
  adapter: ToolAdapter;
  ctx: ToolContext;
  /** Why later phases are skipped, once a phase failed. */
  broken?: string;
}

/** The optional mount section: scripts/bench-mount.ts (another engineer's file) when it exists. */
async function runMountHook(lanes: Lane[], source: string, bytes: number, files: number, workDir: string, prime: boolean, repeat: number, notes: string[]): Promise<PhaseResult[]> {
  // MOUNT HOOK — loaded dynamically so that the bench builds and runs without it.
  const compiled = path.join(PROJECT_ROOT, 'dist', 'scripts', 'bench-mount.js');
  if (!fs.existsSync(compiled)) {
    notes.push('mount section skipped: scripts/bench-mount.ts (benchMount) is not there yet');
    return [];
  }
  let benchMount: BenchMountFn | undefined;
  try {
    const specifier = pathToFileURL(compiled).href;
    const mod = (await import(specifier)) as { benchMount?: unknown };
    if (typeof mod.benchMount === 'function') benchMount = mod.benchMount as BenchMountFn;
  } catch (err) {
    notes.push(`mount section skipped: loading scripts/bench-mount.js failed: ${(err as Error).message}`);
    return [];
  }
  if (!benchMount) {
    notes.push('mount section skipped: scripts/bench-mount.js exports no benchMount function');
    return [];
  }
  const dir = path.join(workDir, 'mount');
  fs.mkdirSync(dir, { recursive: true });
  log('mount: running scripts/bench-mount.js …');
  try {
    const rows = await benchMount({
      dataRoot: source,
      dataBytes: bytes,
      dataFiles: files,
      tools: lanes.filter((l) => l.ctx.latest === 'mutated').map((l) => l.adapter.handle(l.ctx)), // every backup succeeded
      workDir: dir,
      measure: (spec) => measure(spec),
      prime,
      repeat,
      log,
    });
    if (!Array.isArray(rows)) {
      notes.push('mount section: benchMount returned no rows');
      return [];
    }
    return rows
      .filter((r): r is PhaseResult => typeof r === 'object' && r !== null && typeof r.tool === 'string' && typeof r.phase === 'string')
      .map((r) => ({ ...r, section: 'mount' as const }));
  } catch (err) {
    notes.push(`mount section failed: ${(err as Error).message}`);
    return [];
  }
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const results: PhaseResult[] = [];
  const notes: string[] = [];
  const settings: PhaseSettings = { cold: opts.cold, prime: opts.prime, keep: opts.keep, log };

  // Tools.
  const toolInfo: ToolInfo[] = [];
  const available: ToolAdapter[] = [];
  for (const name of opts.only) {
    const adapter = adapterFor(name);
    const probe = adapter.probe();
    toolInfo.push({ name, available: probe.ok, version: probe.version, settings: adapter.settings, reason: probe.reason });
    if (probe.ok) available.push(adapter);
    else {
      log(`${name}: not run: ${probe.reason}`);
      notes.push(`${name} not run: ${probe.reason}`);
    }
  }
  if (opts.only.includes('aegis') && available.some((a) => a.name === 'aegis') && !adapterFor('aegis').has('restore')) {
    notes.push('aegis has no restore command yet: its restore phase is skipped');
  }

  // Dataset, and a working copy that the mutation may change.
  const dataset = ensureDataset(opts.data, opts.scale, opts.seed, log);
  log(
    `dataset: ${fmtBytes(dataset.bytes)} in ${dataset.files} files at ${dataset.root}` +
      (dataset.generatedIn > 0 ? ` (generated in ${dataset.generatedIn.toFixed(1)} s)` : ' (cached)'),
  );
  const runId = `${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${process.pid}`;
  const workDir = path.join(opts.work, runId);
  const source = path.join(workDir, 'src');
  fs.mkdirSync(workDir, { recursive: true });
  const cleanup = (): void => {
    if (!opts.keep) fs.rmSync(workDir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    killRunning();
    log('\ninterrupted');
    cleanup();
    process.exit(130);
  });
  const cp = spawnSync('cp', ['-a', dataset.root, source], { encoding: 'utf8' });
  if (cp.status !== 0) throw new Error(`copying the dataset failed: ${cp.stderr}`);

  const lanes: Lane[] = available.map((adapter) => {
    const dir = path.join(workDir, adapter.name);
    return { adapter, ctx: prepareContext(dir, path.join(dir, 'repo')) };
  });
  const repoSize = (lane: Lane): number | undefined => {
    try {
      return diskUsage(lane.ctx.repo);
    } catch {
      return undefined;
    }
  };
  /**
   * Run a phase `rounds` times for every lane still healthy, in rounds (every
   * lane once per round, so background noise spreads over the tools alike), one
   * row per lane with the median of its runs (combineRuns). `fn` is told the
   * round (1-based); the last round is the one later phases build on. A failure
   * skips that lane's later rounds and phases.
   */
  const phaseRounds = async (name: string, rounds: number, fn: (lane: Lane, round: number) => Promise<PhaseResult>): Promise<void> => {
    const runs = new Map<Lane, PhaseResult[]>();
    for (let round = 1; round <= rounds; round++) {
      log(`${name}${rounds > 1 ? ` (round ${round} of ${rounds})` : ''}:`);
      for (const lane of lanes) {
        if (lane.broken) continue;
        const r = await fn(lane, round);
        runs.set(lane, [...(runs.get(lane) ?? []), r]);
        if (!r.ok && !r.skipped) lane.broken = `${name} failed`;
      }
    }
    for (const lane of lanes) {
      const r = runs.get(lane);
      results.push(r ? combineRuns(r) : skippedPhase('local', lane.adapter.name, name, lane.broken ?? 'not run'));
    }
  };
  const phase = (name: string, fn: (lane: Lane) => Promise<PhaseResult>): Promise<void> => phaseRounds(name, 1, fn);
  const repeatedPhase = (name: string, fn: (lane: Lane, round: number) => Promise<PhaseResult>): Promise<void> => phaseRounds(name, opts.repeat, fn);

  const pageCache =
    (opts.cold
      ? 'cold page cache (dropped before every timed command)'
      : 'warm page cache (source read once before each tool’s first backup, never dropped; same for every tool)') +
    (opts.prime ? '; 2 GiB of memory faulted in and freed before every timed command, for every tool (--no-prime: not)' : '; memory not primed (--no-prime)');
  log(`page cache: ${pageCache}`);

  await phase('init', async (lane) => (await timedPhase(lane.adapter.init(lane.ctx), { section: 'local', tool: lane.adapter.name, phase: 'init' }, settings)).result);

  const backupInto = async (lane: Lane, phaseName: string, snapshotName: string, bytes: number): Promise<PhaseResult> => {
    const { result } = await timedPhase(lane.adapter.backup(lane.ctx, source, snapshotName), { section: 'local', tool: lane.adapter.name, phase: phaseName, bytes }, settings);
    if (result.ok) {
      lane.ctx.latest = snapshotName;
      result.repoBytes = repoSize(lane);
    }
    return result;
  };
  const backup = async (phaseName: string, snapshotName: string, bytes: number): Promise<void> => {
    await phase(phaseName, (lane) => backupInto(lane, phaseName, snapshotName, bytes));
  };

  // Every round but the last backs up into a scratch repository of its own (a
  // first backup needs an empty one), deleted afterwards; the last round's
  // repository is the one the later phases use.
  await repeatedPhase('first backup', async (lane, round) => {
    const scratch = round < opts.repeat;
    const dir = path.join(workDir, `${lane.adapter.name}-scratch`);
    const target: Lane = scratch ? { adapter: lane.adapter, ctx: prepareContext(dir, path.join(dir, 'repo'), lane.ctx.extraEnv) } : lane;
    try {
      if (scratch) {
        const init = await measure(lane.adapter.init(target.ctx));
        if (!init.ok) return { section: 'local', tool: lane.adapter.name, phase: 'first backup', ok: false, note: `init of a scratch repository: ${failureNote(init)}` };
      }
      if (!opts.cold) await warmPageCache(source);
      return await backupInto(target, 'first backup', 'first', dataset.bytes);
    } finally {
      if (scratch) fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  await backup('unchanged backup', 'unchanged', dataset.bytes);
  const repoAfterUnchanged = new Map(results.filter((r) => r.phase === 'unchanged backup' && r.repoBytes !== undefined).map((r) => [r.tool, r.repoBytes!]));

  log('mutating the source …');
  let mutation: MutationInfo | undefined;
  try {
    mutation = await mutateDataset(source, opts.seed);
    log(`  ${mutation.summary}`);
  } catch (err) {
    notes.push(`mutation failed: ${(err as Error).message}`);
  }
  const manifest = await buildManifest(source); // also leaves the page cache warm for every tool alike
  await backup('mutated backup', 'mutated', manifest.bytes);
  for (const r of results) {
    const before = repoAfterUnchanged.get(r.tool);
    if (r.phase === 'mutated backup' && r.ok && r.repoBytes !== undefined && before !== undefined) r.growthBytes = r.repoBytes - before;
  }

  await repeatedPhase('restore', (lane) => restorePhase(lane.adapter, lane.ctx, 'local', manifest, settings));

  if (opts.mount) results.push(...(await runMountHook(lanes, source, manifest.bytes, manifest.files.size, workDir, opts.prime, opts.repeat, notes)));
  else notes.push('mount section skipped (--no-mount)');

  if (opts.s3) {
    const s3 = await benchS3({ ...settings, tools: available, source, manifest, workDir, runId });
    results.push(...s3.results);
    notes.push(...s3.notes);
  } else notes.push('S3 section skipped (--no-s3)');

  notes.push('other processes on this machine (builds, tests) add noise: compare tools within one run, not across runs');
  notes.push('repository growth varies from run to run: every repository keys its chunker at random (aegis gear table, restic polynomial, borg seed), so chunk boundaries around the edits differ');
  const { root: _root, ...datasetInfo } = dataset;
  const report: BenchReport = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release(), node: process.versions.node },
    options: { ...opts },
    dataset: { ...datasetInfo, bytes: dataset.bytes, source },
    mutation,
    tools: toolInfo,
    pageCache,
    repeat: opts.repeat,
    rssMethod: rssMethod(),
    results,
    targets: checkTargets(results),
    notes,
  };
  process.stdout.write('\n' + renderText(report) + '\n');
  fs.mkdirSync(path.dirname(opts.out), { recursive: true });
  fs.writeFileSync(opts.out, JSON.stringify(report, null, 2) + '\n');
  log(`\nresults: ${opts.out}`);
  if (opts.markdown) {
    fs.mkdirSync(path.dirname(opts.markdown), { recursive: true });
    fs.writeFileSync(opts.markdown, renderMarkdown(report));
    log(`markdown: ${opts.markdown}`);
  }
  if (opts.keep) log(`kept: ${workDir}`);
  cleanup();
}

main().catch((err: unknown) => {
  killRunning();
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
