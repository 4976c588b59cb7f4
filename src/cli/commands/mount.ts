import path from 'node:path';
import type { CommandModule } from 'yargs';
import { resolveSnapshot } from '../../engine/snapshots.js';
import { UserError } from '../../errors.js';
import { type RepoLock } from '../../repo/lock.js';
import { WorkerPool } from '../../workers/pool.js';
import { type GlobalArgs, openRepository } from '../context.js';
import { formatBytes } from '../format.js';
import { interruptSignal } from '../signals.js';
import { tracePhase } from '../../../mount/trace.js';

interface Args extends GlobalArgs {
  mountpoint: string;
  snapshot?: string[];
  host?: string;
  tag?: string[];
  path?: string[];
  pathTemplate?: string[];
  cacheSize?: string;
  allowOther?: boolean;
  defaultPermissions?: boolean;
  foreground?: boolean;
  lock?: boolean;
}

/** "256M", "1G", "1.5GiB", "268435456" → bytes. */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(s);
  if (!m) throw new UserError(`invalid size "${s}" (examples: 256M, 1G, 512MiB)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * mult);
}

export const mountCommand: CommandModule<GlobalArgs, Args> = {
  command: 'mount <mountpoint>',
  describe: 'mount the repository as a read-only file system (stays in the foreground; Ctrl-C unmounts)',
  builder: (y) =>
    y
      .positional('mountpoint', { type: 'string', describe: 'an existing empty directory' })
      .option('snapshot', { type: 'string', array: true, describe: 'only this snapshot (ID, prefix or "latest"; repeatable)' })
      .option('host', { type: 'string', describe: 'only snapshots of this host' })
      .option('tag', { type: 'string', array: true, describe: 'only snapshots with this tag ("a,b" needs both; repeatable)' })
      .option('path', { type: 'string', array: true, describe: 'only snapshots that include this path' })
      .option('path-template', {
        type: 'string',
        array: true,
        describe: 'views besides snapshots/ (repeatable; default hosts/%h/%T tags/%t/%T ids/%i; %T time, %i short ID, %I ID, %h host, %u user, %t tag)',
      })
      .option('cache-size', { type: 'string', default: '256M', describe: 'memory for the chunk cache' })
      .option('allow-other', { type: 'boolean', default: false, describe: 'let other users access the mount (checks stored permissions)' })
      .option('default-permissions', { type: 'boolean', describe: 'kernel permission checks against stored owners and modes (default: on with --allow-other)' })
      .option('foreground', { type: 'boolean', default: true, describe: 'accepted for compatibility: aegis mount always stays in the foreground' })
      .option('lock', { type: 'boolean', default: true, describe: 'hold a shared lock while mounted (--no-lock for read-only repositories)' }) as never,
  handler: async (args) => {
    tracePhase('mount command');
    const signal = interruptSignal();
    const mountpoint = path.resolve(args.mountpoint);
    const cacheSize = parseSize(args.cacheSize ?? '256M');
    // Loaded here, not at start-up (other commands must not need the native FUSE
    // module), and while the passphrase is being checked.
    const mountModule = import('../../../mount/index.js');
    mountModule.catch(() => {});
    const repo = await openRepository(args);
    tracePhase('repository open');
    let lock: RepoLock | undefined;
    let pool: WorkerPool | undefined;
    try {
      const { createMount, checkTemplate, MIN_CACHE_SIZE } = await mountModule;
      tracePhase('mount module loaded');
      if (cacheSize < MIN_CACHE_SIZE) throw new UserError(`--cache-size must be at least ${formatBytes(MIN_CACHE_SIZE)}`);
      for (const t of args.pathTemplate ?? []) {
        try {
          checkTemplate(t);
        } catch (err) {
          throw new UserError((err as Error).message);
        }
      }
      // The shared lock is taken while the file system comes up; a conflict unmounts again.
      const locking = args.lock !== false ? repo.lock(false) : Promise.resolve(undefined);
      locking.catch(() => {});
      const filter = { host: args.host, tags: args.tag, paths: args.path };
      let ids: string[] | undefined;
      if (args.snapshot?.length) ids = await Promise.all(args.snapshot.map(async (ref) => (await resolveSnapshot(repo, ref, filter)).id));
      pool = new WorkerPool({ keys: repo.keys, chunker: repo.config.chunker });
      const m = createMount(repo, mountpoint, {
        filter: { ...filter, ids },
        templates: args.pathTemplate,
        cacheSize,
        allowOther: args.allowOther,
        defaultPermissions: args.defaultPermissions,
        pool,
        log: (msg) => process.stderr.write(`aegis mount: ${msg}\n`),
        notice: (msg) => process.stderr.write(`${msg}\n`),
      });
      try {
        lock = await locking;
      } catch (err) {
        await m.unmount();
        throw err;
      }
      const aborted = new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
      try {
        await m.ready;
      } catch (err) {
        throw new UserError((err as Error).message);
      }
      const n = m.stats().snapshots;
      if (args.json) process.stdout.write(JSON.stringify({ message_type: 'mounted', mountpoint, snapshots: n }) + '\n');
      else if (!args.quiet) {
        // One write: a program relaying this output (the demo) gets both lines together.
        process.stdout.write(
          `repository ${repo.storage.location} mounted at ${mountpoint} (${n} snapshot${n === 1 ? '' : 's'})\n` +
            `press Ctrl-C, or run "aegis umount ${mountpoint}" in another shell, to unmount\n`,
        );
      }
      await Promise.race([m.closed, aborted]);
      await m.unmount();
      if (args.json) process.stdout.write(JSON.stringify({ message_type: 'unmounted', mountpoint }) + '\n');
      else if (!args.quiet) process.stdout.write(`unmounted ${mountpoint}\n`);
    } finally {
      await pool?.close().catch(() => {});
      await lock?.release().catch(() => {});
      await repo.close().catch(() => {});
    }
    // A request still waiting on storage keeps the FUSE loop thread, and so the process, alive.
    process.exit(process.exitCode ?? 0);
  },
};
