import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { UserError } from '../errors.js';

export interface PasswordOptions {
  passwordFile?: string;
}

/**
 * Where a passphrase comes from, first match wins: --password-file,
 * AEGIS_PASSWORD_FILE, AEGIS_PASSWORD_COMMAND, AEGIS_PASSWORD, then a no-echo
 * prompt when stdin is a terminal.
 */
export async function readPassphrase(opts: PasswordOptions, prompt = 'passphrase: ', confirm = false): Promise<string> {
  // `--password-file` with nothing after it must not fall through to the next source.
  if (opts.passwordFile === '') throw new UserError('--password-file needs the name of a file');
  const file = opts.passwordFile ?? process.env.AEGIS_PASSWORD_FILE;
  if (file) {
    try {
      return stripNewline(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new UserError(`cannot read password file ${file}: ${describeFsError(err)}`);
    }
  }
  const command = process.env.AEGIS_PASSWORD_COMMAND;
  if (command) {
    try {
      return stripNewline(execFileSync('/bin/sh', ['-c', command], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
    } catch (err) {
      const status = (err as { status?: number | null }).status;
      throw new UserError(`AEGIS_PASSWORD_COMMAND failed${typeof status === 'number' ? ` (exit status ${status})` : ''}`);
    }
  }
  if (process.env.AEGIS_PASSWORD !== undefined) return process.env.AEGIS_PASSWORD;
  if (!process.stdin.isTTY) {
    throw new UserError('no passphrase: use --password-file, AEGIS_PASSWORD_FILE, AEGIS_PASSWORD_COMMAND or AEGIS_PASSWORD, or run on a terminal');
  }
  const first = await promptHidden(prompt);
  if (confirm) {
    const again = await promptHidden('enter it again: ');
    if (again !== first) throw new UserError('the passphrases do not match');
  }
  return first;
}

/** A second, new passphrase (key add / passwd): its own file option or a prompt. */
export async function readNewPassphrase(newPasswordFile: string | undefined): Promise<string> {
  let passphrase: string;
  if (newPasswordFile) passphrase = await readPassphrase({ passwordFile: newPasswordFile });
  else if (!process.stdin.isTTY) throw new UserError('no new passphrase: use --new-password-file, or run on a terminal');
  else passphrase = await readPassphrase({}, 'new passphrase: ', true);
  if (passphrase.length === 0) throw new UserError('refusing an empty passphrase');
  return passphrase;
}

/** "ENOENT: no such file or directory, open 'x'" → "no such file or directory". */
function describeFsError(err: unknown): string {
  const m = /^[A-Z0-9_]+: (.*?), \w+ '/s.exec((err as Error).message);
  return m ? m[1]! : (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

function stripNewline(s: string): string {
  return s.replace(/\r?\n$/, '');
}

function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    // Echo off before the prompt appears: nothing typed after the prompt is ever shown.
    stdin.setRawMode(true);
    process.stderr.write(prompt);
    stdin.resume();
    let value = '';
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          done();
          resolve(value);
          return;
        }
        if (ch === '\u0003') {
          done();
          reject(new UserError('interrupted', 130));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    const done = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}
