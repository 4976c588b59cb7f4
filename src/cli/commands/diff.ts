import type { CommandModule } from 'yargs';
import { type ChangeKind, diffTrees } from '../../engine/diff.js';
import { resolveSnapshot } from '../../engine/snapshots.js';
import { type GlobalArgs, withRepository } from '../context.js';
import { type FilterArgs, snapshotFilter, withSnapshotFilter } from '../filters.js';
import { displayPath } from '../format.js';

interface Args extends GlobalArgs, FilterArgs {
  first: string;
  second: string;
}

const NAMES: Record<ChangeKind, string> = { '+': 'added', '-': 'removed', M: 'modified', T: 'type_changed', U: 'metadata' };

export const diffCommand: CommandModule<GlobalArgs, Args> = {
  command: 'diff <first> <second>',
  describe: 'show what changed between two snapshots',
  builder: (y) =>
    withSnapshotFilter(y, true)
      .positional('first', { type: 'string', describe: 'older snapshot (ID, prefix or latest)' })
      .positional('second', { type: 'string', describe: 'newer snapshot' }) as never,
  handler: async (args) => {
    await withRepository(args, async (repo) => {
      const a = await resolveSnapshot(repo, args.first, snapshotFilter(args));
      const b = await resolveSnapshot(repo, args.second, snapshotFilter(args));
      const counts: Record<ChangeKind, number> = { '+': 0, '-': 0, M: 0, T: 0, U: 0 };
      for await (const c of diffTrees(repo, a.snapshot.tree, b.snapshot.tree)) {
        counts[c.kind]++;
        const p = c.path.toString('utf8') + (c.type === 'dir' ? '/' : '');
        if (args.json) process.stdout.write(JSON.stringify({ message_type: 'change', path: p, modifier: c.kind, change: NAMES[c.kind], type: c.type }) + '\n');
        else process.stdout.write(`${c.kind}    ${displayPath(c.path)}${c.type === 'dir' ? '/' : ''}\n`);
      }
      if (args.json) {
        process.stdout.write(JSON.stringify({ message_type: 'statistics', source_snapshot: a.id, target_snapshot: b.id, added: counts['+'], removed: counts['-'], modified: counts.M, type_changed: counts.T, metadata_changed: counts.U }) + '\n');
      } else if (!args.quiet) {
        process.stdout.write(`\n${counts['+']} added, ${counts['-']} removed, ${counts.M} modified, ${counts.T} type changed, ${counts.U} metadata only\n`);
      }
    });
  },
};
