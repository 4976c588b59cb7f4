import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Workspace, runAegis, sh, workspace } from './helpers/cli.js';
import { forceUnmount, startMount } from './helpers/mount.js';
import { s3Env, s3Location, uniqueBucketName } from './helpers/s3.js';
import { deterministicBytes, makeGnarlyTree } from './helpers/tree.js';

/** `aegis mount` of a repository on the real S3 server: the same view as on a local disk. */
describe('mount of an S3 repository', () => {
  let ws: Workspace;
  let s3ws: Workspace;
  let src: string;
  let mnt: string;

  beforeAll(async () => {
    ws = workspace('s3mount');
    const location = s3Location(uniqueBucketName('mount'), 'repo');
    const env = { ...ws.env, ...s3Env() };
    s3ws = { ...ws, repo: location, env };
    src = path.join(ws.dir, 'source');
    makeGnarlyTree(src, { sparse: false });
    fs.writeFileSync(path.join(src, 'big.bin'), deterministicBytes('s3-mount-big', 24 * 1024 * 1024 + 7));
    for (const args of [['init'], ['backup', src]]) {
      const r = await runAegis(['-r', location, ...args], env);
      expect(r.code, r.stderr).toBe(0);
    }
    mnt = path.join(ws.dir, 'mnt');
  });

  afterAll(async () => {
    await forceUnmount(mnt);
    ws.cleanup();
  });

  it('shows every file with its metadata (rsync -aHn finds nothing to do) and reads large files byte for byte', async () => {
    const m = await startMount(s3ws, mnt);
    try {
      const inside = path.join(mnt, 'snapshots', 'latest', src);
      const rsync = await sh('rsync', ['-aHAXn', '--numeric-ids', '--itemize-changes', `${src}/`, `${inside}/`]);
      expect(rsync.stderr).toBe('');
      // Names that are not UTF-8 included (as on a local repository, test/mount.test.ts).
      expect(rsync.stdout).toBe('');
      expect((await sh('cmp', [path.join(src, 'big.bin'), path.join(inside, 'big.bin')])).code).toBe(0);
      expect((await sh('diff', ['-r', '--no-dereference', path.join(src, 'deep'), path.join(inside, 'deep')])).code).toBe(0);
    } finally {
      await m.stop();
    }
  });
});
