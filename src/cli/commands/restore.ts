import type { CommandModule } from 'yargs';
import { restore, type OverwritePolicy } from '../../engine/restore.js';
import { resolveSnapshot } from '../../engine/snapshots.js';
import { WorkerPool } from '../../workers/pool.js';
import { type GlobalArgs, withRepository } from '../context.js';
import { formatBytes } from '../format.js';
import { ProgressLine } from '../progress.js';
import { interruptSignal } from '../signals.js';
import { EXIT, UserError } from '../../errors.js';

interface Args extends GlobalArgs {
  snapshot: string;
  target: string;
  include?: string[];
  exclude?: string[];
  verify?: boolean;
  overwrite?: OverwritePolicy;
  host?: string;
  tag?: string[];
  path?: string[];
}

/** `ID` or `ID:SUBPATH`; the subpath's contents are restored directly into the target. */
export function splitSnapshotRef(ref: string): { id: string; subpath?: string } {
  const i = ref.indexOf(':');
  return i < 0 ? { id: ref } : { id: ref.slice(0, i), subpath: ref.slice(i + 1) || '/' };
}

export const restoreCommand: CommandModule<GlobalArgs, Args> = {
  command: 'restore <snapshot>',
  describe: 'restore a snapshot (or SNAPSHOT:SUBPATH) into a directory',
  builder: (y) =>
    y
      .positional('snapshot', { type: 'string', describe: 'snapshot ID, prefix or "latest", optionally :/path/inside' })
      .option('target', { alias: 't', type: 'string', demandOption: true, describe: 'directory to restore into' })
      .option('include', { alias: 'i', type: 'string', array: true, describe: 'restore only paths matching this glob' })
      .option('exclude', { alias: 'e', type: 'string', array: true, describe: 'skip paths matching this glob' })
      .option('verify', { type: 'boolean', describe: 're-read restored files and check them against the snapshot' })
      .option('overwrite', {
        choices: ['always', 'if-changed', 'never'] as const,
        default: 'if-changed' as const,
        describe: 'existing files: replace always, only if size/mtime differ (resumes a restore), or never',
      })
      .option('host', { type: 'string', describe: 'for "latest": newest snapshot of this host' })
      .option('tag', { type: 'string', array: true, describe: 'for "latest": newest snapshot with this tag' })
      .option('path', { type: 'string', array: true, describe: 'for "latest": newest snapshot of this path' }) as never,
  handler: async (args) => {
    // An empty target would resolve to the current directory.
    if (!args.target) throw new UserError('--target needs a directory to restore into');
    const signal = interruptSignal({ stopGrace: true });
    const { id, subpath } = splitSnapshotRef(args.snapshot);
    await withRepository(args, async (repo) => {
      const entry = await resolveSnapshot(repo, id, { host: args.host, tags: args.tag, paths: args.path });
      const pool = new WorkerPool({ keys: repo.keys, chunker: repo.config.chunker });
      // The threads load their modules while this one reads the index and walks the trees.
      pool.start();
      repo.opener = pool.blobOpener();
      const progress = new ProgressLine();
      try {
        const started = Date.now();
        const s = await restore(repo, entry.snapshot.tree, {
          target: args.target,
          subpath,
          include: args.include,
          exclude: args.exclude,
          verify: args.verify,
          overwrite: args.overwrite,
          signal,
          pool,
          // restic's field names for a restore's status lines.
          onProgress: (p) => {
            if (args.json) {
              process.stdout.write(
                JSON.stringify({
                  message_type: 'status',
                  seconds_elapsed: Math.round((Date.now() - started) / 1000),
                  percent_done: p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : 0,
                  total_files: p.filesTotal,
                  files_restored: p.filesDone,
                  total_bytes: p.bytesTotal,
                  bytes_restored: p.bytesDone,
                }) + '\n',
              );
            } else if (!args.quiet) progress.restore(p);
          },
          // One line per warning even for names with newlines or other control characters.
          onWarning: (m) => {
            progress.done();
            process.stderr.write(`warning: ${m.replace(/[\u0000-\u001f\u007f]/g, (c) => (c === '\n' ? '\\n' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`))}\n`);
          },
        });
        progress.done();
        if (args.json) process.stdout.write(JSON.stringify({ message_type: 'summary', snapshot_id: entry.id, ...s }) + '\n');
        else if (!args.quiet) {
          const secs = (Date.now() - started) / 1000;
          process.stdout.write(
            `restored ${s.files} files (${formatBytes(s.bytes)}), ${s.dirs} directories, ${s.symlinks} symlinks, ${s.hardlinks} hardlinks, ${s.special} special files` +
              (s.skipped ? `; ${s.skipped} already up to date` : '') +
              (s.verified ? `; ${s.verified} verified` : '') +
              ` in ${secs.toFixed(1)} s\n`,
          );
        }
        if (s.errors) {
          process.stderr.write(`aegis: restore is incomplete: ${s.errors} error(s)\n`);
          process.exitCode = EXIT.fatal;
        }
      } finally {
        progress.done();
        await pool.close();
      }
    });
  },
};
