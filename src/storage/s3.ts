import fs, { promises as fsp } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type BucketLocationConstraint,
  type CompletedPart,
  type ServerSideEncryption,
  type StorageClass,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { type ByteRange, type ObjectInfo, type PutFileOptions, type PutOptions, type Staging, type Storage, StorageError } from './storage.js';
import { type S3Location } from './s3-location.js';

/**
 * The S3 backend: any S3-compatible service through @aws-sdk/client-s3.
 *
 * Plain option keys understood by openStorage() for s3: and r2: locations (the CLI
 * maps its --s3-* flags onto them; docs/S3.md, "Options"). Durations given as
 * numbers are seconds; strings may carry a unit ("500ms", "30s", "2m"). Sizes
 * given as numbers are bytes; strings may carry a unit ("16MiB").
 *
 *   s3Region            region (--s3-region). Amazon S3: else AWS_REGION / the profile's region;
 *                       custom endpoints: else AWS_REGION, else us-east-1; R2: always auto.
 *   s3Connections       sockets to the endpoint (--s3-connections), default 32.
 *   s3StorageClass      storage class of data packs, names under data/ (--s3-storage-class),
 *                       e.g. STANDARD_IA; every other object stays STANDARD.
 *   s3Sse               server-side encryption header (--s3-sse): AES256, aws:kms or aws:kms:dsse.
 *   s3SseKmsKeyId       KMS key ID for s3Sse aws:kms (--s3-sse-kms-key-id).
 *   s3Timeout           give up on a request silent for this long (--s3-timeout), default 60 s;
 *                       also the connect timeout.
 *   s3PathStyle         true: https://host/bucket/key (--s3-path-style); false: https://bucket.host/key
 *                       (--s3-virtual-host). Default path-style for custom endpoints and R2, virtual-host for AWS.
 *   s3CreateBucket      create a missing bucket on the first write, default true; onNotice is told.
 *   s3ListPageSize      keys per ListObjectsV2 page, 1–1000 (default 1000; tests use small pages).
 *   s3MultipartThreshold  objects at least this large are uploaded in parts, default 32 MiB.
 *   s3PartSize          part size of those uploads, default 16 MiB (S3 needs ≥ 5 MiB).
 *   s3SignPayload       auto (default), always or never (--s3-sign-payload): whether an upload's
 *                       SHA-256 goes into its signature; see payloadSigned() below.
 *   s3Credentials       explicit keys, for programs and tests only: the CLI leaves this unset so the
 *                       SDK's default chain applies (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 *                       AWS_SESSION_TOKEN, AWS_PROFILE and the shared credentials file, SSO, …).
 *   onNotice            receives one-line notices for the user, e.g. that a bucket was created.
 */
export interface S3Options {
  s3Region?: string;
  s3Connections?: number | string;
  s3StorageClass?: string;
  s3Sse?: string;
  s3SseKmsKeyId?: string;
  s3Timeout?: number | string;
  s3PathStyle?: boolean;
  s3CreateBucket?: boolean;
  s3ListPageSize?: number | string;
  s3MultipartThreshold?: number | string;
  s3PartSize?: number | string;
  s3SignPayload?: string;
  s3Credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  onNotice?: (message: string) => void;
}

/** S3Options resolved to numbers and defaults (open.ts does the resolving). */
export interface S3Config {
  location: S3Location;
  region?: string;
  pathStyle: boolean;
  connections: number;
  storageClass?: string;
  sse?: string;
  sseKmsKeyId?: string;
  timeoutMs: number;
  createBucket: boolean;
  listPageSize: number;
  multipartThreshold: number;
  partSize: number;
  /** Resolved from s3SignPayload by payloadSigned(). */
  signPayload: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  onNotice?: (message: string) => void;
}

export const S3_DEFAULTS = {
  connections: 32,
  timeoutMs: 60_000,
  listPageSize: 1000,
  /**
   * A default pack is 16 MiB plus at most one 8 MiB chunk, so below 32 MiB it goes up
   * in one PUT: one request (S3 bills per request and a multipart upload needs at
   * least three), atomic by nature, and cheap to repeat after a failure. Parallelism
   * comes from several packs in flight. Larger packs (a raised packSize) go up in
   * 16 MiB parts, four at a time, from the in-memory buffer.
   */
  multipartThreshold: 32 * 1024 * 1024,
  partSize: 16 * 1024 * 1024,
  partConcurrency: 4,
} as const;

const MIN_PART = 5 * 1024 * 1024;

/**
 * Sets the payload hash the signer uses instead of hashing the body itself:
 * the caller's SHA-256, or UNSIGNED-PAYLOAD.
 */
function withPayloadHash<C extends PutObjectCommand | UploadPartCommand>(command: C, hash: string | undefined): C {
  if (hash === undefined) return command;
  (command as PutObjectCommand).middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers['x-amz-content-sha256'] = hash;
      return next(args);
    },
    { step: 'build', name: 'aegisPayloadHash' },
  );
  return command;
}

/** What an upload sends: a buffer, or a staged file read as a stream or part by part. */
interface BodySource {
  size: number;
  whole(): Buffer | fs.ReadStream;
  part(offset: number, length: number): Promise<Buffer>;
  sha256?: string;
}

async function readPart(file: string, offset: number, length: number): Promise<Buffer> {
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    if (bytesRead !== length) throw new Error(`staged file ${file} is shorter than expected`);
    return buf;
  } finally {
    await fh.close();
  }
}

export class S3Storage implements Storage {
  readonly location: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private bucketReady: Promise<void> | undefined;
  /** Set once this client created the bucket. */
  createdBucket = false;

  constructor(private readonly config: S3Config) {
    const loc = config.location;
    this.location = loc.display;
    this.bucket = loc.bucket;
    this.prefix = loc.prefix;
    if (config.partSize < MIN_PART) throw new Error(`s3PartSize must be at least 5 MiB (S3 refuses smaller parts)`);
    if (config.listPageSize < 1 || config.listPageSize > 1000) throw new Error('s3ListPageSize must be between 1 and 1000');
    // We pin the SDK version, so its notice about future releases needing Node 22 is noise
    // printed on every run; silence it unless the user decided otherwise.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const agentOptions = { keepAlive: true, maxSockets: config.connections, maxFreeSockets: config.connections };
    const quiet = { debug() {}, info() {}, warn() {}, error() {} };
    this.client = new S3Client({
      region: config.region,
      endpoint: loc.endpoint,
      forcePathStyle: config.pathStyle,
      followRegionRedirects: loc.provider === 'aws',
      credentials: config.credentials,
      // Retries live in retrying.ts, where they are bounded and reported; one attempt here.
      maxAttempts: 1,
      // Plain Content-Length bodies: aws-chunked trailers break RGW and others, and every
      // byte is authenticated by the repository layer anyway.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // No "Expect: 100-continue" round trip before each pack.
      expectContinueHeader: false,
      logger: quiet,
      requestHandler: {
        httpAgent: new http.Agent(agentOptions),
        httpsAgent: new https.Agent(agentOptions),
        connectionTimeout: config.timeoutMs,
        socketTimeout: config.timeoutMs,
        socketAcquisitionWarningTimeout: 24 * 3600 * 1000,
        logger: quiet,
      },
    });
  }

  private key(name: string): string {
    if (name.includes('\0') || name.split('/').some((p) => p === '..' || p === '' || p === '.')) {
      throw new StorageError('permanent', name, `invalid object name: ${JSON.stringify(name)}`);
    }
    return this.prefix + name;
  }

  private where(): string {
    return `bucket "${this.bucket}" at ${this.config.location.endpoint ?? 'Amazon S3'}`;
  }

  // ---- put --------------------------------------------------------------------

  async put(name: string, data: Uint8Array, options: PutOptions = {}): Promise<void> {
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const source: BodySource = { size: body.length, whole: () => body, part: async (o, n) => body.subarray(o, o + n), sha256: options.sha256 };
    await this.withBucket(name, () => this.putOnce(name, source, options));
  }

  /**
   * A file's bytes go up as a stream (no copy in memory); when payloads are
   * signed, its SHA-256 (the caller's) signs it as the SDK would have for a buffer.
   */
  async putFile(name: string, file: string, options: PutFileOptions = {}): Promise<void> {
    let size: number;
    try {
      size = (await fsp.stat(file)).size;
    } catch (err) {
      throw new StorageError('permanent', name, `${name}: cannot read the staged file: ${(err as Error).message}`, { cause: err });
    }
    const source: BodySource = {
      size,
      whole: () => fs.createReadStream(file, { highWaterMark: 1024 * 1024 }),
      part: (offset, length) => readPart(file, offset, length),
      sha256: options.sha256,
    };
    await this.withBucket(name, () => this.putOnce(name, source, {}));
    await fsp.rm(file, { force: true });
  }

  /** Packs are assembled in memory and uploaded from there (see PackBuffer). */
  async staging(): Promise<Staging> {
    return { inMemory: true, sha256: this.config.signPayload };
  }

  /** Run a write; if the bucket is missing and we may create it, create it and write again. */
  private async withBucket(name: string, write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (err) {
      if (!(isNoSuchBucket(err) && this.config.createBucket)) throw this.mapError(err, 'write', name);
      await this.ensureBucket(name);
      try {
        await write();
      } catch (err2) {
        throw this.mapError(err2, 'write', name);
      }
    }
  }

  private writeParams(name: string): { StorageClass?: StorageClass; ServerSideEncryption?: ServerSideEncryption; SSEKMSKeyId?: string } {
    const p: { StorageClass?: StorageClass; ServerSideEncryption?: ServerSideEncryption; SSEKMSKeyId?: string } = {};
    if (this.config.storageClass && name.startsWith('data/')) p.StorageClass = this.config.storageClass as StorageClass;
    if (this.config.sse) p.ServerSideEncryption = this.config.sse as ServerSideEncryption;
    if (this.config.sseKmsKeyId) p.SSEKMSKeyId = this.config.sseKmsKeyId;
    return p;
  }

  private async putOnce(name: string, body: BodySource, options: PutOptions): Promise<void> {
    const key = this.key(name);
    if (body.size >= this.config.multipartThreshold) {
      await this.putMultipart(name, key, body, options);
      return;
    }
    const command = new PutObjectCommand({
      Bucket: this.bucket,
      Key: key,
      Body: body.whole(),
      ContentLength: body.size,
      ContentType: 'application/octet-stream',
      IfNoneMatch: options.ifNotExists ? '*' : undefined,
      ...this.writeParams(name),
    });
    withPayloadHash(command, this.payloadHash(body.sha256));
    await this.client.send(command);
  }

  /** What goes in x-amz-content-sha256; undefined lets the SDK hash the body. */
  private payloadHash(sha256: string | undefined): string | undefined {
    return this.config.signPayload ? sha256 : 'UNSIGNED-PAYLOAD';
  }

  /** Upload in parts, each read when its turn comes; abort the upload on any failure. */
  private async putMultipart(name: string, key: string, body: BodySource, options: PutOptions): Promise<void> {
    const created = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: 'application/octet-stream', ...this.writeParams(name) }),
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new StorageError('transient', name, `S3 returned no upload ID for ${name} in ${this.where()}`);
    try {
      const partSize = this.config.partSize;
      const count = Math.ceil(body.size / partSize);
      const parts: CompletedPart[] = new Array(count);
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < count) {
          const i = next++;
          const chunk = await body.part(i * partSize, Math.min(body.size, (i + 1) * partSize) - i * partSize);
          const res = await this.client.send(
            withPayloadHash(
              new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: i + 1, Body: chunk, ContentLength: chunk.length }),
              this.payloadHash(undefined),
            ),
          );
          parts[i] = { PartNumber: i + 1, ETag: res.ETag };
        }
      };
      const workers = Math.min(count, S3_DEFAULTS.partConcurrency, this.config.connections);
      await Promise.all(Array.from({ length: workers }, worker));
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
          IfNoneMatch: options.ifNotExists ? '*' : undefined,
        }),
      );
    } catch (err) {
      // Best effort: an upload left behind costs storage until a lifecycle rule removes it,
      // but never shows up as an object.
      this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })).catch(() => {});
      throw err;
    }
  }

  private ensureBucket(name: string): Promise<void> {
    this.bucketReady ??= (async () => {
      const loc = this.config.location;
      let constraint: string | undefined;
      if (loc.provider === 'aws') {
        const region = await this.client.config.region();
        if (region && region !== 'us-east-1') constraint = region;
      }
      try {
        await this.client.send(
          new CreateBucketCommand({
            Bucket: this.bucket,
            CreateBucketConfiguration: constraint ? { LocationConstraint: constraint as BucketLocationConstraint } : undefined,
          }),
        );
        this.createdBucket = true;
        const msg = `created bucket "${this.bucket}" at ${loc.endpoint ?? `Amazon S3 (${constraint ?? 'us-east-1'})`}`;
        if (this.config.onNotice) this.config.onNotice(msg);
        else process.stderr.write(`aegis: ${msg}\n`);
      } catch (err) {
        const code = errorCode(err);
        if (code === 'BucketAlreadyOwnedByYou') return; // another client of ours won the race
        if (code === 'BucketAlreadyExists') {
          throw new StorageError('permanent', name, `bucket "${this.bucket}" does not exist for these credentials and its name is taken by another account`, { cause: err });
        }
        throw this.mapError(err, 'create the bucket for', name);
      }
    })();
    this.bucketReady.catch(() => {
      this.bucketReady = undefined;
    });
    return this.bucketReady;
  }

  // ---- get --------------------------------------------------------------------

  async get(name: string, range?: ByteRange): Promise<Buffer> {
    const key = this.key(name);
    if (range && (range.offset < 0 || range.length < 0 || !Number.isInteger(range.offset) || !Number.isInteger(range.length))) {
      throw new StorageError('permanent', name, `invalid byte range ${range.offset}+${range.length} for ${name}`);
    }
    if (range && range.length === 0) {
      // S3 cannot express an empty range; check that the object exists and is long enough.
      const { size } = await this.stat(name);
      if (range.offset > size) throw shortRead(name, range, 0);
      return Buffer.alloc(0);
    }
    try {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Range: range ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined,
        }),
      );
      const declared = res.ContentLength;
      const body = await readBody(res.Body as AsyncIterable<Uint8Array> | undefined, declared, name, this.where());
      if (!range) return body;
      if (res.ContentRange) {
        // 206: the server may return less than asked when the range crosses the end.
        if (body.length < range.length) throw shortRead(name, range, body.length);
        return body.length === range.length ? body : body.subarray(0, range.length);
      }
      // A server that ignored Range sent the whole object.
      if (range.offset + range.length > body.length) throw shortRead(name, range, Math.max(0, body.length - range.offset));
      return body.subarray(range.offset, range.offset + range.length);
    } catch (err) {
      if (range && (statusOf(err) === 416 || errorCode(err) === 'InvalidRange')) throw shortRead(name, range, 0);
      throw this.mapError(err, 'read', name);
    }
  }

  // ---- stat / list / delete -----------------------------------------------------

  async stat(name: string): Promise<ObjectInfo> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(name) }));
      return { name, size: res.ContentLength ?? 0 };
    } catch (err) {
      throw this.mapError(err, 'stat', name);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    const full = this.prefix + prefix;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: full, ContinuationToken: token, MaxKeys: this.config.listPageSize }),
        );
      } catch (err) {
        throw this.mapError(err, 'list', prefix);
      }
      for (const obj of page.Contents ?? []) {
        if (!obj.Key || !obj.Key.startsWith(this.prefix)) continue;
        const name = obj.Key.slice(this.prefix.length);
        if (name === '' || name.endsWith('/')) continue; // "directory" placeholder objects made by other tools
        yield { name, size: obj.Size ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated && !token) {
        throw new StorageError('transient', prefix, `S3 listing of "${prefix}" in ${this.where()} was truncated without a continuation token`);
      }
    } while (token);
  }

  async delete(name: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(name) }));
    } catch (err) {
      const code = errorCode(err);
      if (code === 'NoSuchKey' || code === 'NoSuchBucket' || code === 'NotFound') return;
      throw this.mapError(err, 'delete', name);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  // ---- errors -------------------------------------------------------------------

  /** Map an SDK or network error to a StorageError with one clear line (never a credential). */
  mapError(err: unknown, op: string, name: string): StorageError {
    if (err instanceof StorageError) return err;
    const status = statusOf(err);
    const code = errorCode(err);
    const where = this.where();
    const what = `${op} ${name || '(all)'} in ${where}`;
    const detail = describe(err, status, code);
    const make = (kind: StorageError['kind'], message: string) => new StorageError(kind, name, message, { cause: err });

    if (code === 'NoSuchBucket') return make('permanent', `${where} does not exist (while trying to ${op} ${name || 'objects'})`);
    if (code === 'NoSuchKey' || code === 'NotFound' || (status === 404 && code !== 'NoSuchUpload')) {
      return make('not-found', `object not found: ${name} in ${where}`);
    }
    if (status === 412 || code === 'PreconditionFailed') return make('exists', `object already exists: ${name} in ${where}`);
    if (code === 'InvalidAccessKeyId') {
      return make('permanent', `S3 does not know this access key (${where}); check AWS_ACCESS_KEY_ID or AWS_PROFILE`);
    }
    if (code === 'SignatureDoesNotMatch') {
      return make('permanent', `S3 rejected the request signature (${where}); check AWS_SECRET_ACCESS_KEY for this access key`);
    }
    if (code === 'ExpiredToken' || code === 'TokenRefreshRequired' || code === 'InvalidToken') {
      return make('permanent', `the S3 session token has expired or is invalid (${where}); refresh AWS_SESSION_TOKEN or the profile's credentials`);
    }
    if (code === 'RequestTimeTooSkewed') return make('transient', `S3 says this computer's clock is off (${what}); retrying with corrected time`);
    if (code === 'AccessDenied' || code === 'AllAccessDisabled' || code === 'Forbidden' || status === 403) {
      return make('permanent', `access denied to ${where} (${op} ${name || 'objects'}); check the credentials and their permissions`);
    }
    if (isCredentialsError(err)) {
      return make('permanent', `no S3 credentials found for ${where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE`);
    }
    if (isRegionMissing(err)) {
      return make('permanent', `no AWS region for ${where}: set AWS_REGION or pass the s3Region option (--s3-region)`);
    }
    if (code === 'PermanentRedirect' || status === 301) {
      return make('permanent', `${where} is in another region; pass its region with --s3-region (s3Region)`);
    }
    if (isTransient(err, status, code)) return make('transient', `S3 ${what} failed: ${detail}`);
    return make('permanent', `S3 ${what} failed: ${detail}`);
  }
}

// ---- helpers ------------------------------------------------------------------

function shortRead(name: string, range: ByteRange, got: number): StorageError {
  return new StorageError('permanent', name, `short read of ${name}: wanted ${range.length} bytes at ${range.offset}, got ${got}`);
}

/** Read a response body whole, failing (transient) when it ends before its declared length. */
async function readBody(body: AsyncIterable<Uint8Array> | undefined, declared: number | undefined, name: string, where: string): Promise<Buffer> {
  if (!body) {
    if (!declared) return Buffer.alloc(0);
    throw new StorageError('transient', name, `S3 response for ${name} in ${where} had no body`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      chunks.push(b);
      total += b.length;
    }
  } catch (err) {
    const detail = describe(err, statusOf(err), errorCode(err));
    throw new StorageError('transient', name, `S3 read ${name} in ${where} broke off after ${total} of ${declared ?? '?'} bytes: ${detail}`, { cause: err });
  }
  if (declared !== undefined && total !== declared) {
    throw new StorageError('transient', name, `S3 read ${name} in ${where} was truncated: ${total} of ${declared} bytes`);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
}

function statusOf(err: unknown): number | undefined {
  const e = err as { $metadata?: { httpStatusCode?: number }; $response?: { statusCode?: number } };
  return e?.$metadata?.httpStatusCode ?? e?.$response?.statusCode;
}

function errorCode(err: unknown): string | undefined {
  const e = err as { Code?: string; name?: string; code?: string };
  if (!e || typeof e !== 'object') return undefined;
  // Service errors carry the S3 code as name (and Code); network errors carry code.
  return e.Code ?? (e.name && e.name !== 'Error' && e.name !== 'TypeError' ? e.name : undefined) ?? e.code;
}

function isNoSuchBucket(err: unknown): boolean {
  return errorCode(err) === 'NoSuchBucket';
}

function isCredentialsError(err: unknown): boolean {
  const e = err as { name?: string; message?: string };
  return e?.name === 'CredentialsProviderError' || /could not load credentials/i.test(e?.message ?? '');
}

function isRegionMissing(err: unknown): boolean {
  return /region is missing/i.test((err as Error)?.message ?? '');
}

const TRANSIENT_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'TooManyRequests',
  'TooManyRequestsException',
  'RequestThrottled',
  'RequestLimitExceeded',
  'ProvisionedThroughputExceededException',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'OperationAborted',
  'ConditionalRequestConflict',
  'NoSuchUpload',
  'IncompleteBody',
  'BadDigest',
  'XAmzContentSHA256Mismatch',
  'TimeoutError',
  'AbortError',
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
]);

function isTransient(err: unknown, status: number | undefined, code: string | undefined): boolean {
  if (status !== undefined && (status >= 500 || status === 429 || status === 408)) return true;
  if (code && TRANSIENT_CODES.has(code)) return true;
  const e = err as { code?: string; message?: string; $metadata?: unknown; $fault?: string };
  if (e?.code && TRANSIENT_CODES.has(e.code)) return true;
  if (/socket hang up|aborted|ECONNRESET|timed out|premature close|EPIPE/i.test(e?.message ?? '')) return true;
  // A response the SDK could not parse (an HTML error page from a proxy, a cut XML body).
  if (status === undefined && e?.$metadata !== undefined && e?.$fault === 'client' && /deserializ|parse|xml/i.test(e?.message ?? '')) return true;
  return false;
}

function describe(err: unknown, status: number | undefined, code: string | undefined): string {
  const e = err as { message?: string; code?: string };
  let msg = (e?.message ?? String(err)).split('\n')[0]!.trim();
  // The SDK's HTTP handler words its timeouts at length; say what happened.
  const idle = /timed out after (\d+) ms of inactivity/.exec(msg);
  if (idle) return `no response for ${(Number(idle[1]) / 1000).toFixed(1)} s (s3Timeout)`;
  const connect = /did not establish a connection with the server within the configured timeout of (\d+) ms/.exec(msg);
  if (connect) return `could not connect within ${(Number(connect[1]) / 1000).toFixed(1)} s (s3Timeout)`;
  if (/^(Unknown|UnknownError)$/.test(msg)) msg = '';
  // Network errors: the errno code (ECONNRESET) says more than the SDK's renaming (TimeoutError).
  let label = typeof e?.code === 'string' && /^E[A-Z_]+$/.test(e.code) ? e.code : code;
  if (label === 'Unknown' || (label && msg.includes(label))) label = undefined;
  const parts = [status ? String(status) : '', label ?? '', msg].filter(Boolean);
  return parts.join(' ') || 'unknown error';
}
