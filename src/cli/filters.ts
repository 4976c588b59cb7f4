import type { Argv } from 'yargs';
import { type SnapshotFilter } from '../engine/snapshots.js';

/** The options that choose which snapshot "latest" means (restic's --host/--tag/--path). */
export interface FilterArgs {
  host?: string;
  tag?: string[];
  path?: string[];
}

export function withSnapshotFilter<T>(y: Argv<T>, pathOption = true): Argv<T & FilterArgs> {
  let out = y
    .option('host', { type: 'string', describe: 'for "latest": newest snapshot of this host' })
    .option('tag', { type: 'string', array: true, describe: 'for "latest": newest snapshot with this tag ("a,b" needs both)' });
  if (pathOption) out = out.option('path', { type: 'string', array: true, describe: 'for "latest": newest snapshot of this path' });
  return out as Argv<T & FilterArgs>;
}

/** `path` is a filter only where it is the option; in ls and dump it names a path inside the snapshot. */
export function snapshotFilter(args: { host?: string; tag?: string[]; path?: unknown }): SnapshotFilter {
  return { host: args.host, tags: args.tag, paths: Array.isArray(args.path) ? (args.path as string[]) : undefined };
}
