/**
 * The optional S3 section: back up to and restore from a local S3 server (the Ceph
 * RADOS gateway of scripts/s3-server.sh, on its own ports so that it never disturbs
 * a test server), straight to the gateway. For each tool with an S3
 * backend (aegis, restic): init, first backup, restore, then `snapshots` and `ls`
 * twice each from a second client that starts with empty caches — the second run
 * shows what its local cache saves — with the request count of every step, from
 * the gateway's own counters.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type PhaseSettings, restorePhase, skippedPhase, timedPhase } from './bench-phases.js';
import { warmPageCache } from './bench-measure.js';
import { GatewayRequestCounter } from './bench-s3-counters.js';
import { PROJECT_ROOT, type ToolAdapter, type ToolContext, prepareContext } from './bench-tools.js';
import type { PhaseResult } from './bench-types.js';
import type { Manifest } from './bench-verify.js';

export interface S3BenchOptions extends PhaseSettings {
  tools: ToolAdapter[];
  source: string;
  manifest: Manifest;
  workDir: string;
  runId: string;
}

export interface S3BenchOutcome {
  results: PhaseResult[];
  notes: string[];
}

const SERVER_SCRIPT = path.join(PROJECT_ROOT, 'scripts', 's3-server.sh');
// Ports of the bench's own gateway, away from the test suite's default 17480/16789.
const SERVER_ENV = { AEGIS_S3_PORT: '17590', AEGIS_S3_MON_PORT: '16890', AEGIS_S3_DIR: '/tmp/aegis-bench-s3' };

function server(command: 'start' | 'stop' | 'env' | 'requests'): { ok: boolean; output: string } {
  const r = spawnSync('bash', [SERVER_SCRIPT, command], { encoding: 'utf8', env: { ...process.env, ...SERVER_ENV }, timeout: 300_000 });
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

export async function benchS3(opts: S3BenchOptions): Promise<S3BenchOutcome> {
  const notes: string[] = [];
  const results: PhaseResult[] = [];
  if (!fs.existsSync(SERVER_SCRIPT)) {
    notes.push('S3 section skipped: scripts/s3-server.sh is not there yet');
    return { results, notes };
  }
  const tools = opts.tools.filter((t) => t.s3Location('http://x', 'x') !== null);
  if (tools.length === 0) {
    notes.push('S3 section skipped: none of the selected tools has an S3 backend');
    return { results, notes };
  }
  opts.log(`S3: starting the local gateway (port ${SERVER_ENV.AEGIS_S3_PORT}; about 15 s) …`);
  const started = server('start');
  if (!started.ok) {
    notes.push(`S3 section skipped: the local S3 server did not start: ${started.output.split('\n').slice(-3).join(' | ')}`);
    return { results, notes };
  }
  const startedByUs = !/already answering/.test(started.output);
  const vars = Object.fromEntries(
    server('env')
      .output.split('\n')
      .map((l) => l.split('='))
      .filter((kv) => kv.length >= 2)
      .map(([k, ...v]) => [k!, v.join('=')]),
  ) as Record<string, string>;
  const endpoint = vars.AEGIS_S3_ENDPOINT;
  if (!endpoint) {
    notes.push('S3 section skipped: scripts/s3-server.sh env printed no AEGIS_S3_ENDPOINT');
    if (startedByUs) server('stop');
    return { results, notes };
  }
  let counter: GatewayRequestCounter;
  try {
    counter = new GatewayRequestCounter(() => server('requests'));
  } catch (err) {
    notes.push(`S3 section skipped: ${(err as Error).message}`);
    if (startedByUs) server('stop');
    return { results, notes };
  }
  notes.push(`S3: Ceph RADOS gateway (in-memory OSD) at ${endpoint}, requests counted by the gateway's own counters`);
  const credentials = {
    AWS_ACCESS_KEY_ID: vars.AWS_ACCESS_KEY_ID ?? '',
    AWS_SECRET_ACCESS_KEY: vars.AWS_SECRET_ACCESS_KEY ?? '',
    AWS_REGION: vars.AWS_REGION ?? 'us-east-1',
    AWS_DEFAULT_REGION: vars.AWS_REGION ?? 'us-east-1',
  };

  try {
    for (const tool of tools) {
      const bucket = `bench-${tool.name}-${opts.runId}`.toLowerCase();
      const ctx = prepareContext(path.join(opts.workDir, 's3', tool.name), tool.s3Location(endpoint, bucket)!, credentials);
      const step = async (phase: string, spec: ReturnType<ToolAdapter['init']>, bytes?: number): Promise<PhaseResult> => {
        counter.take();
        const { result } = await timedPhase(spec, { section: 's3', tool: tool.name, phase, bytes }, opts);
        const c = counter.take();
        result.requests = c.total;
        result.requestsByMethod = c.byMethod;
        results.push(result);
        return result;
      };
      if (!(await step('init', tool.init(ctx))).ok) continue;
      // As before the local first backup: the source in the page cache, so that the two compare.
      if (!opts.cold) await warmPageCache(opts.source);
      if (!(await step('first backup', tool.backup(ctx, opts.source, 'first'), opts.manifest.bytes)).ok) continue;
      ctx.latest = 'first';
      counter.take();
      const restored = await restorePhase(tool, ctx, 's3', opts.manifest, opts);
      const c = counter.take();
      if (!restored.skipped) Object.assign(restored, { requests: c.total, requestsByMethod: c.byMethod });
      results.push(restored);
      // Each listing from another client that starts with empty caches, then once more.
      const client = (label: string): ToolContext => {
        const c = prepareContext(path.join(opts.workDir, 's3', `${tool.name}-client-${label}`), ctx.repo, credentials);
        c.latest = ctx.latest;
        return c;
      };
      const lister = client('snapshots');
      await step('snapshots (empty cache)', tool.snapshots(lister));
      await step('snapshots (again)', tool.snapshots(lister));
      if (tool.has('ls')) {
        const reader = client('ls');
        await step('ls latest (empty cache)', tool.ls(reader));
        await step('ls latest (again)', tool.ls(reader));
      } else results.push(skippedPhase('s3', tool.name, 'ls latest', `${tool.name} has no ls command yet`));
    }
  } finally {
    if (startedByUs && !opts.keep) {
      server('stop');
      opts.log('S3: gateway stopped');
    } else if (startedByUs) notes.push(`S3: gateway left running (--keep); stop it with: ${Object.entries(SERVER_ENV).map(([k, v]) => `${k}=${v}`).join(' ')} bash scripts/s3-server.sh stop`);
  }
  return { results, notes };
}
