import { describe, expect, it } from 'vitest';
import { S3LocationError, parseS3Location, payloadSigned } from '../src/storage/s3-location.js';

describe('S3 locations', () => {
  it('parses custom endpoints, Amazon S3 and R2 locations', () => {
    const custom = parseS3Location('s3:http://127.0.0.1:9000/bucket/some/prefix');
    expect(custom).toMatchObject({ provider: 'custom', endpoint: 'http://127.0.0.1:9000', bucket: 'bucket', prefix: 'some/prefix/', defaultPathStyle: true });
    const aws = parseS3Location('s3:my-bucket');
    expect(aws).toMatchObject({ provider: 'aws', bucket: 'my-bucket', prefix: '', defaultPathStyle: false });
    expect(aws.endpoint).toBeUndefined();
    expect(parseS3Location('r2:0123456789ABCDEF0123456789abcdef/bkt/p')).toMatchObject({ provider: 'r2', endpoint: 'https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com', bucket: 'bkt', prefix: 'p/', region: 'auto' });
  });

  it('refuses credentials in the endpoint and relative prefixes', () => {
    expect(() => parseS3Location('s3:https://key:secret@host/bucket')).toThrow(S3LocationError);
    expect(() => parseS3Location('s3:https://host/bucket/a//b')).toThrow(/segment/);
    // The URL parser would make these "bucket/b" and "bucket/a"; they are refused as typed.
    expect(() => parseS3Location('s3:https://host/bucket/a/../b')).toThrow(/segment/);
    expect(() => parseS3Location('s3:https://host/bucket/a/%2E%2E/b')).toThrow(/segment/);
    expect(() => parseS3Location('s3:https://host/bucket/./a')).toThrow(/segment/);
    expect(parseS3Location('s3:https://host/bucket/a.b/..c').prefix).toBe('a.b/..c/');
    expect(() => parseS3Location('s3:my-bucket/./b')).toThrow(/segment/);
  });
});

describe('payload signing', () => {
  it('auto signs only plain HTTP to another host', () => {
    expect(payloadSigned('auto', 'http://192.0.2.7:9000')).toBe(true);
    expect(payloadSigned('auto', 'http://minio.internal:9000')).toBe(true);
    expect(payloadSigned('auto', 'https://192.0.2.7:9000')).toBe(false);
    expect(payloadSigned('auto', 'http://127.0.0.1:7480')).toBe(false);
    expect(payloadSigned('auto', 'http://localhost:7480')).toBe(false);
    expect(payloadSigned('auto', 'http://[::1]:7480')).toBe(false);
    expect(payloadSigned('auto', undefined)).toBe(false); // Amazon S3 is HTTPS
  });

  it('always and never override the endpoint', () => {
    expect(payloadSigned('always', 'https://host')).toBe(true);
    expect(payloadSigned('always', 'http://127.0.0.1:7480')).toBe(true);
    expect(payloadSigned('never', 'http://192.0.2.7:9000')).toBe(false);
  });
});
