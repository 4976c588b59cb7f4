import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../context.js';
import { initCommand } from './init.js';
import { backupCommand } from './backup.js';
import { snapshotsCommand } from './snapshots.js';

/** Every `aegis` command, one module each. */
export const commands: CommandModule<GlobalArgs, any>[] = [initCommand, backupCommand, snapshotsCommand];
