import type { CommandModule } from 'yargs';
import { type GlobalArgs, withRepository } from '../context.js';
import { localTime, table } from '../format.js';
import { readNewPassphrase } from '../password.js';
import { UserError } from '../../errors.js';

interface Args extends GlobalArgs {
  action: 'list' | 'add' | 'remove' | 'passwd';
  id?: string;
  newPasswordFile?: string;
}

export const keyCommand: CommandModule<GlobalArgs, Args> = {
  command: 'key <action> [id]',
  describe: 'manage passphrases: list, add, remove ID, passwd',
  builder: (y) =>
    y
      .positional('action', { choices: ['list', 'add', 'remove', 'passwd'] as const, describe: 'what to do' })
      .positional('id', { type: 'string', describe: 'key ID or prefix (remove)' })
      .option('new-password-file', { type: 'string', describe: 'read the new passphrase from this file' }) as never,
  handler: async (args) => {
    await withRepository(args, async (repo) => {
      switch (args.action) {
        case 'list': {
          const keys = await repo.listKeys();
          if (args.json) process.stdout.write(JSON.stringify(keys.map((k) => ({ ...k, short_id: k.id.slice(0, 8) })), null, 2) + '\n');
          else process.stdout.write(table([' ', 'ID', 'User', 'Host', 'Created'], keys.map((k) => [k.current ? '*' : '', k.id.slice(0, 8), k.username, k.hostname, localTime(k.created)])));
          break;
        }
        case 'add': {
          const id = await repo.addKey(await readNewPassphrase(args.newPasswordFile));
          if (!args.quiet) process.stdout.write(`added key ${id.slice(0, 8)}\n`);
          break;
        }
        case 'remove': {
          if (!args.id) throw new UserError('key remove needs the ID of the key to remove ("aegis key list" shows them)');
          const keys = await repo.listKeys();
          const matches = keys.filter((k) => k.id.startsWith(args.id!));
          if (matches.length === 1 && matches[0]!.current) {
            if (keys.length === 1) throw new UserError('refusing to remove the last key: the repository would be unreadable forever');
            throw new UserError('refusing to remove the key in use; open the repository with another passphrase to remove this one');
          }
          const id = await repo.removeKey(args.id);
          if (!args.quiet) process.stdout.write(`removed key ${id.slice(0, 8)}\n`);
          break;
        }
        case 'passwd': {
          // Add the new key before removing the old one: never a moment with no way in.
          const id = await repo.addKey(await readNewPassphrase(args.newPasswordFile));
          await repo.removeKey(repo.keyId);
          if (!args.quiet) process.stdout.write(`changed passphrase: key ${repo.keyId.slice(0, 8)} replaced by ${id.slice(0, 8)}\n`);
          break;
        }
      }
    });
  },
};
