import { expect } from 'vitest';
import { spawn } from 'node:child_process';
import { AEGIS, type RunResult, runAegis } from './cli.js';

export interface RunOptions {
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Run as this user and group (the test runs as root, which can read anything). */
  uid?: number;
  gid?: number;
  input?: string | Buffer;
}

/** `aegis ARGS` with full control of the environment, working directory and user. */
export function aegis(args: string[], opts: RunOptions): Promise<RunResult> {
  return runAegis(args, opts.env, opts.input, { cwd: opts.cwd, uid: opts.uid, gid: opts.gid });
}

/** The documented shape of a user error: exactly one line on stderr, "aegis: …", no stack trace, the exit code. */
export function expectUserError(r: RunResult, code: number, pattern?: RegExp): string {
  const context = `exit ${r.code}, stderr:\n${r.stderr}`;
  expect(r.code, context).toBe(code);
  expect(r.stderr.endsWith('\n'), context).toBe(true);
  const lines = r.stderr.slice(0, -1).split('\n');
  expect(lines, context).toHaveLength(1);
  const line = lines[0]!;
  expect(line, context).toMatch(/^aegis: \S/);
  expect(line, context).not.toMatch(/internal error|Error:|\bat .*\.js:\d+/);
  if (pattern) expect(line, context).toMatch(pattern);
  return line;
}

export function lastJson(stdout: string): Record<string, any> {
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

/** An environment for `aegis` with no passphrase source at all (not even the caller's). */
export function withoutPassword(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  delete out.AEGIS_PASSWORD;
  delete out.AEGIS_PASSWORD_FILE;
  delete out.AEGIS_PASSWORD_COMMAND;
  return out;
}

/** Quote one word for /bin/sh. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Run `aegis ARGS` on a pseudo-terminal (util-linux `script`): each time the
 * output shows `expect`, type `send`. Resolves with the exit code and everything
 * the terminal displayed (stdout and stderr interleaved, as a user sees it).
 */
export function onTerminal(args: string[], env: NodeJS.ProcessEnv, steps: Array<{ expect: string; send: string }>): Promise<{ code: number | null; screen: string }> {
  return new Promise((resolve, reject) => {
    const command = [process.execPath, AEGIS, ...args].map(shellQuote).join(' ');
    const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    let from = 0;
    let step = 0;
    child.stdout.on('data', (d: Buffer) => {
      screen += d.toString('utf8');
      while (step < steps.length) {
        const at = screen.indexOf(steps[step]!.expect, from);
        if (at < 0) break;
        from = at + steps[step]!.expect.length;
        child.stdin.write(steps[step]!.send);
        step++;
      }
    });
    child.stderr.on('data', (d: Buffer) => (screen += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => {
      child.stdin.destroy();
      resolve({ code, screen });
    });
  });
}
