import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';

/**
 * `mkdir -p`, without Node's `{ recursive: true }`: in Node 20 (measured on
 * v20.20.2) that loops forever at full CPU where mkdir answers ENOENT although
 * the parent exists, as in /proc, and a process in that loop cannot even run
 * its SIGTERM handler. So `aegis init -r /proc/x`, `restore --target /proc/x`
 * or a state directory there hung until killed with SIGKILL. Here each
 * directory is tried at most twice: once, and again after its parent was made.
 * Returns whether `dir` itself was made here (false: it was there already).
 */
export function makeDirsSync(dir: string | Buffer, mode = 0o777): boolean {
  try {
    fs.mkdirSync(dir, { mode });
    return true;
  } catch (err) {
    if (!needsParent(err)) return false;
  }
  const parent = parentOf(dir);
  if (parent !== undefined) makeDirsSync(parent, mode);
  try {
    fs.mkdirSync(dir, { mode });
    return true;
  } catch (err) {
    return thereAlready(err);
  }
}

/** `makeDirsSync`, with promises. */
export async function makeDirs(dir: string, mode = 0o777): Promise<boolean> {
  try {
    await fsp.mkdir(dir, { mode });
    return true;
  } catch (err) {
    if (!needsParent(err)) return false;
  }
  const parent = parentOf(dir);
  if (parent !== undefined) await makeDirs(parent as string, mode);
  try {
    await fsp.mkdir(dir, { mode });
    return true;
  } catch (err) {
    return thereAlready(err);
  }
}

/** ENOENT: make the parent, then try once more. */
function needsParent(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT' || thereAlready(err);
}

/** EEXIST (made meanwhile, or there before) is fine; anything else, ENOENT after the parent was made included, is final. */
function thereAlready(err: unknown): false {
  if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
  throw err;
}

/** The parent directory, or undefined at the root. Buffers are names as bytes. */
function parentOf(dir: string | Buffer): string | Buffer | undefined {
  const s = typeof dir === 'string' ? dir : dir.toString('latin1');
  const parent = path.dirname(s);
  if (parent === s) return undefined;
  return typeof dir === 'string' ? parent : Buffer.from(parent, 'latin1');
}
