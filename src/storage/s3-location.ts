/**
 * Parsing of S3 repository locations (docs/S3.md, "Locations"):
 *
 *   s3:https://HOST[:PORT]/BUCKET[/PREFIX]   any S3-compatible endpoint (MinIO, Wasabi, Ceph, …)
 *   s3:http://HOST[:PORT]/BUCKET[/PREFIX]    the same without TLS (loopback tests)
 *   s3:BUCKET[/PREFIX]   or  s3://BUCKET[/PREFIX]   Amazon S3; region from s3Region or the environment
 *   r2:ACCOUNT_ID/BUCKET[/PREFIX]            Cloudflare R2 (https://ACCOUNT_ID.r2.cloudflarestorage.com, region auto)
 *
 * A location never carries credentials: user:password@ in an endpoint is refused,
 * so that the location (printed, logged, hashed into the cache directory name)
 * can never leak a secret.
 */

import { UserError } from '../errors.js';

export type S3Provider = 'aws' | 'custom' | 'r2';

export interface S3Location {
  provider: S3Provider;
  /** Endpoint URL without a trailing slash (`https://host:port`), undefined for Amazon S3. */
  endpoint?: string;
  bucket: string;
  /** Key prefix of every object, '' or ending in '/'. */
  prefix: string;
  /** Region the location implies ('auto' for R2), undefined when it comes from options or the environment. */
  region?: string;
  /** Addressing used unless overridden: path-style for custom endpoints and R2, virtual-host for Amazon S3. */
  defaultPathStyle: boolean;
  /** The canonical location string, for `storage.location`. */
  display: string;
}

export function isS3Location(location: string): boolean {
  return /^(s3|r2):/i.test(location);
}

export class S3LocationError extends UserError {
  constructor(location: string, detail: string) {
    super(`invalid S3 location "${location}": ${detail}`);
    this.name = 'S3LocationError';
  }
}

const AWS_BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
// S3-compatible servers are more lenient (Ceph allows upper case and underscores with relaxed naming).
const CUSTOM_BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/;

export function parseS3Location(location: string): S3Location {
  const m = /^(s3|r2):(.*)$/is.exec(location);
  if (!m) throw new S3LocationError(location, 'expected s3:… or r2:…');
  const scheme = m[1]!.toLowerCase();
  const rest = m[2]!;
  if (scheme === 'r2') {
    const parts = rest.split('/');
    const account = parts.shift() ?? '';
    if (!/^[0-9a-f]{32}$/i.test(account)) {
      throw new S3LocationError(location, 'expected r2:ACCOUNT_ID/BUCKET[/PREFIX] with the 32-character Cloudflare account ID');
    }
    const { bucket, prefix } = bucketAndPrefix(location, parts, AWS_BUCKET);
    return {
      provider: 'r2',
      endpoint: `https://${account.toLowerCase()}.r2.cloudflarestorage.com`,
      bucket,
      prefix,
      region: 'auto',
      defaultPathStyle: true,
      display: `r2:${account.toLowerCase()}/${bucket}${prefix ? '/' + prefix.slice(0, -1) : ''}`,
    };
  }
  if (/^https?:\/\//i.test(rest)) {
    let url: URL;
    try {
      url = new URL(rest);
    } catch {
      throw new S3LocationError(location, 'the endpoint is not a valid URL');
    }
    if (url.username || url.password) {
      throw new S3LocationError(location, 'credentials do not belong in the location; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) instead');
    }
    if (url.search || url.hash) throw new S3LocationError(location, 'the endpoint must not have a query or fragment');
    // The URL parser resolves "a/../b" to "b": refuse such a path as typed, as the other forms do.
    const typedPath = rest.replace(/^https?:\/\/[^/]*/i, '');
    if (typedPath.split('/').some((seg) => seg === '.' || seg === '..' || /^(%2e|\.)(%2e|\.)?$/i.test(seg))) {
      throw new S3LocationError(location, 'the prefix has an empty, "." or ".." segment');
    }
    const parts = decodeURIComponent(url.pathname).split('/').slice(1);
    if (parts.length === 0 || parts[0] === '') {
      throw new S3LocationError(location, 'the bucket is missing (expected s3:https://HOST[:PORT]/BUCKET[/PREFIX])');
    }
    const { bucket, prefix } = bucketAndPrefix(location, parts, CUSTOM_BUCKET);
    const endpoint = `${url.protocol}//${url.host}`;
    return {
      provider: 'custom',
      endpoint,
      bucket,
      prefix,
      defaultPathStyle: true,
      display: `s3:${endpoint}/${bucket}${prefix ? '/' + prefix.slice(0, -1) : ''}`,
    };
  }
  // Amazon S3: s3:BUCKET[/PREFIX], also written s3://BUCKET[/PREFIX] as the aws CLI does.
  const path = rest.startsWith('//') ? rest.slice(2) : rest;
  if (path.includes('@')) {
    throw new S3LocationError(location, 'credentials do not belong in the location; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) instead');
  }
  if (path === '') throw new S3LocationError(location, 'the bucket is missing (expected s3:BUCKET[/PREFIX])');
  const { bucket, prefix } = bucketAndPrefix(location, path.split('/'), AWS_BUCKET);
  return {
    provider: 'aws',
    bucket,
    prefix,
    defaultPathStyle: false,
    display: `s3:${bucket}${prefix ? '/' + prefix.slice(0, -1) : ''}`,
  };
}

function bucketAndPrefix(location: string, parts: string[], bucketRule: RegExp): { bucket: string; prefix: string } {
  const bucket = parts[0] ?? '';
  if (!bucketRule.test(bucket)) {
    throw new S3LocationError(location, `"${bucket}" is not a valid bucket name (3-63 characters: lower-case letters, digits, dots and hyphens)`);
  }
  const rest = parts.slice(1);
  // Allow one trailing slash ("bucket/prefix/") but no empty or relative segments inside.
  if (rest.length > 0 && rest[rest.length - 1] === '') rest.pop();
  for (const seg of rest) {
    if (seg === '' || seg === '.' || seg === '..') throw new S3LocationError(location, 'the prefix has an empty, "." or ".." segment');
  }
  return { bucket, prefix: rest.length ? rest.join('/') + '/' : '' };
}

export const SIGN_PAYLOAD_MODES = ['auto', 'always', 'never'] as const;

/**
 * Whether uploads carry their SHA-256 in the request signature. It guards the
 * bytes on their way to the server; the server hashes every upload again to
 * check it, and the client hashes it first: two passes over every byte at
 * ~1.6 GB/s each on this machine kind, on the cores the backup needs.
 * `auto` signs only where that guard does something: plain HTTP to another
 * host. Over HTTPS, TLS already authenticates every byte in transit (minio-go,
 * restic's S3 client, makes the same choice); on loopback nothing is in
 * transit. Either way the repository authenticates every blob end to end
 * (AES-GCM, blob IDs recomputed on read), so a payload altered on the way is
 * found by `check` and never restored as data. (Here, beside the endpoint
 * parsing, rather than in s3.ts: open.ts resolves options without loading the
 * AWS SDK.)
 */
export function payloadSigned(mode: (typeof SIGN_PAYLOAD_MODES)[number], endpoint: string | undefined): boolean {
  if (mode !== 'auto') return mode === 'always';
  if (endpoint === undefined) return false; // Amazon S3: always HTTPS
  const url = new URL(endpoint);
  if (url.protocol === 'https:') return false;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return !(host === 'localhost' || host === '::1' || /^127\./.test(host));
}
