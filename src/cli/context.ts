import { UserError } from '../errors.js';
import { Repository } from '../repo/repository.js';
import { SnapshotMemoFile } from '../state/snapshot-memo.js';
import { stateDir } from '../state/state-dir.js';
import { openStorage } from '../storage/open.js';
import { type RetryEvent } from '../storage/retrying.js';
import { type Storage } from '../storage/storage.js';
import { readPassphrase } from './password.js';

/** Options every repository command accepts (see main.ts). */
export interface GlobalArgs {
  repo?: string;
  passwordFile?: string;
  json?: boolean;
  quiet?: boolean;
  debug?: boolean;
  /** False with --no-cache. */
  cache?: boolean;
  s3Region?: string;
  s3Connections?: number;
  s3StorageClass?: string;
  s3Sse?: string;
  s3SseKmsKeyId?: string;
  s3Timeout?: number;
  s3PathStyle?: boolean;
  s3CreateBucket?: boolean;
  s3SignPayload?: string;
}

export function repoLocation(args: GlobalArgs): string {
  const loc = args.repo ?? process.env.AEGIS_REPOSITORY;
  if (!loc) throw new UserError('no repository given: use -r/--repo or set AEGIS_REPOSITORY');
  return loc;
}

export async function storageFor(args: GlobalArgs): Promise<Storage> {
  const options: Record<string, unknown> = { noCache: args.cache === false };
  for (const k of ['s3Region', 's3Connections', 's3StorageClass', 's3Sse', 's3SseKmsKeyId', 's3Timeout', 's3PathStyle', 's3CreateBucket', 's3SignPayload'] as const) {
    if (args[k] !== undefined) options[k] = args[k];
  }
  options.onNotice = (msg: string) => {
    if (!args.quiet) process.stderr.write(`${msg}\n`);
  };
  // Someone at a terminal learns why nothing seems to happen (a wrong endpoint
  // retried 12 times took 61 s in silence); from the second failure of a call
  // on, since single transient failures are routine on object storage. Scripts
  // see only the final error.
  if (process.stderr.isTTY && !args.quiet) {
    options.onRetry = (e: RetryEvent) => {
      // Over a progress line, if one is shown (the next update draws it again).
      if (e.attempt >= 2) process.stderr.write(`\r\x1b[Kaegis: ${e.error.message}; retrying in ${(e.delayMs / 1000).toFixed(1)} s (attempt ${e.attempt + 1})\n`);
    };
  }
  return openStorage(repoLocation(args), options);
}

/** Open the repository named by the arguments, unlocking it with the user's passphrase. */
export async function openRepository(args: GlobalArgs): Promise<Repository> {
  const storage = await storageFor(args);
  try {
    if (!(await Repository.exists(storage))) return await Repository.open(storage, ''); // throws the right "missing" error
    const passphrase = await readPassphrase(args);
    const repo = await Repository.open(storage, passphrase);
    // --no-cache: every snapshot is read from the repository, as with the storage cache.
    if (args.cache !== false && SnapshotMemoFile.canName(repo.config.id)) repo.snapshotMemo = new SnapshotMemoFile(stateDir(), repo.config.id);
    return repo;
  } catch (err) {
    await storage.close().catch(() => {});
    throw err;
  }
}

/** Run `fn` with an open repository and close it afterwards. */
export async function withRepository<T>(args: GlobalArgs, fn: (repo: Repository) => Promise<T>): Promise<T> {
  const repo = await openRepository(args);
  try {
    return await fn(repo);
  } finally {
    await repo.close();
  }
}
