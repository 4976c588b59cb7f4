/**
 * Presenting the figures: the human tables, the issue's targets (aegis vs restic)
 * checked as met / not met, and a Markdown snippet for the README.
 */
import type { DatasetInfo } from './bench-data.js';
import type { MutationInfo } from './bench-mutate.js';
import type { PhaseResult, Section } from './bench-types.js';

export interface ToolInfo {
  name: string;
  available: boolean;
  version?: string;
  settings: string;
  reason?: string;
}

export interface TargetCheck {
  id: string;
  description: string;
  aegis?: number;
  restic?: number;
  /** aegis ÷ restic of the figure the target is about (S3: aegis on S3 ÷ aegis on a local disk). */
  ratio?: number;
  limit: string;
  status: 'met' | 'not met' | 'n/a';
  detail: string;
}

export interface BenchReport {
  date: string;
  machine: { cpus: number; memoryGiB: number; kernel: string; node: string };
  options: Record<string, unknown>;
  dataset: Omit<DatasetInfo, 'root'> & { source: string };
  mutation?: MutationInfo;
  tools: ToolInfo[];
  pageCache: string;
  /** How often the repeated phases ran (--repeat). */
  repeat: number;
  rssMethod: string;
  results: PhaseResult[];
  targets: TargetCheck[];
  notes: string[];
}

export const LOCAL_PHASES = ['first backup', 'unchanged backup', 'mutated backup', 'restore'] as const;

// ---- number formatting ------------------------------------------------------------

export function fmtBytes(n: number | undefined): string {
  if (n === undefined) return '–';
  const a = Math.abs(n);
  if (a >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (a >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (a >= 1 << 10) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}
function fmtSec(s: number | undefined): string {
  if (s === undefined) return '–';
  return s < 10 ? `${s.toFixed(2)} s` : `${s.toFixed(1)} s`;
}
function fmtRate(r: number | undefined): string {
  return r === undefined ? '–' : r.toFixed(1);
}
function fmtRss(k: number | null | undefined): string {
  return k === undefined || k === null ? '–' : `${(k / 1024).toFixed(0)} MiB`;
}
function fmtRatio(r: number | undefined): string {
  return r === undefined || !Number.isFinite(r) ? '–' : `${r.toFixed(2)}×`;
}

// ---- targets ----------------------------------------------------------------------

function find(results: PhaseResult[], section: Section, tool: string, phase: string): PhaseResult | undefined {
  return results.find((r) => r.section === section && r.tool === tool && r.phase === phase && r.ok);
}

/** Peak RSS of a tool over the four local phases (undefined unless all four were measured). */
export function maxLocalRss(results: PhaseResult[], tool: string): number | undefined {
  let max = 0;
  for (const phase of LOCAL_PHASES) {
    const r = find(results, 'local', tool, phase);
    if (!r || r.peakRssKiB === undefined || r.peakRssKiB === null) return undefined;
    max = Math.max(max, r.peakRssKiB);
  }
  return max;
}

export function checkTargets(results: PhaseResult[]): TargetCheck[] {
  const pair = (phase: string, pick: (r: PhaseResult) => number | undefined): [number | undefined, number | undefined] => {
    const a = find(results, 'local', 'aegis', phase);
    const r = find(results, 'local', 'restic', phase);
    return [a ? pick(a) : undefined, r ? pick(r) : undefined];
  };
  const check = (
    id: string,
    description: string,
    [aegis, restic]: [number | undefined, number | undefined],
    limit: string,
    ok: (ratio: number, a: number, r: number) => boolean,
    show: (v: number) => string,
  ): TargetCheck => {
    if (aegis === undefined || restic === undefined) {
      return { id, description, aegis, restic, limit, status: 'n/a', detail: 'not measured for both aegis and restic' };
    }
    const ratio = restic === 0 ? (aegis === 0 ? 1 : Infinity) : aegis / restic;
    return { id, description, aegis, restic, ratio, limit, status: ok(ratio, aegis, restic) ? 'met' : 'not met', detail: `aegis ${show(aegis)} vs restic ${show(restic)} (${fmtRatio(ratio)})` };
  };
  return [
    check('first-backup-throughput', 'first backup throughput', pair('first backup', (r) => r.mbPerSec), '≥ 2.5× restic', (x) => x >= 2.5, (v) => `${v.toFixed(1)} MB/s`),
    check('unchanged-backup-time', 'unchanged backup time', pair('unchanged backup', (r) => r.seconds), '≤ 0.5× restic', (x) => x <= 0.5, fmtSec),
    check('mutation-growth', 'repository growth after the mutation', pair('mutated backup', (r) => r.growthBytes), '≤ restic', (_x, a, r) => a <= r, fmtBytes),
    check('restore-throughput', 'restore throughput', pair('restore', (r) => r.mbPerSec), '≥ 2× restic', (x) => x >= 2, (v) => `${v.toFixed(1)} MB/s`),
    check('peak-rss', 'peak RSS (max over the four phases)', [maxLocalRss(results, 'aegis'), maxLocalRss(results, 'restic')], '≤ restic', (_x, a, r) => a <= r, fmtRss),
    s3Target(results),
  ];
}

/** The S3 issue's target: aegis's first backup to the local S3 server against its own to a local disk. */
function s3Target(results: PhaseResult[]): TargetCheck {
  const id = 's3-backup-throughput';
  const description = 'first backup to S3 throughput';
  const limit = '≥ 60% of aegis to a local disk';
  const s3 = find(results, 's3', 'aegis', 'first backup')?.mbPerSec;
  const local = find(results, 'local', 'aegis', 'first backup')?.mbPerSec;
  if (s3 === undefined || !local) return { id, description, limit, status: 'n/a', detail: 'not measured both on S3 and on a local disk' };
  const ratio = s3 / local;
  return { id, description, ratio, limit, status: ratio >= 0.6 ? 'met' : 'not met', detail: `S3 ${s3.toFixed(1)} MB/s vs local disk ${local.toFixed(1)} MB/s (${(100 * ratio).toFixed(0)}%)` };
}

// ---- text tables ------------------------------------------------------------------

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  // Text columns (the first two and the last) left-aligned, figures right-aligned.
  const left = (i: number): boolean => i <= 1 || i === header.length - 1;
  const line = (cells: string[]): string => cells.map((c, i) => (left(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The figure a phase is judged by, aegis ÷ the other tool, with what it is. */
function ratioCell(results: PhaseResult[], r: PhaseResult, other: string): string {
  if (r.tool !== 'aegis' || !r.ok) return '';
  const o = find(results, r.section, other, r.phase);
  if (!o) return '';
  if (r.phase === 'unchanged backup' || r.phase.startsWith('snapshots') || r.phase.startsWith('ls')) {
    return r.seconds !== undefined && o.seconds ? `${fmtRatio(r.seconds / o.seconds)} time` : '';
  }
  if (r.phase === 'mutated backup' && r.growthBytes !== undefined && o.growthBytes !== undefined) {
    return o.growthBytes > 0 ? `${fmtRatio(r.growthBytes / o.growthBytes)} growth` : '';
  }
  if (r.mbPerSec !== undefined && o.mbPerSec) return `${fmtRatio(r.mbPerSec / o.mbPerSec)} MB/s`;
  return '';
}

function repeatNote(report: BenchReport): string {
  return report.repeat > 1
    ? `First backup, restore, mount ready and the first and second cat through the mount: median of ${report.repeat} runs per tool, in rounds that run every tool once (a fresh mount for each first cat; highest peak RSS of the runs; every time in the JSON's \`runs\`). `
    : '';
}

function statusCell(r: PhaseResult): string {
  if (r.skipped) return `skipped: ${r.note ?? ''}`;
  if (!r.ok) return `FAILED: ${r.note ?? ''}`;
  const runs = r.runs ? `median of ${r.runs.map((x) => x.toFixed(2)).join(', ')} s` : '';
  return [runs, r.note ?? ''].filter(Boolean).join('; ');
}

export function renderText(report: BenchReport): string {
  const out: string[] = [];
  const d = report.dataset;
  out.push(
    `Dataset: ${fmtBytes(d.bytes)} in ${d.files.toLocaleString('en-US')} files (scale ${d.scale}: ${d.textFiles.toLocaleString('en-US')} text files ${fmtBytes(d.textBytes)}, ` +
      `${d.binaries} binaries ${fmtBytes(d.binaryBytes)}, image ${fmtBytes(d.imageBytes)}), source ${d.source}`,
  );
  if (report.mutation) out.push(`Mutation: ${report.mutation.summary}`);
  out.push(`Page cache: ${report.pageCache}. ${repeatNote(report)}Peak RSS via ${report.rssMethod}. Machine: ${report.machine.cpus} CPUs, ${report.machine.memoryGiB} GiB, Node ${report.machine.node}.`);
  for (const t of report.tools) out.push(`  ${t.name.padEnd(6)} ${t.available ? `${t.version ?? ''} — ${t.settings}` : `not run: ${t.reason ?? ''}`}`);
  const tools = report.tools.map((t) => t.name);
  const others = ['restic', 'borg'].filter((t) => tools.includes(t));

  const sections: Array<[Section, string]> = [
    ['local', 'Local disk'],
    ['s3', 'S3 (local Ceph RADOS gateway over loopback)'],
    ['mount', 'Mount'],
  ];
  for (const [section, title] of sections) {
    const rows = report.results.filter((r) => r.section === section);
    if (rows.length === 0) continue;
    const header = ['phase', 'tool', 'time', 'CPU', 'MB/s', 'peak RSS', 'repo size', 'growth'];
    if (section === 's3') header.push('requests');
    header.push(...others.map((o) => `aegis vs ${o}`), 'note');
    const body = rows.map((r) => {
      const cells = [r.phase, r.tool, fmtSec(r.seconds), r.cpuSeconds == null ? '–' : fmtSec(r.cpuSeconds), fmtRate(r.mbPerSec), fmtRss(r.peakRssKiB), r.repoBytes === undefined ? '–' : fmtBytes(r.repoBytes), r.growthBytes === undefined ? '–' : fmtBytes(r.growthBytes)];
      if (section === 's3') cells.push(r.requests === undefined ? '–' : String(r.requests));
      cells.push(...others.map((o) => ratioCell(report.results, r, o)), statusCell(r));
      return cells;
    });
    out.push('', `${title}:`, table(header, body));
  }

  out.push('', 'Targets (aegis vs restic, and aegis on S3 vs a local disk, measured in this run):');
  for (const t of report.targets) {
    out.push(`  ${t.status === 'met' ? 'met    ' : t.status === 'not met' ? 'NOT MET' : 'n/a    '}  ${t.description} ${t.limit}: ${t.detail}`);
  }
  if (report.notes.length > 0) out.push('', 'Notes:', ...report.notes.map((n) => `  - ${n}`));
  return out.join('\n');
}

// ---- Markdown ---------------------------------------------------------------------

function mdCell(r: PhaseResult | undefined, what: 'rate' | 'time' | 'growth'): string {
  if (!r) return '–';
  if (r.skipped) return 'n/a';
  if (!r.ok) return 'failed';
  const rss = r.peakRssKiB ? `, ${fmtRss(r.peakRssKiB)}` : '';
  if (what === 'rate') return `${fmtSec(r.seconds)}, ${r.mbPerSec?.toFixed(0) ?? '–'} MB/s${rss}`;
  if (what === 'growth') return `${fmtSec(r.seconds)}, +${fmtBytes(r.growthBytes)}${rss}`;
  return `${fmtSec(r.seconds)}${rss}`;
}

export function renderMarkdown(report: BenchReport): string {
  const d = report.dataset;
  const tools = report.tools.filter((t) => t.available);
  const names = tools.map((t) => t.name);
  const target = (id: string): string => {
    const t = report.targets.find((x) => x.id === id);
    return t ? `${t.limit}: ${t.status === 'n/a' ? 'n/a' : `${fmtRatio(t.ratio)} — ${t.status}`}` : '';
  };
  const lines: string[] = [];
  lines.push(
    `Measured ${report.date.slice(0, 10)} by \`npm run bench\` on a ${report.machine.cpus}-core machine, side by side in one run, ` +
      `${report.pageCache}; dataset ${fmtBytes(d.bytes)} in ${d.files.toLocaleString('en-US')} files (scale ${d.scale}). ` +
      tools.map((t) => `${t.version ?? t.name}: ${t.settings}`).join('; ') +
      `. ${repeatNote(report)}Cells: wall time, throughput, peak RSS.`,
    '',
  );
  lines.push(`| phase | ${names.join(' | ')} | target (aegis vs restic) |`);
  lines.push(`|---|${names.map(() => '---:').join('|')}|---|`);
  const row = (label: string, phase: string, what: 'rate' | 'time' | 'growth', id: string): void => {
    lines.push(`| ${label} | ${names.map((n) => mdCell(find(report.results, 'local', n, phase) ?? report.results.find((r) => r.section === 'local' && r.tool === n && r.phase === phase), what)).join(' | ')} | ${target(id)} |`);
  };
  row('first backup', 'first backup', 'rate', 'first-backup-throughput');
  row('unchanged backup', 'unchanged backup', 'time', 'unchanged-backup-time');
  row('backup after a small mutation (growth)', 'mutated backup', 'growth', 'mutation-growth');
  row('full restore', 'restore', 'rate', 'restore-throughput');
  lines.push(`| peak RSS, max of the four | ${names.map((n) => fmtRss(maxLocalRss(report.results, n))).join(' | ')} | ${target('peak-rss')} |`);
  lines.push(`| repository size after first backup | ${names.map((n) => fmtBytes(find(report.results, 'local', n, 'first backup')?.repoBytes)).join(' | ')} | |`);

  const s3 = report.results.filter((r) => r.section === 's3');
  if (s3.length > 0) {
    const s3names = names.filter((n) => s3.some((r) => r.tool === n));
    lines.push('', 'S3 (local Ceph RADOS gateway over loopback; requests counted by the gateway):', '');
    lines.push(`| step | ${s3names.join(' | ')} |`, `|---|${s3names.map(() => '---:').join('|')}|`);
    const phases = [...new Set(s3.map((r) => r.phase))];
    for (const p of phases) {
      const cells = s3names.map((n) => {
        const r = s3.find((x) => x.tool === n && x.phase === p);
        if (!r) return '–';
        if (r.skipped) return 'n/a';
        if (!r.ok) return 'failed';
        const base = r.mbPerSec !== undefined ? `${fmtSec(r.seconds)}, ${r.mbPerSec.toFixed(0)} MB/s` : fmtSec(r.seconds);
        return `${base}, ${r.requests ?? '?'} requests`;
      });
      lines.push(`| ${p} | ${cells.join(' | ')} |`);
    }
  }
  const mount = report.results.filter((r) => r.section === 'mount');
  if (mount.length > 0) {
    lines.push('', 'Mount:', '', '| step | tool | time | MB/s | peak RSS |', '|---|---|---:|---:|---:|');
    for (const r of mount) lines.push(`| ${r.phase} | ${r.tool} | ${r.ok ? fmtSec(r.seconds) : r.skipped ? 'n/a' : 'failed'} | ${fmtRate(r.mbPerSec)} | ${fmtRss(r.peakRssKiB)} |`);
  }
  return lines.join('\n') + '\n';
}
