import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../context.js';
import { initCommand } from './init.js';
import { backupCommand } from './backup.js';
import { snapshotsCommand } from './snapshots.js';
import { restoreCommand } from './restore.js';
import { lsCommand } from './ls.js';
import { dumpCommand } from './dump.js';
import { diffCommand } from './diff.js';
import { keyCommand } from './key.js';
import { mountCommand } from './mount.js';
import { umountCommand } from './umount.js';

/** Every `aegis` command, one module each. */
export const commands: CommandModule<GlobalArgs, any>[] = [initCommand, backupCommand, snapshotsCommand, restoreCommand, lsCommand, dumpCommand, diffCommand, keyCommand, mountCommand, umountCommand];
