import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { WrongPassphraseError } from '../crypto/keys.js';
import { EXIT, UserError } from '../errors.js';
import { DamagedBlobError } from '../repo/blob.js';
import { DamagedObjectError } from '../repo/objects.js';
import { DamagedPackError } from '../repo/pack.js';
import { StorageError } from '../storage/storage.js';
import { VERSION } from '../version.js';
import { commands } from './commands/index.js';

function globalOptions(y: Argv): Argv {
  return y
    .option('repo', { alias: 'r', type: 'string', describe: 'repository location (or AEGIS_REPOSITORY): a path, s3:…, r2:…' })
    .option('password-file', { alias: 'p', type: 'string', describe: 'read the passphrase from this file (or AEGIS_PASSWORD_FILE)' })
    .option('json', { type: 'boolean', describe: 'machine-readable JSON output' })
    .option('quiet', { alias: 'q', type: 'boolean', describe: 'print only errors' })
    .option('debug', { type: 'boolean', describe: 'show stack traces for errors' })
    .option('cache', { type: 'boolean', default: true, describe: 'use the local cache of a remote repository (--no-cache to bypass it)' })
    .option('s3-region', { type: 'string', describe: 'S3 region (AWS)', group: 'S3 options:' })
    .option('s3-connections', { type: 'number', describe: 'parallel S3 connections', group: 'S3 options:' })
    .option('s3-storage-class', { type: 'string', describe: 'storage class for data packs', group: 'S3 options:' })
    .option('s3-sse', { type: 'string', describe: 'server-side encryption header value (AES256, aws:kms)', group: 'S3 options:' })
    .option('s3-sse-kms-key-id', { type: 'string', describe: 'KMS key for aws:kms server-side encryption', group: 'S3 options:' })
    .option('s3-timeout', { type: 'number', describe: 'S3 request timeout in seconds', group: 'S3 options:' })
    .option('s3-path-style', { type: 'boolean', describe: 'path-style addressing (default for custom endpoints; --no-s3-path-style for virtual hosts)', group: 'S3 options:' })
    .option('s3-create-bucket', { type: 'boolean', describe: 'let init create a missing bucket (default true)', group: 'S3 options:' });
}

/** One line on stderr and the documented exit code; a stack trace only with --debug. */
export function reportError(err: unknown, debug: boolean): number {
  let code: number = EXIT.fatal;
  let message: string;
  if (err instanceof UserError) {
    code = err.exitCode;
    message = err.message;
  } else if (err instanceof WrongPassphraseError) {
    code = EXIT.wrongPassphrase;
    message = err.message;
  } else if (err instanceof DamagedBlobError || err instanceof DamagedObjectError || err instanceof DamagedPackError) {
    message = `${err.message} (run "aegis check" for a full report)`;
  } else if (err instanceof StorageError) {
    message = `storage error: ${err.message}`;
  } else if (err instanceof Error) {
    message = `internal error: ${err.message}${debug ? '' : ' (run with --debug for details)'}`;
  } else {
    message = `internal error: ${String(err)}`;
  }
  process.stderr.write(`aegis: ${message}\n`);
  if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return code;
}

async function main(): Promise<void> {
  // `aegis ls … | head` closes the pipe early: that is the reader's choice, not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  const debug = process.argv.includes('--debug');
  let parser = globalOptions(yargs(hideBin(process.argv)))
    .scriptName('aegis')
    .version(VERSION)
    .usage('$0 <command> [options]\n\nEncrypted, deduplicating backups you can mount.')
    .strict()
    .demandCommand(1, 'give a command; "aegis --help" lists them')
    .recommendCommands()
    .completion('completion', 'print a shell completion script (bash/zsh): aegis completion >> ~/.bashrc')
    .help('help')
    .alias('help', 'h')
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`aegis: ${msg}\n`);
      process.exit(EXIT.fatal);
    });
  for (const c of commands) parser = parser.command(c);
  // `aegis help COMMAND` works like `aegis COMMAND --help`.
  parser = parser.command('help [command]', 'show help for a command', {}, async (argv) => {
    const cmd = argv.command as string | undefined;
    if (cmd) await globalOptions(yargs([cmd, '--help'])).scriptName('aegis').command(commands.find((c) => String(c.command).split(' ')[0] === cmd) ?? commands[0]!).help().parseAsync();
    else parser.showHelp('log');
  });
  try {
    await parser.parseAsync();
  } catch (err) {
    process.exitCode = reportError(err, debug);
  }
}

await main();
