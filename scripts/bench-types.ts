/**
 * Types shared by the parts of `npm run bench` (scripts/bench*.ts), and the
 * contract of the optional hooks other files provide (scripts/bench-mount.ts).
 */

export type ToolName = 'aegis' | 'restic' | 'borg';
export const TOOL_NAMES: readonly ToolName[] = ['aegis', 'restic', 'borg'];

/** Where a figure was measured. */
export type Section = 'local' | 's3' | 'mount';

/** One measured step of one tool: a row of the result tables and of the JSON output. */
export interface PhaseResult {
  section: Section;
  tool: string;
  /** 'first backup', 'unchanged backup', 'mutated backup', 'restore', 'init', or a hook's own name. */
  phase: string;
  ok: boolean;
  /** True when the step did not run (tool missing, feature not there yet, earlier failure). */
  skipped?: boolean;
  /** Why it failed or was skipped, or what it verified. */
  note?: string;
  /** Wall time of the command; with several runs (--repeat), their median. */
  seconds?: number;
  /** Wall times of every run, in the order they ran, when the step was repeated. */
  runs?: number[];
  /** Bytes the step processed (the dataset size), for throughput. */
  bytes?: number;
  /** Decimal megabytes per second: bytes / seconds / 1e6. */
  mbPerSec?: number;
  /** Peak resident set size of the command in KiB (null: could not be measured). */
  peakRssKiB?: number | null;
  /** User plus system CPU seconds of the command (null: could not be measured). */
  cpuSeconds?: number | null;
  /** Repository size on disk (du -sb) after the step. */
  repoBytes?: number;
  /** Repository growth caused by this step (mutated backup). */
  growthBytes?: number;
  /** Network requests the step sent (S3 section). */
  requests?: number;
  /** Requests by HTTP method (S3 section). */
  requestsByMethod?: Record<string, number>;
}

/** How a tool is run, handed to hooks so they can run it on the same repositories. */
export interface BenchToolHandle {
  name: ToolName;
  /** Repository location as the tool takes it (a path for all three tools here). */
  repo: string;
  /** argv prefix that runs the tool's CLI, e.g. [node, /…/bin/aegis] or ['restic']. */
  command: string[];
  /** Environment the tool needs: passphrase, cache and state directories. */
  env: Record<string, string>;
  /** Extra global arguments every invocation needs (aegis: -r REPO --password-file F; restic: -r REPO). */
  globalArgs: string[];
  /** Name of the newest snapshot/archive (borg needs it: REPO::NAME), or 'latest'. */
  latest: string;
  /** A scratch directory private to this tool (mount points and such go below it). */
  scratch: string;
}

/**
 * Options passed to `benchMount(opts)` exported by scripts/bench-mount.ts (optional;
 * another engineer's file). It returns rows to print, with section 'mount'.
 */
export interface MountBenchOptions {
  /** Root of the backed-up dataset (the mutated state, which is what 'latest' holds). */
  dataRoot: string;
  dataBytes: number;
  dataFiles: number;
  /** The tools whose local backups succeeded, with their repositories. */
  tools: BenchToolHandle[];
  /** Scratch directory for the hook, removed afterwards unless --keep. */
  workDir: string;
  /** Fault in and free memory before each timed step (bench-measure.ts, primeMemory). */
  prime?: boolean;
  /**
   * Time "mount ready" and the first cat this many times per tool (default 1), in
   * rounds that run every tool once, each on a fresh mount; report the median.
   */
  repeat?: number;
  /** Run and time a command the way the rest of the bench does (wall time, peak RSS). */
  measure: (spec: { cmd: string; args: string[]; env?: Record<string, string>; cwd?: string }) => Promise<{
    ok: boolean;
    seconds: number;
    peakRssKiB: number | null;
    stdout: string;
    stderr: string;
  }>;
  log: (message: string) => void;
}

export type BenchMountFn = (opts: MountBenchOptions) => Promise<PhaseResult[]>;
