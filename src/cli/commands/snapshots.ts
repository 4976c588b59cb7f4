import type { CommandModule } from 'yargs';
import { matchesFilter } from '../../engine/snapshots.js';
import { shortId } from '../../snapshot/snapshot.js';
import { type GlobalArgs, withRepository } from '../context.js';
import { formatBytes, localTime, table } from '../format.js';

interface Args extends GlobalArgs {
  host?: string;
  tag?: string[];
  path?: string[];
}

export const snapshotsCommand: CommandModule<GlobalArgs, Args> = {
  command: 'snapshots',
  describe: 'list snapshots, oldest first',
  builder: (y) =>
    y
      .option('host', { type: 'string', describe: 'only snapshots of this host' })
      .option('tag', { type: 'string', array: true, describe: 'only snapshots with this tag ("a,b" needs both)' })
      .option('path', { type: 'string', array: true, describe: 'only snapshots that include this path' }) as never,
  handler: async (args) => {
    await withRepository(args, async (repo) => {
      const list = (await repo.listSnapshots()).filter((e) => matchesFilter(e, { host: args.host, tags: args.tag, paths: args.path }));
      if (args.json) {
        const out = list.map(({ id, snapshot: s }) => ({
          id,
          short_id: shortId(id),
          time: s.time,
          hostname: s.hostname,
          username: s.username,
          uid: s.uid,
          gid: s.gid,
          paths: s.paths,
          tags: s.tags,
          tree: s.tree,
          ...(s.parent ? { parent: s.parent } : {}),
          ...(s.excludes ? { excludes: s.excludes } : {}),
          program_version: s.program_version,
          ...(s.has_xattrs ? { has_xattrs: true } : {}),
          ...(s.summary ? { summary: s.summary } : {}),
        }));
        process.stdout.write(JSON.stringify(out, null, 2) + '\n');
        return;
      }
      const rows = list.map(({ id, snapshot: s }) => [
        shortId(id),
        localTime(s.time),
        s.hostname,
        s.tags.join(','),
        s.paths.join(' '),
        s.summary ? formatBytes(s.summary.total_bytes_processed) : '',
      ]);
      process.stdout.write(table(['ID', 'Time', 'Host', 'Tags', 'Paths', 'Size'], rows));
      process.stdout.write(`${list.length} snapshot${list.length === 1 ? '' : 's'}\n`);
    });
  },
};
