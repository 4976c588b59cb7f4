import path from 'node:path';
import type { CommandModule } from 'yargs';
import { autoUnmountHelpers, fusermountUnmount, isStale, mountAt, waitForHelpers } from '../../../mount/mounts.js';
import { UserError } from '../../errors.js';
import type { GlobalArgs } from '../context.js';

interface Args extends GlobalArgs {
  mountpoint: string;
  lazy?: boolean;
}

export const umountCommand: CommandModule<GlobalArgs, Args> = {
  command: 'umount <mountpoint>',
  describe: 'unmount a file system mounted by "aegis mount" (also clears one left by a killed process)',
  builder: (y) =>
    y
      .positional('mountpoint', { type: 'string', describe: 'where it is mounted' })
      .option('lazy', { alias: 'z', type: 'boolean', default: false, describe: 'detach now even if programs still use it' }) as never,
  handler: async (args) => {
    const mnt = path.resolve(args.mountpoint);
    const m = await mountAt(mnt);
    if (!m) throw new UserError(`${mnt} is not mounted`);
    if (m.fstype !== 'fuse' && !m.fstype.startsWith('fuse.')) throw new UserError(`${mnt} is a ${m.fstype} mount, not one made by aegis mount; refusing`);
    const stale = await isStale(mnt);
    const helpers = await autoUnmountHelpers(mnt);
    const r = await fusermountUnmount(mnt, Boolean(args.lazy) || stale);
    if (!r.ok) {
      if (/busy/i.test(r.message)) throw new UserError(`${mnt} is busy (a program has a file or directory open there); close it, or use --lazy`);
      throw new UserError(`unmounting ${mnt} failed: ${r.message || 'fusermount failed'}`);
    }
    // Return once the mount's process has let go, so that mounting here again right away is safe.
    await waitForHelpers(helpers, 5000);
    if (args.json) process.stdout.write(JSON.stringify({ message_type: 'unmounted', mountpoint: mnt, stale }) + '\n');
    else if (!args.quiet) process.stdout.write(`unmounted ${mnt}${stale ? ' (it was stale: its process had died)' : ''}\n`);
  },
};
