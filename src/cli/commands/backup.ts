import type { CommandModule } from 'yargs';
import { backup } from '../../engine/backup.js';
import { ExcludeMatcher } from '../../engine/excludes.js';
import { EXIT, UserError } from '../../errors.js';
import { type CompressionMode } from '../../repo/compression.js';
import { type GlobalArgs, withRepository } from '../context.js';
import { displayPath, formatBytes, formatDuration } from '../format.js';
import { ProgressLine } from '../progress.js';
import { interruptSignal } from '../signals.js';

interface Args extends GlobalArgs {
  paths: string[];
  tag?: string[];
  host?: string;
  exclude?: string[];
  excludeFile?: string[];
  oneFileSystem?: boolean;
  dryRun?: boolean;
  compression?: CompressionMode;
  parent?: string;
}

export const backupCommand: CommandModule<GlobalArgs, Args> = {
  command: 'backup <paths..>',
  describe: 'back up files and directories into a new snapshot',
  builder: (y) =>
    y
      .positional('paths', { type: 'string', array: true, describe: 'what to back up' })
      .option('tag', { type: 'string', array: true, describe: 'tag the snapshot (repeatable)' })
      .option('host', { type: 'string', describe: 'host name to record (default: this machine)' })
      .option('exclude', { alias: 'e', type: 'string', array: true, describe: 'skip paths matching this glob (repeatable)' })
      .option('exclude-file', { type: 'string', array: true, describe: 'read exclude globs from a file, one per line' })
      .option('one-file-system', { alias: 'x', type: 'boolean', describe: 'do not cross file system boundaries' })
      .option('dry-run', { alias: 'n', type: 'boolean', describe: 'do everything except write to the repository' })
      .option('compression', { choices: ['off', 'auto', 'max'] as const, describe: 'compression (default: the repository default)' })
      .option('parent', { type: 'string', describe: 'snapshot to compare against (default: latest of this host and paths)' }) as never,
  handler: async (args) => {
    if (args.host !== undefined && args.host.trim() === '') throw new UserError('--host needs a host name');
    const excludes = [...(args.exclude ?? [])];
    for (const f of args.excludeFile ?? []) excludes.push(...ExcludeMatcher.fromFile(f));
    const signal = interruptSignal({ stopGrace: true });
    await withRepository(args, async (repo) => {
      const progress = new ProgressLine();
      const json = Boolean(args.json);
      const started = Date.now();
      const result = await backup(repo, {
        paths: args.paths,
        tags: args.tag,
        host: args.host,
        excludes,
        oneFileSystem: args.oneFileSystem,
        dryRun: args.dryRun,
        compression: args.compression,
        parent: args.parent,
        signal,
        onProgress: (p) => {
          if (json) {
            process.stdout.write(JSON.stringify({ message_type: 'status', files_done: p.filesDone, bytes_done: p.bytesDone, bytes_read: p.bytesRead, errors: p.errors, current_file: p.currentPath }) + '\n');
          } else if (!args.quiet) progress.update(p);
        },
        onWarning: (w) => {
          progress.done();
          if (json) process.stdout.write(JSON.stringify({ message_type: 'error', kind: w.kind, path: w.path, error: w.message }) + '\n');
          // One line per warning, whatever bytes the name holds (newlines, invalid UTF-8).
          else process.stderr.write(`${w.kind === 'changed' ? 'note' : 'warning'}: ${displayPath(w.rawPath)}: ${w.reason.replace(/[\u0000-\u001f\u007f]/g, ' ')}\n`);
        },
      });
      progress.done();
      const s = result.summary;
      if (json) {
        process.stdout.write(JSON.stringify({ message_type: 'summary', snapshot_id: result.snapshotId ?? null, dry_run: Boolean(args.dryRun), ...s }) + '\n');
      } else if (!args.quiet) {
        const secs = (Date.now() - started) / 1000;
        process.stdout.write(
          `Files: ${s.files_new} new, ${s.files_changed} changed, ${s.files_unmodified} unmodified\n` +
            `Added to the repository: ${formatBytes(s.data_added)} (${formatBytes(s.data_added_packed)} stored)\n` +
            `Processed ${s.total_files_processed} files, ${formatBytes(s.total_bytes_processed)} in ${formatDuration(secs)}\n` +
            (result.snapshotId ? `snapshot ${result.snapshotId.slice(0, 8)} saved\n` : 'dry run: nothing was written\n'),
        );
      }
      if (s.errors > 0) {
        if (!json) process.stderr.write(`aegis: backup is incomplete: ${s.errors} file(s) could not be read\n`);
        process.exitCode = EXIT.partial;
      }
    });
  },
};
