import { promises as fsp } from 'node:fs';
import path from 'node:path';

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
