import type { CommandModule } from 'yargs';
import { Repository } from '../../repo/repository.js';
import { type CompressionMode } from '../../repo/compression.js';
import { type GlobalArgs, storageFor } from '../context.js';
import { readPassphrase } from '../password.js';
import { UserError } from '../../errors.js';

interface Args extends GlobalArgs {
  chunkMin?: number;
  chunkAvg?: number;
  chunkMax?: number;
  packSize?: number;
  compression?: CompressionMode;
}

export const initCommand: CommandModule<GlobalArgs, Args> = {
  command: 'init',
  describe: 'create a new encrypted repository',
  builder: (y) =>
    y
      .option('chunk-min', { type: 'number', describe: 'minimum chunk size in bytes (default 512 KiB)' })
      .option('chunk-avg', { type: 'number', describe: 'average chunk size in bytes, a power of two (default 1 MiB)' })
      .option('chunk-max', { type: 'number', describe: 'maximum chunk size in bytes (default 8 MiB)' })
      .option('pack-size', { type: 'number', describe: 'target pack size in MiB (default 16)' })
      .option('compression', { choices: ['off', 'auto', 'max'] as const, describe: 'default compression for backups' }) as never,
  handler: async (args) => {
    const storage = await storageFor(args);
    try {
      if (await Repository.exists(storage)) throw new UserError(`a repository already exists at ${storage.location}`);
      const passphrase = await readPassphrase(args, 'passphrase for the new repository: ', true);
      if (passphrase.length === 0) throw new UserError('refusing an empty passphrase');
      const chunker =
        args.chunkMin || args.chunkAvg || args.chunkMax
          ? { min: args.chunkMin ?? 512 * 1024, avg: args.chunkAvg ?? 1024 * 1024, max: args.chunkMax ?? 8 * 1024 * 1024 }
          : undefined;
      const repo = await Repository.init(storage, passphrase, {
        chunker,
        packSize: args.packSize ? Math.round(args.packSize * 1024 * 1024) : undefined,
        compression: args.compression,
      });
      if (args.json) process.stdout.write(JSON.stringify({ id: repo.config.id, location: storage.location }) + '\n');
      else if (!args.quiet) {
        process.stdout.write(`created repository ${repo.config.id.slice(0, 10)} at ${storage.location}\n`);
        process.stdout.write('Keep the passphrase safe: without it the data cannot be recovered by anyone.\n');
      }
    } finally {
      await storage.close();
    }
  },
};
