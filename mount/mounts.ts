import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';

/**
 * The system's mount table and fusermount, without loading the FUSE binding (so
 * that `aegis umount` and the CLI's start-up never need the native module).
 */

function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, (err, _stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stderr: String(stderr ?? '').trim() || (err && typeof (err as { code?: unknown }).code === 'string' ? err.message : '') });
    });
  });
}

/** fusermount -u (with -z: lazily, even when busy). */
export async function fusermountUnmount(mountpoint: string, lazy: boolean): Promise<{ ok: boolean; message: string }> {
  const r = await run('fusermount', lazy ? ['-u', '-z', mountpoint] : ['-u', mountpoint]);
  return { ok: r.code === 0, message: r.stderr };
}

/** Decode a field of /proc/self/mountinfo (spaces and such are octal escapes). */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export interface MountInfo {
  mountpoint: string;
  fstype: string;
  source: string;
}

export async function listMounts(): Promise<MountInfo[]> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'latin1');
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [left, right] = line.split(' - ');
    const f = (left ?? '').split(' ');
    const r = (right ?? '').split(' ');
    if (f.length < 5) continue;
    out.push({ mountpoint: Buffer.from(unescapeMountField(f[4]!), 'latin1').toString('utf8'), fstype: r[0] ?? '', source: unescapeMountField(r[1] ?? '') });
  }
  return out;
}

/** The mount at exactly this path, if any (the last one wins, as in the kernel). */
export async function mountAt(mountpoint: string): Promise<MountInfo | undefined> {
  const abs = path.resolve(mountpoint);
  const all = await listMounts();
  for (let i = all.length - 1; i >= 0; i--) if (all[i]!.mountpoint === abs) return all[i];
  return undefined;
}

/**
 * Whether the FUSE mount at `mountpoint` has lost its process: every request then
 * fails with ENOTCONN ("Transport endpoint is not connected"). stat() of the
 * mountpoint itself can still succeed from the kernel's attribute cache, so this
 * looks up a name that is not there, which always reaches the file system.
 */
export async function isStale(mountpoint: string): Promise<boolean> {
  try {
    await fsp.lstat(path.join(mountpoint, '.aegis-liveness-probe'));
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOTCONN';
  }
}

/**
 * Detach a mount left behind by a FUSE process that died, so the mountpoint can
 * be used again; returns whether that was needed.
 */
export async function recoverStaleMount(mountpoint: string): Promise<boolean> {
  if (!(await isStale(mountpoint))) return false;
  const r = await fusermountUnmount(mountpoint, true);
  if (await isStale(mountpoint)) {
    throw new Error(`${mountpoint} is a stale FUSE mount and "fusermount -u -z" did not clear it${r.message ? `: ${r.message}` : ''}`);
  }
  return true;
}

/**
 * fusermount helpers that will unmount `mountpoint` when their FUSE process
 * ends (the `auto_unmount` option). fusermount unmounts by path, so a helper left
 * from an earlier mount can unmount a new mount made at the same place in the
 * moment between its process ending and itself acting.
 */
export async function autoUnmountHelpers(mountpoint: string): Promise<number[]> {
  const abs = path.resolve(mountpoint);
  const out: number[] = [];
  let entries: string[];
  try {
    entries = await fsp.readdir('/proc');
  } catch {
    return out;
  }
  await Promise.all(
    entries
      .filter((e) => /^\d+$/.test(e))
      .map(async (pid) => {
        try {
          const argv = (await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
          if (argv.length > 2 && /^fusermount3?$/.test(path.basename(argv[0]!)) && argv.some((a) => a.includes('auto_unmount')) && argv[argv.length - 1] === abs) out.push(Number(pid));
        } catch {
          /* gone meanwhile */
        }
      }),
  );
  return out;
}

/** Wait (up to `timeoutMs`) until those helpers have exited. */
export async function waitForHelpers(pids: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const alive = pids.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
    if (alive.length === 0) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}
