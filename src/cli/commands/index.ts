import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../context.js';

export type Command = CommandModule<GlobalArgs, any>;

/**
 * Every `aegis` command, one module each, by name. A command line that names a
 * command loads only that module (see main.ts): loading all ten, with the
 * restore, mount, dump and diff code behind them, cost every command ~20 ms.
 */
export const COMMANDS: Record<string, () => Promise<Command>> = {
  init: async () => (await import('./init.js')).initCommand,
  backup: async () => (await import('./backup.js')).backupCommand,
  snapshots: async () => (await import('./snapshots.js')).snapshotsCommand,
  restore: async () => (await import('./restore.js')).restoreCommand,
  ls: async () => (await import('./ls.js')).lsCommand,
  dump: async () => (await import('./dump.js')).dumpCommand,
  diff: async () => (await import('./diff.js')).diffCommand,
  key: async () => (await import('./key.js')).keyCommand,
  mount: async () => (await import('./mount.js')).mountCommand,
  umount: async () => (await import('./umount.js')).umountCommand,
};

export const COMMAND_NAMES = Object.keys(COMMANDS);

/** The modules of the named commands (every command by default), in the order named. */
export function loadCommands(names: string[] = COMMAND_NAMES): Promise<Command[]> {
  return Promise.all(names.map((n) => COMMANDS[n]!()));
}
