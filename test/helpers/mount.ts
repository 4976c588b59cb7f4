import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type FsOperations, FuseSession, type KernelOptions } from '../../mount/fuse.js';
import { AEGIS, type Workspace } from './cli.js';

/** A running `aegis mount` child process. */
export interface MountProcess {
  child: ChildProcess;
  pid: number;
  mountpoint: string;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGINT and wait for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Start `aegis mount MOUNTPOINT …` in its own process group and wait for its
 * "mounted at" line (never a fixed sleep). Rejects if it exits first.
 */
export function startMount(ws: Workspace, mountpoint: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<MountProcess> {
  fs.mkdirSync(mountpoint, { recursive: true });
  const child = spawn(process.execPath, [AEGIS, '-r', ws.repo, 'mount', mountpoint, ...args], {
    env: { ...ws.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const mp: MountProcess = {
    child,
    pid: child.pid!,
    mountpoint,
    stdout: () => out,
    stderr: () => err,
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      return exited;
    },
  };
  return new Promise((resolve, reject) => {
    const onData = () => {
      if (/mounted at /.test(out)) {
        child.stdout!.off('data', onData);
        resolve(mp);
      }
    };
    child.stdout!.on('data', onData);
    void exited.then(({ code, signal }) => reject(new Error(`aegis mount exited (${code ?? signal}) before it was ready: ${err.trim()}`)));
  });
}

/** Run a program and collect its output (never throws on a non-zero exit). */
export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? (error as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Best-effort cleanup for afterAll: lazy unmount, whatever state the mount is in. */
export async function forceUnmount(mountpoint: string): Promise<void> {
  await run('fusermount', ['-u', '-z', mountpoint]);
}

/** Whether something is mounted at exactly this path. */
export function isMounted(mountpoint: string): boolean {
  const abs = path.resolve(mountpoint);
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === abs);
}

/** Poll until `check` returns true (or a value), with a deadline; no fixed sleeps in tests. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let delay = 20;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(250, delay * 2);
  }
}

/** The child processes of `pid` (e.g. the fusermount helper that auto-unmounts). */
export async function childPids(pid: number): Promise<number[]> {
  const r = await run('ps', ['-o', 'pid=', '--ppid', String(pid)]);
  return r.stdout
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
}

/** Local-time directory name of a snapshot, as the mount shows it. */
export function timeNameOf(iso: string): string {
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}-${p(d.getMinutes())}-${p(d.getSeconds())}`;
}

/** The errno code a call fails with, or undefined if it succeeds. */
export function errnoOf(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
}

/** A FUSE mount of a fake file system served by this process (mount/fuse.ts against the real binding). */
export interface InProcessMount {
  mnt: string;
  session: FuseSession;
  /** Unmount and remove the temporary directory. */
  close(): Promise<void>;
}

/**
 * Mount `ops` in a new temporary directory; any error a handler reports fails
 * the test. Its handlers run on this thread: touch the mount only through
 * promises and child processes (a synchronous call would deadlock).
 */
export async function mountInProcess(prefix: string, ops: FsOperations, opts: KernelOptions): Promise<InProcessMount> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), prefix));
  const mnt = path.join(dir, 'mnt');
  await fs.promises.mkdir(mnt);
  const session = await FuseSession.mount(mnt, ops, opts, (op, p, err) => {
    throw new Error(`unexpected error in ${op} ${p}: ${String(err)}`);
  });
  return {
    mnt,
    session,
    close: async () => {
      await session.unmount().catch(() => {});
      await forceUnmount(mnt);
      await fs.promises.rm(dir, { recursive: true, force: true });
    },
  };
}

/** statfs for a fake file system: nothing free, 255-byte names. */
export const FAKE_STATFS = { bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, fsid: 0, flag: 1, namemax: 255 };
