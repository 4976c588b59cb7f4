/**
 * Running a command and measuring it: wall time and peak resident set size.
 *
 * Peak RSS comes from the kernel's rusage of the waited-for child (ru_maxrss),
 * read by GNU time (`/usr/bin/time -f %M`, Debian package `time`), else by a
 * three-line python3 wrapper around os.wait4, else it is reported as unknown.
 * ru_maxrss is the peak of the process itself (threads included), which is what
 * all three tools are: one process each.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface CommandSpec {
  cmd: string;
  args: string[];
  /** Added to (and overriding) the bench's own environment. */
  env?: Record<string, string>;
  cwd?: string;
}

export interface Measurement {
  ok: boolean;
  exitCode: number | null;
  signal: string | null;
  seconds: number;
  peakRssKiB: number | null;
  /** User plus system CPU time of the command and its children (null: not measured). */
  cpuSeconds: number | null;
  /** The last few KiB of each stream, for error reports. */
  stdout: string;
  stderr: string;
}

export type RssMethod = 'GNU time' | 'python3 os.wait4' | 'none';

const OUTPUT_TAIL = 64 * 1024;

const PY_WAIT4 = [
  'import os, sys',
  'pid = os.fork()',
  'if pid == 0:',
  '    try: os.execvp(sys.argv[2], sys.argv[2:])',
  '    finally: os._exit(127)',
  '_, status, ru = os.wait4(pid, 0)',
  'open(sys.argv[1], "w").write("%d %.2f %.2f\\n" % (ru.ru_maxrss, ru.ru_utime, ru.ru_stime))',
  'code = os.waitstatus_to_exitcode(status)',
  'sys.exit(code if code >= 0 else 128 - code)',
].join('\n');

let cachedMethod: RssMethod | undefined;

/** How peak RSS is measured on this machine (probed once). */
export function rssMethod(): RssMethod {
  if (cachedMethod) return cachedMethod;
  const gnu = spawnSync('/usr/bin/time', ['--version'], { encoding: 'utf8' });
  if (gnu.status === 0 && /GNU/.test(`${gnu.stdout}${gnu.stderr}`)) return (cachedMethod = 'GNU time');
  const py = spawnSync('python3', ['-c', 'import os; os.wait4; os.waitstatus_to_exitcode'], { encoding: 'utf8' });
  if (py.status === 0) return (cachedMethod = 'python3 os.wait4');
  return (cachedMethod = 'none');
}

/** Process groups of running commands, killed if the bench is interrupted. */
const running = new Set<number>();

export function killRunning(): void {
  for (const pgid of running) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

let scratchCounter = 0;

/** Run `spec` to completion, timing it and reading its peak RSS. Never throws for a failing command. */
export async function measure(spec: CommandSpec, timeoutMs = 4 * 3600_000): Promise<Measurement> {
  const method = rssMethod();
  const rssFile = path.join(os.tmpdir(), `aegis-bench-rss-${process.pid}-${++scratchCounter}`);
  let argv: string[];
  if (method === 'GNU time') argv = ['/usr/bin/time', '-f', '%M %U %S', '-o', rssFile, spec.cmd, ...spec.args];
  else if (method === 'python3 os.wait4') argv = ['python3', '-c', PY_WAIT4, rssFile, spec.cmd, ...spec.args];
  else argv = [spec.cmd, ...spec.args];

  const started = process.hrtime.bigint();
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: spec.cwd,
    env: { ...process.env, ...spec.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group, so a timeout or ^C can end the whole tree
  });
  if (child.pid !== undefined) running.add(child.pid);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout = (stdout + s).slice(-OUTPUT_TAIL)));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-OUTPUT_TAIL)));
  const timer = setTimeout(() => {
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    stderr += `\n[bench: killed after ${timeoutMs / 1000} s]`;
  }, timeoutMs);
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('error', (err) => {
      stderr += `\n[bench: ${err.message}]`;
      resolve({ code: null, signal: null });
    });
    child.on('close', (c, s) => resolve({ code: c, signal: s }));
  });
  clearTimeout(timer);
  if (child.pid !== undefined) running.delete(child.pid);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  let peakRssKiB: number | null = null;
  let cpuSeconds: number | null = null;
  if (method !== 'none') {
    try {
      // GNU time writes "Command exited with non-zero status N" before the figures.
      const lines = fs.readFileSync(rssFile, 'utf8').trim().split('\n');
      const [rss, user, sys] = lines[lines.length - 1]!.trim().split(/\s+/).map(Number);
      if (rss !== undefined && Number.isFinite(rss) && rss > 0) peakRssKiB = rss;
      if (user !== undefined && sys !== undefined && Number.isFinite(user) && Number.isFinite(sys)) cpuSeconds = user + sys;
    } catch {
      // the wrapper did not get that far
    }
    fs.rmSync(rssFile, { force: true });
  }
  return { ok: code === 0, exitCode: code, signal, seconds, peakRssKiB, cpuSeconds, stdout, stderr };
}

/** The last meaningful lines of a failed command's output, for a one-line note. */
export function failureNote(m: Measurement): string {
  const text = `${m.stderr}\n${m.stdout}`.trim().split('\n').filter((l) => l.trim() !== '');
  const tail = text.slice(-3).join(' | ').slice(0, 400);
  const how = m.signal ? `killed by ${m.signal}` : `exit ${m.exitCode}`;
  return tail ? `${how}: ${tail}` : how;
}

/** Bytes on disk of a directory tree, as `du -sb` counts them. */
export function diskUsage(dir: string): number {
  const r = spawnSync('du', ['-sb', dir], { encoding: 'utf8' });
  const n = Number((r.stdout ?? '').split(/\s/)[0]);
  if (r.status !== 0 || !Number.isFinite(n)) throw new Error(`du -sb ${dir} failed: ${r.stderr}`);
  return n;
}

/** Flush dirty pages so that one step's write-back is not billed to the next. */
export function syncDisks(): void {
  spawnSync('sync');
}

/** Drop the page cache (root only). Returns false when it could not. */
export function dropCaches(): boolean {
  syncDisks();
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

/**
 * Fault in `bytes` of memory and free it again, just before a timed command.
 *
 * Why: this VM hands memory the guest frees back to its host, and the first
 * touch of such a page costs a fault in the host. Measured here: 1 GiB written
 * into the page cache took 1.9 s the first time and 0.19 s right after, and a
 * restore (1 GiB of new page cache) took 3.1–3.9 s cold against 2.6–2.7 s
 * primed. Which pages are cold depends on what ran before, so without this the
 * order of the tools decides part of their times. Writing a tmpfs file and
 * deleting it makes the kernel hold those pages as free, warm, for the command
 * that follows. Every tool gets the same; `--no-prime` turns it off.
 */
export function primeMemory(bytes = 2 * 1024 ** 3): void {
  const file = path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), `aegis-bench-prime-${process.pid}`);
  const chunk = Buffer.alloc(64 * 1024 * 1024);
  try {
    const fd = fs.openSync(file, 'w');
    try {
      for (let done = 0; done < bytes; done += chunk.length) fs.writeSync(fd, chunk);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* no room: measure without */
  } finally {
    fs.rmSync(file, { force: true });
  }
}

/** Read every file under `dir` once, so that every tool starts from the same warm page cache. */
export async function warmPageCache(dir: string): Promise<void> {
  const buf = Buffer.allocUnsafe(4 << 20);
  const walk = async (d: string): Promise<void> => {
    for (const e of await fs.promises.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const fh = await fs.promises.open(p, 'r');
        try {
          while ((await fh.read(buf, 0, buf.length, null)).bytesRead > 0) {
            // discard
          }
        } finally {
          await fh.close();
        }
      }
    }
  };
  await walk(dir);
}
