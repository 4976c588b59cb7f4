import crypto from 'node:crypto';
import { inject } from 'vitest';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

/**
 * Helpers for tests against the S3 server that test/setup/s3-server.ts starts (a
 * real Ceph RADOS gateway on 127.0.0.1). Importing this module is what tells the
 * global setup that a run needs the server.
 */
export interface S3TestServer {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3TestServer | null;
  }
}

export function s3Server(): S3TestServer {
  const server = inject('s3');
  if (!server) throw new Error('the S3 test server was not started for this run (test/setup/s3-server.ts)');
  return server;
}

/** Environment for a child process (the CLI) that talks to the test server. */
export function s3Env(server: S3TestServer = s3Server()): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_REGION: 'us-east-1',
    // Never wander off to the EC2 metadata service or a developer's own profile.
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_PROFILE: '',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    AWS_CONFIG_FILE: '/nonexistent',
  };
}

/** openStorage() options that carry the test credentials explicitly (no process environment needed). */
export function s3Options(server: S3TestServer = s3Server()): { s3Credentials: { accessKeyId: string; secretAccessKey: string }; s3Region: string } {
  return { s3Credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey }, s3Region: 'us-east-1' };
}

/** A bucket name nobody else uses: aegis-<label>-<random>. */
export function uniqueBucketName(label: string): string {
  const clean = label.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 30);
  return `aegis-${clean}-${crypto.randomBytes(5).toString('hex')}`;
}

/** Create a fresh bucket for one test file and return its name. */
export async function makeBucket(label: string, server: S3TestServer = s3Server()): Promise<string> {
  const bucket = uniqueBucketName(label);
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const client = new S3Client({
    endpoint: server.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return bucket;
}

/** s3:http://127.0.0.1:PORT/BUCKET[/PREFIX] (endpoint defaults to the test server; a fault proxy may stand in). */
export function s3Location(bucket: string, prefix = '', endpoint: string = s3Server().endpoint): string {
  return `s3:${endpoint}/${bucket}${prefix ? '/' + prefix.replace(/^\/+|\/+$/g, '') : ''}`;
}
