import crypto from 'node:crypto';
import fs, { constants as fsc } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nativeSyscalls } from '../src/native/syscalls.js';
import { DIRECT_ALIGN, PackFile, PackWriteError, WriteBuffers, appendTo } from '../src/workers/pack-file.js';

/** Whether files in `dir` can be opened with O_DIRECT (ext4 can; tmpfs cannot). */
function directWorks(dir: string): boolean {
  const probe = path.join(dir, `probe-${crypto.randomBytes(4).toString('hex')}`);
  try {
    fs.closeSync(fs.openSync(probe, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_DIRECT, 0o600));
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { force: true });
  }
}

/** Pieces of awkward sizes, some larger than the write buffers, written as a pack is: sealed into `room`, trailer appended. */
async function writePack(file: string, buffers: WriteBuffers, direct: boolean): Promise<{ out: PackFile; expected: Buffer; length: number }> {
  const sizes = [1, 4095, 4096, 4097, 100_000, 70_000, 3 * 1024 * 1024 + 17, 13, 500_000, 1 << 20, 7];
  const out = new PackFile(file, buffers, direct, crypto.createHash('sha256'));
  const pieces: Buffer[] = [];
  for (const n of sizes) {
    const piece = crypto.randomBytes(n);
    pieces.push(piece);
    expect(out.length).toBe(pieces.slice(0, -1).reduce((a, b) => a + b.length, 0));
    // Ask for more room than is used, as a blob's upper bound would.
    const { buf, at } = await out.room(n + 40);
    piece.copy(buf, at);
    out.advance(n);
  }
  const trailer = crypto.randomBytes(333);
  pieces.push(trailer);
  await appendTo(out, trailer);
  const length = await out.finish();
  return { out, expected: Buffer.concat(pieces), length };
}

describe('staged pack files', () => {
  const onDisk = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-pack-file-'));
  const inMemory = fs.existsSync('/dev/shm') ? fs.mkdtempSync('/dev/shm/aegis-pack-file-') : onDisk;
  afterAll(() => {
    fs.rmSync(onDisk, { recursive: true, force: true });
    fs.rmSync(inMemory, { recursive: true, force: true });
  });

  it.each([
    ['direct where the filesystem allows', onDisk, true],
    ['through the page cache', onDisk, false],
    ['direct asked on tmpfs, which refuses it', inMemory, true],
  ])('hold exactly the bytes written, at their true length, with their SHA-256 (%s)', async (_what, dir, direct) => {
    const buffers = WriteBuffers.create(1 << 20);
    for (const round of [1, 2]) {
      // The second pack reuses the buffers the first one grew.
      const file = path.join(dir, `pack-${round}-${String(direct)}`);
      const { out, expected, length } = await writePack(file, buffers, direct);
      expect(length).toBe(expected.length);
      const got = fs.readFileSync(file);
      expect(got.length).toBe(expected.length);
      expect(got.equals(expected)).toBe(true);
      expect(out.sha256()).toBe(crypto.createHash('sha256').update(expected).digest('hex'));
      if (direct && nativeSyscalls()?.alignedBytes && directWorks(dir)) expect(out.wasDirect).toBe(true);
      else expect(out.wasDirect).toBe(false);
    }
    // Both buffers start on a block boundary (what O_DIRECT needs of memory) when the addon is there.
    if (nativeSyscalls()?.alignedBytes) expect(buffers.a.length % DIRECT_ALIGN).toBe(0);
  });

  it('a pack that cannot be created is a PackWriteError naming the file, direct or not', () => {
    for (const direct of [true, false]) {
      const file = path.join(onDisk, 'no-such-dir', 'pack');
      expect(() => new PackFile(file, WriteBuffers.create(4096), direct, undefined)).toThrow(PackWriteError);
      expect(() => new PackFile(file, WriteBuffers.create(4096), direct, undefined)).toThrow(/cannot write a new pack at .*no-such-dir.*ENOENT/);
    }
  });

  it('abort removes the file', async () => {
    const file = path.join(onDisk, 'aborted');
    const out = new PackFile(file, WriteBuffers.create(1 << 20), true, undefined);
    await appendTo(out, crypto.randomBytes(3 << 20));
    await out.abort();
    expect(fs.existsSync(file)).toBe(false);
  });
});
