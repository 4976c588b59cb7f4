import path from 'node:path';
import { UserError } from '../errors.js';
import { CACHE_DEFAULTS, CachedStorage, cacheDirFor, defaultCacheRoot } from './cache.js';
import { CountingStorage, RequestCounter, counterFromEnv } from './counting.js';
import { FaultInjectingStorage, parseByteSize, parseDuration, parseFaults } from './fault-injection.js';
import { TreePackMemo } from './tree-memo.js';
import { LocalStorage } from './local.js';
import { RETRY_DEFAULTS, type RetryEvent, type RetryOptions, RetryingStorage } from './retrying.js';
// The S3 backend (and the AWS SDK, ~100 ms to load) is imported only for S3 locations.
import type { S3Config, S3Options } from './s3.js';
import { SIGN_PAYLOAD_MODES, isS3Location, parseS3Location, payloadSigned } from './s3-location.js';
import { type Storage } from './storage.js';

export { RequestCounter } from './counting.js';
export { CachedStorage, dropFromCache } from './cache.js';

/**
 * Options that affect how a location is opened, as plain keys (the CLI maps its
 * flags onto them). Backends ignore what does not concern them. Durations given as
 * numbers are seconds, strings may carry a unit ("250ms", "30s", "2m"); sizes given
 * as numbers are bytes, strings may carry a unit ("512MiB", "1GiB").
 *
 * S3 (s3: and r2: locations): the s3* keys and onNotice, documented on S3Options in s3.ts.
 *
 * Cache (remote locations only; docs/S3.md, "The local cache"):
 *   noCache           true: no local cache (--no-cache)
 *   cacheDir          cache root (default AEGIS_CACHE_DIR, $XDG_CACHE_HOME/aegis or ~/.cache/aegis);
 *                     this location's cache is <cacheDir>/<hash of the location>
 *   cacheMaxBytes     byte budget of cached pack ranges (default 1 GiB)
 *   cacheListingTtl   how long cached listings of keys/, index/, snapshots/ are trusted (default 60 s; 0 = never)
 *   cacheClock        clock in ms for listing freshness (tests)
 *
 * Retries (every backend): bounded by attempts and by time, with exponential backoff
 * and full jitter. Defaults: 12 attempts, 180 s, first pause up to 0.2 s, pauses ≤ 20 s.
 * The environment variable AEGIS_RETRY="attempts=4,time=10s,base=50ms,max=1s" sets
 * them for a whole process (end-to-end tests); explicit keys win.
 *   retryMaxAttempts, retryMaxTime, retryBaseDelay, retryMaxDelay, onRetry(event)
 *
 * Diagnostics:
 *   countRequests     a RequestCounter: every call that reaches the backend is counted on it
 *                     (for S3, one request each). AEGIS_COUNT_REQUESTS=/path/file.json does the
 *                     same for a whole process and writes the totals there as JSON when the
 *                     storage is closed and at exit.
 *   faults            fault-injection rules, as in AEGIS_FAULTS (which is used when this is unset);
 *                     see fault-injection.ts
 */
export interface OpenStorageOptions extends S3Options {
  noCache?: boolean;
  cacheDir?: string;
  cacheMaxBytes?: number | string;
  cacheListingTtl?: number | string;
  cacheClock?: () => number;
  retryMaxAttempts?: number | string;
  retryMaxTime?: number | string;
  retryBaseDelay?: number | string;
  retryMaxDelay?: number | string;
  onRetry?: (event: RetryEvent) => void;
  countRequests?: RequestCounter;
  faults?: string;
  /** Extra, backend-specific settings. */
  [key: string]: unknown;
}

/**
 * Turn a repository location into a Storage, wrapped in the decorators every
 * repository gets. From the inside out:
 *
 *   backend (local or S3)
 *   → counting        only with countRequests / AEGIS_COUNT_REQUESTS: counts what reaches the backend
 *   → fault injection only with faults / AEGIS_FAULTS: below the retries, so injected transient
 *                     faults are retried exactly like real ones
 *   → retrying        always (harmless for local files)
 *   → cache           remote backends, unless noCache; it keeps whole tree packs on disk and in memory
 *   → tree-pack memo  the others: whole tree packs in memory (tree-memo.ts)
 *
 * Locations: a local path (absolute or relative) or local:PATH;
 * s3:https://HOST[:PORT]/BUCKET[/PREFIX], s3:http://…, s3:BUCKET[/PREFIX] (Amazon S3),
 * r2:ACCOUNT_ID/BUCKET[/PREFIX] (Cloudflare R2). Bad locations and options throw a
 * UserError with one line.
 */
export async function openStorage(location: string, options: OpenStorageOptions = {}): Promise<Storage> {
  const env = process.env;
  let backend: Storage;
  let remote = false;
  if (isS3Location(location)) {
    const s3 = await import('./s3.js');
    backend = new s3.S3Storage(resolveS3(location, options, s3.S3_DEFAULTS));
    remote = true;
  } else if (location.startsWith('local:')) {
    backend = new LocalStorage(path.resolve(location.slice('local:'.length)));
  } else if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(location) && !location.startsWith('/')) {
    throw new UserError(`unknown repository location scheme in "${location}" (expected a path, local:PATH, s3:… or r2:…)`);
  } else {
    backend = new LocalStorage(path.resolve(location));
  }

  let storage: Storage = backend;
  const fromEnv = options.countRequests ? undefined : counterFromEnv(env);
  const counter = options.countRequests ?? fromEnv?.counter;
  if (counter) storage = new CountingStorage(storage, counter, fromEnv?.flush);

  const faults = options.faults ?? env.AEGIS_FAULTS;
  if (faults && faults.trim()) {
    const plan = parseFaults(faults);
    if (plan.rules.length > 0) {
      storage = new FaultInjectingStorage(storage, plan);
      const msg = `fault injection is on (${plan.rules.length} rule${plan.rules.length === 1 ? '' : 's'} from ${options.faults ? 'the faults option' : 'AEGIS_FAULTS'})`;
      if (options.onNotice) options.onNotice(msg);
      else if (!options.faults) process.stderr.write(`aegis: ${msg}\n`);
    }
  }

  storage = new RetryingStorage(storage, resolveRetry(options, env.AEGIS_RETRY));

  if (!remote || options.noCache) return new TreePackMemo(storage);
  const root = options.cacheDir ? path.resolve(options.cacheDir) : defaultCacheRoot(env);
  return new CachedStorage(storage, {
    dir: cacheDirFor(storage.location, root),
    maxBytes: option(options.cacheMaxBytes, 'cacheMaxBytes', parseByteSize) ?? CACHE_DEFAULTS.maxBytes,
    listingTtlMs: option(options.cacheListingTtl, 'cacheListingTtl', (v) => parseDuration(v)) ?? CACHE_DEFAULTS.listingTtlMs,
    now: options.cacheClock,
    onNotice: options.onNotice,
  });
}

function option<T>(value: unknown, key: string, parse: (v: number | string) => T): T | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'number' && typeof value !== 'string') throw new UserError(`option ${key}: expected a number or a string`);
  try {
    return parse(value);
  } catch (err) {
    throw new UserError(`option ${key}: ${(err as Error).message}`);
  }
}

function count(value: unknown, key: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return option(value, key, (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${JSON.stringify(v)} is not a whole number from ${min} to ${max}`);
    return n;
  });
}

function resolveS3(location: string, o: OpenStorageOptions, S3_DEFAULTS: typeof import("./s3.js").S3_DEFAULTS): S3Config {
  let loc;
  try {
    loc = parseS3Location(location);
  } catch (err) {
    throw new UserError((err as Error).message);
  }
  if (o.s3Sse !== undefined && !['AES256', 'aws:kms', 'aws:kms:dsse'].includes(o.s3Sse)) {
    throw new UserError(`option s3Sse: "${o.s3Sse}" is not one of AES256, aws:kms, aws:kms:dsse`);
  }
  if (o.s3SseKmsKeyId && !o.s3Sse?.startsWith('aws:kms')) throw new UserError('option s3SseKmsKeyId needs s3Sse aws:kms or aws:kms:dsse');
  if (o.s3StorageClass !== undefined && !/^[A-Z_]+$/.test(o.s3StorageClass)) {
    throw new UserError(`option s3StorageClass: "${o.s3StorageClass}" is not a storage class name (e.g. STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR)`);
  }
  const region = loc.region ?? o.s3Region ?? (loc.provider === 'custom' ? (process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1') : undefined);
  const partSize = option(o.s3PartSize, 's3PartSize', parseByteSize) ?? S3_DEFAULTS.partSize;
  if (partSize < 5 * 1024 * 1024) throw new UserError('option s3PartSize: S3 needs parts of at least 5 MiB');
  const signMode = (o.s3SignPayload ?? 'auto') as (typeof SIGN_PAYLOAD_MODES)[number];
  if (!(SIGN_PAYLOAD_MODES as readonly string[]).includes(signMode)) throw new UserError(`option s3SignPayload: "${signMode}" is not one of ${SIGN_PAYLOAD_MODES.join(', ')}`);
  return {
    location: loc,
    region,
    pathStyle: o.s3PathStyle ?? loc.defaultPathStyle,
    connections: count(o.s3Connections, 's3Connections', 1, 1024) ?? S3_DEFAULTS.connections,
    storageClass: o.s3StorageClass,
    sse: o.s3Sse,
    sseKmsKeyId: o.s3SseKmsKeyId,
    timeoutMs: option(o.s3Timeout, 's3Timeout', (v) => parseDuration(v)) ?? S3_DEFAULTS.timeoutMs,
    createBucket: o.s3CreateBucket ?? true,
    listPageSize: count(o.s3ListPageSize, 's3ListPageSize', 1, 1000) ?? S3_DEFAULTS.listPageSize,
    multipartThreshold: option(o.s3MultipartThreshold, 's3MultipartThreshold', parseByteSize) ?? S3_DEFAULTS.multipartThreshold,
    partSize,
    signPayload: payloadSigned(signMode, loc.endpoint),
    credentials: o.s3Credentials,
    onNotice: o.onNotice,
  };
}

function resolveRetry(o: OpenStorageOptions, envSpec: string | undefined): RetryOptions {
  const fromEnv: Record<string, string> = {};
  if (envSpec) {
    for (const part of envSpec.split(',')) {
      const [k, v] = part.split('=').map((s) => s.trim());
      if (!k) continue;
      if (!['attempts', 'time', 'base', 'max'].includes(k) || !v) {
        throw new UserError(`AEGIS_RETRY: "${part.trim()}" is not attempts=N, time=DURATION, base=DURATION or max=DURATION`);
      }
      fromEnv[k] = v;
    }
  }
  const ms = (v: unknown, key: string) => option(v, key, (x) => parseDuration(x));
  return {
    maxAttempts: count(o.retryMaxAttempts ?? fromEnv.attempts, 'retryMaxAttempts', 1) ?? RETRY_DEFAULTS.maxAttempts,
    maxElapsedMs: ms(o.retryMaxTime ?? fromEnv.time, 'retryMaxTime') ?? RETRY_DEFAULTS.maxElapsedMs,
    baseDelayMs: ms(o.retryBaseDelay ?? fromEnv.base, 'retryBaseDelay') ?? RETRY_DEFAULTS.baseDelayMs,
    maxDelayMs: ms(o.retryMaxDelay ?? fromEnv.max, 'retryMaxDelay') ?? RETRY_DEFAULTS.maxDelayMs,
    onRetry: o.onRetry,
  };
}
