import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const AEGIS = path.join(ROOT, 'bin', 'aegis');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

export interface Workspace {
  dir: string;
  repo: string;
  env: NodeJS.ProcessEnv;
  /** Run `aegis` with this workspace's repository, passphrase and state directory. */
  run(args: string[], opts?: { env?: NodeJS.ProcessEnv; input?: string | Buffer }): Promise<RunResult>;
  /** Like run, but fails the test on a non-zero exit. */
  ok(args: string[], opts?: { env?: NodeJS.ProcessEnv }): Promise<RunResult>;
  spawn(args: string[], opts?: { env?: NodeJS.ProcessEnv }): ChildProcess;
  cleanup(): void;
}

/** `aegis ARGS` as a real process; `as` runs it in another directory or as another user. */
export function runAegis(
  args: string[],
  env: NodeJS.ProcessEnv,
  input?: string | Buffer,
  as: { cwd?: string; uid?: number; gid?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AEGIS, ...args], { env, cwd: as.cwd, uid: as.uid, gid: as.gid, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBytes.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), stdoutBytes });
    });
    child.stdin.end(input ?? '');
  });
}

/** A temp directory with a repository location, a passphrase and a private state DB. */
export function workspace(name: string): Workspace {
  const dir = mkdtempSync(path.join(os.tmpdir(), `aegis-${name}-`));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: dir,
    AEGIS_PASSWORD: 'correct horse battery staple',
    AEGIS_STATE_DIR: path.join(dir, 'state'),
    AEGIS_CACHE_DIR: path.join(dir, 'cache'),
  };
  const repo = path.join(dir, 'repo');
  const ws: Workspace = {
    dir,
    repo,
    env,
    run: (args, opts = {}) => runAegis(['-r', repo, ...args], { ...env, ...opts.env }, opts.input),
    ok: async (args, opts = {}) => {
      const r = await ws.run(args, opts);
      if (r.code !== 0) throw new Error(`aegis ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      return r;
    },
    spawn: (args, opts = {}) => spawn(process.execPath, [AEGIS, '-r', repo, ...args], { env: { ...env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] }),
    // AEGIS_KEEP_TEST_DIRS=1 keeps workspaces for a post-mortem.
    cleanup: () => (process.env.AEGIS_KEEP_TEST_DIRS ? undefined : rmSync(dir, { recursive: true, force: true })),
  };
  return ws;
}

/** Run a command and return stdout; rejects on a non-zero exit. */
export function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Resolve when a command running with --json prints a status line for which
 * `reached` holds (how tests stop a backup or restore part-way without sleeping);
 * reject if the command ends first.
 */
export function whenStatus(child: ChildProcess, reached: (status: Record<string, any>) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      try {
        const m = JSON.parse(line);
        if (m.message_type === 'status' && reached(m)) {
          rl.close();
          resolve();
        }
      } catch {
        /* not JSON */
      }
    });
    child.on('exit', () => reject(new Error('the command finished before the point the test waits for')));
  });
}

export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
}

/** The last line of a --json command's output (its summary), parsed. */
export function lastJson(stdout: string): Record<string, any> {
  return JSON.parse(stdout.trim().split('\n').pop()!);
}
