import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CachedPackReads } from '../mount/cached-pack-reads.js';
import { type Repository } from '../src/repo/repository.js';

describe('mount: reads of cached pack bytes on the JavaScript thread', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-cached-reads-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'pack');
  const data = crypto.randomBytes(1 << 20);
  fs.writeFileSync(file, data);
  // On the disk, so that its pages can be dropped from the page cache below (dirty ones cannot).
  const fd = fs.openSync(file, 'r');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  const repo = { packFile: (id: string) => (id === 'local' ? file : undefined) } as unknown as Repository;

  it('serves cached bytes once the pack is open, and leaves everything else to the storage', async () => {
    const reads = new CachedPackReads(repo);
    fs.readFileSync(file); // in the page cache
    expect(reads.read('local', 100, 1000), 'the pack is opened in the background first').toBeUndefined();
    await reads.settled();
    expect(reads.read('local', 100, 1000)!.equals(data.subarray(100, 1100))).toBe(true);
    expect(reads.read('local', 0, data.length)!.equals(data)).toBe(true);
    expect(reads.stats).toEqual({ served: 2, passed: 1 });

    expect(reads.read('local', data.length - 10, 100), 'a short read (past the end)').toBeUndefined();
    expect(reads.read('remote', 0, 10), 'not a local file').toBeUndefined();

    // Drop the file's pages from the page cache: the read would wait for the disk, so it is not made here.
    execFileSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
    const resident = Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' }).trim());
    expect(resident, 'the page cache let go of the file (not so on tmpfs)').toBe(0);
    expect(reads.read('local', 512 * 1024, 4096)).toBeUndefined();
    fs.readFileSync(file);
    expect(reads.read('local', 512 * 1024, 4096)!.equals(data.subarray(512 * 1024, 512 * 1024 + 4096))).toBe(true);

    reads.close();
    expect(reads.read('local', 0, 10)).toBeUndefined();
  });
});
