import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeSyscalls } from '../src/native/syscalls.js';
import { ChangedTypeError, SourceFile, prefetch } from '../src/workers/source-file.js';
import { waitFor } from './helpers/mount.js';

const openFds = (): number => fs.readdirSync('/proc/self/fd').length;
/** Bytes of `file` in the page cache (util-linux fincore). */
const resident = (file: string): number => Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' }).trim());

describe('SourceFile (a file read for a backup)', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-source-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('goes through the addon here (open, fstat and first read in one call)', () => {
    const native = nativeSyscalls();
    expect(native?.backupOpen).toBeTypeOf('function');
    expect(native?.backupStat).toBeTypeOf('function');
    expect(native?.closeFd).toBeTypeOf('function');
  });

  it('reads a file, gives its size, finds it unchanged and leaves no descriptor open', () => {
    const file = path.join(dir, 'plain');
    fs.writeFileSync(file, 'hello, backup');
    const fds = openFds();
    const buf = Buffer.alloc(64);
    const { file: f, read } = SourceFile.open(Buffer.from(file), buf, 3);
    expect(read).toBe(13);
    expect(buf.toString('utf8', 3, 16)).toBe('hello, backup');
    expect(f.size).toBe(13);
    expect(f.read(buf, 16)).toBe(0);
    expect(f.finish(13)).toBe(false);
    f.close();
    expect(openFds()).toBe(fds);
  });

  it('notices a file that grew, was rewritten in place or only had its mtime set while it was read', () => {
    const file = path.join(dir, 'moving');
    const buf = Buffer.alloc(64);
    const cases: Array<[string, () => void]> = [
      ['grew', () => fs.appendFileSync(file, 'more')],
      ['same size, new bytes', () => fs.writeFileSync(file, 'ABCDEFGH')],
      ['mtime set back', () => fs.utimesSync(file, new Date(2001, 1, 1), new Date(2001, 1, 1))],
    ];
    for (const [what, change] of cases) {
      fs.writeFileSync(file, 'abcdefgh');
      fs.utimesSync(file, new Date(2020, 1, 1), new Date(2020, 1, 1));
      const { file: f, read } = SourceFile.open(Buffer.from(file), buf, 0);
      expect(read, what).toBe(8);
      change();
      expect(f.finish(8), what).toBe(true);
    }
    // Fewer bytes read than fstat gives now: changed too.
    fs.writeFileSync(file, 'abcdefgh');
    const { file: f } = SourceFile.open(Buffer.from(file), buf, 0);
    expect(f.finish(5)).toBe(true);
  });

  it("fails with Node's wording where the addon fails, and leaves nothing open", () => {
    const fds = openFds();
    const buf = Buffer.alloc(64);
    expect(() => SourceFile.open(Buffer.from(path.join(dir, 'missing')), buf, 0)).toThrow(/ENOENT: no such file or directory, open/);
    expect(openFds()).toBe(fds);
  });

  it('refuses what was swapped in for a regular file since the scan: a symlink is not followed, a FIFO does not block', () => {
    const fds = openFds();
    const buf = Buffer.alloc(64);
    const secret = path.join(dir, 'secret');
    fs.writeFileSync(secret, 'not for this backup');
    const link = path.join(dir, 'was-a-file-now-a-link');
    fs.symlinkSync(secret, link);
    const dangling = path.join(dir, 'was-a-file-now-dangling');
    fs.symlinkSync(path.join(dir, 'nowhere'), dangling);
    const sub = path.join(dir, 'was-a-file-now-a-directory');
    fs.mkdirSync(sub);
    const fifo = path.join(dir, 'was-a-file-now-a-fifo');
    execFileSync('mkfifo', [fifo]);
    for (const [p, now] of [
      [link, 'a symbolic link'],
      [dangling, 'a symbolic link'],
      [sub, 'a directory'],
      [fifo, 'a named pipe'],
    ] as const) {
      buf.fill(0);
      let thrown: unknown;
      try {
        SourceFile.open(Buffer.from(p), buf, 0);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, p).toBeInstanceOf(ChangedTypeError);
      expect((thrown as ChangedTypeError).code).toBe('ECHANGEDTYPE');
      expect((thrown as Error).message).toBe(`is now ${now}, not the regular file the scan found; left out`);
      expect(buf.toString('utf8')).not.toContain('not for this backup');
    }
    expect(openFds()).toBe(fds);
  });

  it('says when a read had to wait for the disk, and prefetch brings files into the page cache without waiting', async (ctx) => {
    const files = Array.from({ length: 8 }, (_, i) => path.join(dir, `cold-${i}`));
    for (const [i, f] of files.entries()) {
      fs.writeFileSync(f, `cold file ${i}\n`.repeat(1000));
      const fd = fs.openSync(f, 'r');
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      execFileSync('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none']);
    }
    // On a filesystem whose pages cannot be dropped (tmpfs) nothing is ever cold.
    if (files.some((f) => resident(f) > 0)) ctx.skip();
    const buf = Buffer.alloc(64 * 1024);
    const first = SourceFile.open(Buffer.from(files[0]!), buf, 0);
    expect(first.cold).toBe(true);
    expect(buf.toString('utf8', 0, first.read)).toBe('cold file 0\n'.repeat(1000));
    first.file.close();
    const again = SourceFile.open(Buffer.from(files[0]!), buf, 0);
    expect(again.cold).toBe(false);
    again.file.close();
    prefetch(files.map((f) => Buffer.from(f)), 1);
    await waitFor('the prefetched files in the page cache', () => files.slice(1).every((f) => resident(f) > 0));
    const later = SourceFile.open(Buffer.from(files[7]!), buf, 0);
    expect(later.cold).toBe(false);
    later.file.close();
  });

  it('reads a name that is not UTF-8', () => {
    const name = Buffer.concat([Buffer.from(dir + '/'), Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x74])]);
    fs.writeFileSync(name, 'bytes');
    const buf = Buffer.alloc(16);
    const { file: f, read } = SourceFile.open(name, buf, 0);
    expect(buf.toString('utf8', 0, read)).toBe('bytes');
    expect(f.finish(5)).toBe(false);
  });
});
