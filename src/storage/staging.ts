import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';

/** Staged files older than this belong to a process that was killed: nobody will finish them. */
const STALE_MS = 24 * 3600 * 1000;

/** Remove the files in `dir` last written more than a day ago (best effort). */
export async function removeStaleFiles(dir: string, now = Date.now()): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const p = path.join(dir, n);
    try {
      const st = await fsp.lstat(p);
      if (now - st.mtimeMs > STALE_MS) await fsp.rm(p, { recursive: true, force: true });
    } catch {
      // Gone already, or not ours to remove: either way nothing to do.
    }
  }
}

/**
 * A private directory for files a remote backend uploads (see Storage.staging),
 * under the system's temporary directory. Directories of killed processes are
 * removed by a later run once a day old.
 */
export async function privateStagingDir(): Promise<string> {
  // One parent per user: the directory is private, so another user could not create in it.
  const parent = path.join(os.tmpdir(), `aegis-staging-${process.getuid?.() ?? 'user'}`);
  await fsp.mkdir(parent, { recursive: true, mode: 0o700 });
  await removeStaleFiles(parent);
  return fsp.mkdtemp(path.join(parent, `${process.pid}-${crypto.randomBytes(3).toString('hex')}-`));
}
