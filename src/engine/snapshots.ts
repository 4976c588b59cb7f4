import { UserError } from '../errors.js';
import { type Repository } from '../repo/repository.js';
import { type SnapshotEntry } from '../snapshot/snapshot.js';

export interface SnapshotFilter {
  host?: string;
  tags?: string[];
  paths?: string[];
}

export function matchesFilter(e: SnapshotEntry, f: SnapshotFilter): boolean {
  const s = e.snapshot;
  if (f.host && s.hostname !== f.host) return false;
  // restic semantics: each --tag value is "a,b" (all of them); any of the values may match.
  if (f.tags?.length && !f.tags.some((t) => t.split(',').every((x) => s.tags.includes(x)))) return false;
  if (f.paths?.length && !f.paths.every((p) => s.paths.includes(p))) return false;
  return true;
}

/** The newest snapshot of the same host and set of paths: what a backup compares against. */
export async function findParent(repo: Repository, hostname: string, paths: string[]): Promise<SnapshotEntry | undefined> {
  const all = await repo.listSnapshots();
  const key = [...paths].sort().join('\0');
  for (let i = all.length - 1; i >= 0; i--) {
    const s = all[i]!.snapshot;
    if (s.hostname === hostname && [...s.paths].sort().join('\0') === key) return all[i];
  }
  return undefined;
}

/**
 * Resolve "latest", a full ID or a unique ID prefix. `latest` honours the filter
 * (newest snapshot of that host/tag/path).
 */
export async function resolveSnapshot(repo: Repository, ref: string, filter: SnapshotFilter = {}): Promise<SnapshotEntry> {
  const all = await repo.listSnapshots();
  if (ref === 'latest') {
    const matching = all.filter((e) => matchesFilter(e, filter));
    const last = matching[matching.length - 1];
    if (!last) throw new UserError('no snapshot found' + (Object.keys(filter).length ? ' matching the filter' : ''));
    return last;
  }
  if (!/^[0-9a-f]{1,64}$/.test(ref)) throw new UserError(`invalid snapshot ID "${ref}" (expected hex digits or "latest")`);
  const hits = all.filter((e) => e.id.startsWith(ref));
  if (hits.length === 0) throw new UserError(`no snapshot with ID ${ref}`);
  if (hits.length > 1) throw new UserError(`snapshot ID ${ref} is ambiguous (${hits.length} snapshots); give more characters`);
  return hits[0]!;
}
