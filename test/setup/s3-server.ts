import type { TestProject } from 'vitest/node';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { S3TestServer } from '../helpers/s3.js';

/**
 * Global setup: a real S3 server (a single-node Ceph RADOS gateway, scripts/s3-server.sh)
 * for the test files that use test/helpers/s3.ts. Started once per run, only when a
 * selected test file needs it and nothing answers on the port yet; shared with other
 * runs on the same machine (the script counts its users), stopped at teardown when no
 * other run still uses it. Tests reach it with inject('s3').
 *
 * AEGIS_TEST_S3_ENDPOINT (+ AEGIS_TEST_S3_ACCESS_KEY, AEGIS_TEST_S3_SECRET_KEY) points
 * the tests at another S3 server instead (MinIO, a real bucket provider, …).
 */
const ROOT = path.resolve(import.meta.dirname, '../..');
const PORT = Number(process.env.AEGIS_S3_PORT ?? 17480);
const ACCESS_KEY = process.env.AEGIS_S3_ACCESS_KEY ?? 'aegis-test-access';
const SECRET_KEY = process.env.AEGIS_S3_SECRET_KEY ?? 'aegis-test-secret';

export default async function startS3(project: TestProject): Promise<(() => Promise<void>) | void> {
  const external = process.env.AEGIS_TEST_S3_ENDPOINT;
  if (external) {
    const server: S3TestServer = {
      endpoint: external.replace(/\/+$/, ''),
      accessKeyId: process.env.AEGIS_TEST_S3_ACCESS_KEY ?? '',
      secretAccessKey: process.env.AEGIS_TEST_S3_SECRET_KEY ?? '',
    };
    project.provide('s3', server);
    return;
  }
  if (!(await runUsesS3(project))) {
    project.provide('s3', null);
    return;
  }
  const env = { ...process.env, AEGIS_S3_USER: String(process.pid), AEGIS_S3_PORT: String(PORT) };
  // Ceph can lose a start-up race on a loaded machine; the script cleans up after a
  // failed start, so one more attempt is safe.
  let started: string;
  try {
    started = await script(['start'], env);
  } catch (err) {
    process.stderr.write(`s3 test server: first start failed, trying once more (${(err as Error).message.split('\n')[0]})\n`);
    started = await script(['start'], env);
  }
  process.stderr.write(started);
  project.provide('s3', { endpoint: `http://127.0.0.1:${PORT}`, accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY });
  return async () => {
    process.stderr.write(await script(['stop'], env));
  };
}

/** Does any test file of this run import test/helpers/s3? */
async function runUsesS3(project: TestProject): Promise<boolean> {
  if (process.env.AEGIS_TEST_S3 === '1') return true;
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern;
  const { testFiles } = await project.globTestFiles(filters);
  return testFiles.some((file) => {
    try {
      return /from\s+['"][./]*\/?helpers\/s3(\.js)?['"]/.test(readFileSync(file, 'utf8'));
    } catch {
      return false;
    }
  });
}

function script(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [path.join(ROOT, 'scripts/s3-server.sh'), ...args], { env, timeout: 240_000, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`scripts/s3-server.sh ${args.join(' ')} failed (${err.message.split('\n')[0]}):\n${stdout}${stderr}`));
      else resolve(stdout + stderr);
    });
  });
}
