import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeSyscalls } from '../src/native/syscalls.js';
import { SourceFile } from '../src/workers/source-file.js';

const openFds = (): number => fs.readdirSync('/proc/self/fd').length;

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
    // The addon opens a directory and fails to read it (EISDIR); Node's calls then word that.
    const sub = path.join(dir, 'a-directory');
    fs.mkdirSync(sub);
    expect(() => SourceFile.open(Buffer.from(sub), buf, 0)).toThrow(/EISDIR: illegal operation on a directory, read/);
    expect(openFds()).toBe(fds);
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
