import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { WrongPassphraseError } from '../crypto/keys.js';
import { EXIT, UserError } from '../errors.js';
import { DamagedBlobError } from '../repo/blob.js';
import { DamagedObjectError } from '../repo/objects.js';
import { DamagedPackError } from '../repo/pack.js';
import { StorageError } from '../storage/storage.js';
import { VERSION } from '../version.js';
import { COMMAND_NAMES, type Command, loadCommands } from './commands/index.js';
import { nativeSyscalls } from '../native/syscalls.js';

function globalOptions(y: Argv): Argv {
  return y
    .option('repo', { alias: 'r', type: 'string', describe: 'repository location (or AEGIS_REPOSITORY): a path, s3:…, r2:…' })
    .option('password-file', { alias: 'p', type: 'string', describe: 'read the passphrase from this file (or AEGIS_PASSWORD_FILE)' })
    .option('json', { type: 'boolean', describe: 'machine-readable JSON output' })
    .option('quiet', { alias: 'q', type: 'boolean', describe: 'print only errors' })
    .option('debug', { type: 'boolean', describe: 'show stack traces for errors' })
    .option('cache', { type: 'boolean', default: true, describe: 'use the local cache of a remote repository and of decoded snapshots (--no-cache to bypass both)' })
    .option('s3-region', { type: 'string', describe: 'S3 region (AWS)', group: 'S3 options:' })
    .option('s3-connections', { type: 'number', describe: 'parallel S3 connections', group: 'S3 options:' })
    .option('s3-storage-class', { type: 'string', describe: 'storage class for data packs', group: 'S3 options:' })
    .option('s3-sse', { type: 'string', describe: 'server-side encryption header value (AES256, aws:kms)', group: 'S3 options:' })
    .option('s3-sse-kms-key-id', { type: 'string', describe: 'KMS key for aws:kms server-side encryption', group: 'S3 options:' })
    .option('s3-timeout', { type: 'number', describe: 'S3 request timeout in seconds', group: 'S3 options:' })
    .option('s3-path-style', { type: 'boolean', describe: 'path-style addressing (default for custom endpoints; --no-s3-path-style for virtual hosts)', group: 'S3 options:' })
    .option('s3-create-bucket', { type: 'boolean', describe: 'let init create a missing bucket (default true)', group: 'S3 options:' })
    .option('s3-sign-payload', {
      type: 'string',
      choices: ['auto', 'always', 'never'],
      describe: "sign each upload's SHA-256 (auto: only over plain HTTP to another host)",
      group: 'S3 options:',
    });
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
    message = err.message;
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

/** The whole command line; `args` are the arguments after "aegis"; `commands` the command modules loaded. */
function buildParser(args: string[], commands: Command[]): Argv {
  let parser = globalOptions(yargs(args))
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
      process.stderr.write(`aegis: ${usageMessage(msg, args, commands)}\n`);
      process.exit(EXIT.fatal);
    });
  for (const c of commands) parser = parser.command(c);
  // `aegis help COMMAND` works like `aegis COMMAND --help`.
  parser = parser.command('help [command]', 'show help for a command', {}, async (argv) => {
    const cmd = argv.command as string | undefined;
    if (!cmd || cmd === 'help' || cmd === 'completion') parser.showHelp('log');
    else if (!COMMAND_NAMES.includes(cmd)) throw new UserError(`unknown command "${cmd}" ("aegis --help" lists them)`);
    // The same parser, so the help is exactly what `aegis COMMAND --help` prints.
    else await buildParser([cmd, '--help'], await loadCommands([cmd])).parseAsync();
  });
  return parser;
}

/** Global options that take a value: the word after them is not a command. */
const VALUE_OPTIONS = new Set(['-r', '--repo', '-p', '--password-file', '--s3-region', '--s3-connections', '--s3-storage-class', '--s3-sse', '--s3-sse-kms-key-id', '--s3-timeout']);

/** The first word of the command line that is neither an option nor an option's value: the command. */
function commandWord(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return args[i + 1];
    if (VALUE_OPTIONS.has(a)) i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

/**
 * Backup, restore and dump allocate and free blob-sized buffers (256 KiB to
 * 8 MiB) all the time. In their own mappings they leave RSS when freed; by
 * default glibc raises its threshold to the largest block freed and keeps them
 * in heaps that never shrink (docs/DECISIONS.md, "Memory"). The mount is left
 * out: its chunk cache holds blobs for long, and with the threshold its first
 * read of a large file was ~20% slower (page faults on every new buffer) for
 * no lower RSS after reading every file (docs/MOUNT.md, "Memory").
 */
function limitHeapGrowth(command: string | undefined): void {
  if (command === 'mount') return;
  nativeSyscalls()?.setMmapThreshold?.(256 * 1024);
}

/** How an unknown name from yargs was spelt on the command line, if it was an option. */
function optionSpelling(name: string, args: string[]): string | undefined {
  if (args.some((a) => a === `--${name}` || a.startsWith(`--${name}=`) || a === `--no-${name}`)) return `--${name}`;
  if (name.length === 1 && args.some((a) => /^-[^-]/.test(a) && a.slice(1).includes(name))) return `-${name}`;
  return undefined;
}

/**
 * yargs' usage errors as one line that names what was not understood: an
 * unknown option or command, a surplus argument, an invalid choice.
 */
function usageMessage(msg: string, args: string[], commands: Command[]): string {
  const text = msg.replace(/\s*\n\s*/g, ' ').trim();
  const cmd = commandWord(args);
  const known = cmd !== undefined && (COMMAND_NAMES.includes(cmd) || cmd === 'help' || cmd === 'completion');
  const helpHint = known ? `"aegis help ${cmd}"` : '"aegis --help"';
  const suggestion = /^Did you mean (.+)\?$/.exec(text);
  if (suggestion) return `unknown command${cmd ? ` "${cmd}"` : ''}; did you mean "${suggestion[1]}"?`;
  const unknown = /^Unknown arguments?: (.+)$/.exec(text);
  if (unknown) {
    const names = unknown[1]!.split(', ');
    if (cmd !== undefined && !known && names.includes(cmd)) return `unknown command "${cmd}" ("aegis --help" lists them)`;
    const options = names.map((n) => optionSpelling(n, args)).filter((o): o is string => o !== undefined);
    if (options.length) return `unknown option${options.length > 1 ? 's' : ''} ${options.join(', ')} (${helpHint} lists the options)`;
    return `unexpected argument${names.length > 1 ? 's' : ''} ${names.map((n) => `"${n}"`).join(', ')} (see ${helpHint})`;
  }
  const choice = /^Invalid values?: Argument: (\S+), Given: (.+?), Choices: (.+)$/.exec(text);
  if (choice) {
    const option = optionSpelling(choice[1]!, args);
    return `${option ? `invalid value ${choice[2]} for ${option}` : `invalid ${choice[1]} ${choice[2]}`}: choose ${choice[3]}`;
  }
  const missing = /^Missing required arguments?: (.+)$/.exec(text);
  if (missing) return `missing required option ${missing[1]!.split(', ').map((n) => `--${n}`).join(', ')} (see ${helpHint})`;
  if (/^Not enough non-option arguments/.test(text) && known) {
    const c = commands.find((x) => String(x.command).split(' ')[0] === cmd);
    if (c) return `missing argument: usage is "aegis ${String(c.command)}" (see ${helpHint})`;
  }
  return text;
}

async function main(): Promise<void> {
  // `aegis ls … | head` closes the pipe early: that is the reader's choice, not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  const debug = process.argv.includes('--debug');
  try {
    const args = hideBin(process.argv);
    // A known command word: only its module (a command's own --help shows only it
    // anyway). Anything else (no command, help, a typo to suggest a fix for): all.
    const word = commandWord(args);
    limitHeapGrowth(word);
    const commands = await loadCommands(word !== undefined && COMMAND_NAMES.includes(word) ? [word] : COMMAND_NAMES);
    await buildParser(args, commands).parseAsync();
  } catch (err) {
    process.exitCode = reportError(err, debug);
  }
}

await main();
