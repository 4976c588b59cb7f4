/**
 * Checking a restore: every regular file of the source is present in the restored
 * tree with the same size and SHA-1, and nothing else is there.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface Manifest {
  /** Relative path → size and SHA-1 (hex). */
  files: Map<string, { size: number; sha1: string }>;
  bytes: number;
}

export interface VerifyResult {
  ok: boolean;
  files: number;
  bytes: number;
  /** At most a few human-readable differences. */
  problems: string[];
}

async function sha1File(file: string): Promise<string> {
  const h = createHash('sha1');
  const fh = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

function listRegularFiles(root: string): Array<{ rel: string; size: number }> {
  const out: Array<{ rel: string; size: number }> = [];
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? path.join(rel, e.name) : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) out.push({ rel: r, size: fs.statSync(path.join(root, r)).size });
      else out.push({ rel: r, size: -1 }); // symlinks and such: the dataset has none
    }
  };
  walk('');
  return out;
}

/** Run `fn` over `items` with at most `limit` at a time. */
async function forEachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(lanes);
}

export async function buildManifest(root: string): Promise<Manifest> {
  const files = new Map<string, { size: number; sha1: string }>();
  let bytes = 0;
  await forEachLimit(listRegularFiles(root), 8, async ({ rel, size }) => {
    files.set(rel, { size, sha1: await sha1File(path.join(root, rel)) });
    bytes += size;
  });
  return { files, bytes };
}

/**
 * The directory below `dir` that contains the file `marker` (tools lay restored paths
 * out differently: restic and aegis keep the absolute path, borg drops the leading slash).
 */
export function findMarkedRoot(dir: string, marker: string, maxDepth = 16): string | null {
  let level = [dir];
  for (let depth = 0; depth <= maxDepth && level.length > 0; depth++) {
    const next: string[] = [];
    for (const d of level) {
      if (fs.existsSync(path.join(d, marker))) return d;
      try {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) next.push(path.join(d, e.name));
      } catch {
        // unreadable: skip
      }
    }
    level = next;
  }
  return null;
}

export async function verifyTree(expected: Manifest, root: string): Promise<VerifyResult> {
  const problems: string[] = [];
  const found = listRegularFiles(root);
  const seen = new Set<string>();
  let bytes = 0;
  await forEachLimit(found, 8, async ({ rel, size }) => {
    seen.add(rel);
    const want = expected.files.get(rel);
    if (!want) {
      problems.push(`unexpected ${rel}`);
      return;
    }
    if (size !== want.size) {
      problems.push(`${rel}: ${size} bytes, expected ${want.size}`);
      return;
    }
    if ((await sha1File(path.join(root, rel))) !== want.sha1) problems.push(`${rel}: content differs`);
    bytes += size;
  });
  for (const rel of expected.files.keys()) if (!seen.has(rel)) problems.push(`missing ${rel}`);
  problems.sort();
  return { ok: problems.length === 0, files: seen.size, bytes, problems: problems.slice(0, 5).concat(problems.length > 5 ? [`… ${problems.length - 5} more`] : []) };
}
