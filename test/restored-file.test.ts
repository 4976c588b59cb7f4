import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type MasterKeys } from '../src/crypto/keys.js';
import { BlobType, blobId, sealBlobWithId } from '../src/repo/blob.js';
import { nativeSyscalls } from '../src/native/syscalls.js';
import { type RangeBlobWrites, type RestoreRoot, applyMetadata, decodeRangeWrites, encodeRangeWrites, writeRangeBlobs } from '../src/workers/restored-file.js';

const keys: MasterKeys = { encryption: crypto.randomBytes(32), id: crypto.randomBytes(32), chunker: crypto.randomBytes(32) };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-restored-file-'));
/** The target the requests' paths are relative to, as a restore opens it. */
const root: RestoreRoot = { fd: fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY), path: dir };
afterAll(() => {
  fs.closeSync(root.fd);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** One sealed blob of `plain` as a range read from a pack, with a whole-file write of it to `dest`. */
function range(plain: Buffer, dest: string, meta: { mode: number; size?: number; uid?: number; gid?: number }): { data: Buffer; blobs: RangeBlobWrites[] } {
  const id = blobId(keys, BlobType.Data, plain);
  const { sealed } = sealBlobWithId(keys, BlobType.Data, id, plain, 'auto');
  const rel = path.relative(dir, dest);
  const tmp = Buffer.from(path.join(path.dirname(rel), `.aegis-restore-test-${crypto.randomBytes(4).toString('hex')}`).replace(/^\.\//, ''));
  const finish = {
    dest: Buffer.from(rel),
    size: meta.size ?? plain.length,
    meta: { type: 'file' as const, uid: meta.uid ?? process.getuid!(), gid: meta.gid ?? process.getgid!(), mode: meta.mode, atimeNs: 1_700_000_000_123_456_789n, mtimeNs: 1_600_000_000_987_654_321n },
  };
  return { data: sealed, blobs: [{ id, offset: 0, length: sealed.length, writes: [{ tmp, offset: 0, finish }] }] };
}

describe('writing a restored file that is one blob', () => {
  it('writes content, size, mode bits and nanosecond times, under its final name', () => {
    const dest = path.join(dir, 'a');
    const plain = crypto.randomBytes(5000);
    const { data, blobs } = range(plain, dest, { mode: 0o4751 });
    expect(writeRangeBlobs(keys, 'p', data, blobs, root, true)).toEqual([{ writes: [null] }]);
    const st = fs.statSync(dest, { bigint: true });
    expect(fs.readFileSync(dest).equals(plain)).toBe(true);
    expect(Number(st.mode) & 0o7777).toBe(0o4751);
    // Exact with the addon; Node's utimes (seconds as a double) is off by well under a microsecond.
    const near = (got: bigint, want: bigint) => (nativeSyscalls() ? got === want : got - want < 1000n && want - got < 1000n);
    expect(near(st.mtimeNs, 1_600_000_000_987_654_321n), String(st.mtimeNs)).toBe(true);
    expect(near(st.atimeNs, 1_700_000_000_123_456_789n), String(st.atimeNs)).toBe(true);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('.aegis-restore-'))).toEqual([]);
  });

  it('replaces a file that is there already (through a temporary name and a rename)', () => {
    const dest = path.join(dir, 'existing');
    fs.writeFileSync(dest, 'an older, longer content');
    const { data, blobs } = range(Buffer.from('new'), dest, { mode: 0o640 });
    expect(writeRangeBlobs(keys, 'p', data, blobs, root, true)).toEqual([{ writes: [null] }]);
    expect(fs.readFileSync(dest, 'utf8')).toBe('new');
    expect(fs.statSync(dest).mode & 0o7777).toBe(0o640);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('.aegis-restore-'))).toEqual([]);
  });

  it('replaces a symlink at the destination instead of writing through it', () => {
    const outside = path.join(dir, 'outside');
    fs.writeFileSync(outside, 'not to be touched');
    const dest = path.join(dir, 'planted');
    fs.symlinkSync(outside, dest);
    const { data, blobs } = range(Buffer.from('restored'), dest, { mode: 0o644 });
    expect(writeRangeBlobs(keys, 'p', data, blobs, root, true)).toEqual([{ writes: [null] }]);
    expect(fs.lstatSync(dest).isFile()).toBe(true);
    expect(fs.readFileSync(dest, 'utf8')).toBe('restored');
    expect(fs.readFileSync(outside, 'utf8')).toBe('not to be touched');
  });

  it('gives modes the umask would narrow, and (as root) another owner', () => {
    const cases = [
      { name: 'wide', mode: 0o666 },
      { name: 'none', mode: 0 },
      { name: 'setgid', mode: 0o2775 },
      ...(process.getuid?.() === 0 ? [{ name: 'other', mode: 0o6750, uid: 1234, gid: 5678 }] : []),
    ];
    for (const c of cases) {
      const dest = path.join(dir, c.name);
      const { data, blobs } = range(Buffer.from(c.name), dest, c);
      expect(writeRangeBlobs(keys, 'p', data, blobs, root, true)).toEqual([{ writes: [null] }]);
      const st = fs.statSync(dest);
      expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([c.mode, c.uid ?? process.getuid!(), c.gid ?? process.getgid!()]);
      expect(fs.readFileSync(dest, 'utf8')).toBe(c.name);
    }
  });

  it('leaves an all-zero blob as a hole of the full size', () => {
    const dest = path.join(dir, 'zeros');
    const { data, blobs } = range(Buffer.alloc(1 << 20), dest, { mode: 0o644 });
    expect(writeRangeBlobs(keys, 'p', data, blobs, root, true)).toEqual([{ writes: [null] }]);
    const st = fs.statSync(dest);
    expect(st.size).toBe(1 << 20);
    expect(st.blocks).toBe(0);
  });

  it('reports a failure in Node\'s words', () => {
    const dest = path.join(dir, 'sub');
    fs.mkdirSync(dest);
    fs.writeFileSync(path.join(dest, 'x'), '');
    // Renaming a file onto a non-empty directory fails.
    const { data, blobs } = range(Buffer.from('hello'), dest, { mode: 0o644 });
    const [r] = writeRangeBlobs(keys, 'p', data, blobs, root, true);
    // With the addon, this also shows it removed its own temporary file: Node's exclusive create of the same name succeeded.
    expect(r!.writes![0]!.message).toMatch(/^EISDIR: illegal operation on a directory, rename '.*\.aegis-restore-test-[0-9a-f]+' -> '.*sub'$/);
  });

  it('files of one request in several directories, back and forth, each land in its own', () => {
    for (const d of ['d1', 'd2']) fs.mkdirSync(path.join(dir, d));
    const names = ['d1/a', 'd1/b', 'd2/c', 'd1/d', 'e'];
    const parts = names.map((n) => range(Buffer.from(n), path.join(dir, n), { mode: 0o640 }));
    let at = 0;
    const data = Buffer.concat(parts.map((p) => p.data));
    const blobs = parts.map((p) => {
      const b = { ...p.blobs[0]!, offset: at };
      at += p.data.length;
      return b;
    });
    expect(writeRangeBlobs(keys, 'p', data, blobs, root, true)).toEqual(names.map(() => ({ writes: [null] })));
    for (const n of names) expect(fs.readFileSync(path.join(dir, n), 'utf8')).toBe(n);
    // The directory is not kept past the request: after a rename, the same path means the new directory.
    fs.renameSync(path.join(dir, 'd1'), path.join(dir, 'd1-old'));
    fs.mkdirSync(path.join(dir, 'd1'));
    const again = range(Buffer.from('new'), path.join(dir, 'd1/a'), { mode: 0o600 });
    expect(writeRangeBlobs(keys, 'p', again.data, again.blobs, root, true)).toEqual([{ writes: [null] }]);
    expect(fs.readFileSync(path.join(dir, 'd1/a'), 'utf8')).toBe('new');
    expect(fs.readFileSync(path.join(dir, 'd1-old/a'), 'utf8')).toBe('d1/a');
  });

  it('a request survives its encoding for a worker thread byte for byte', () => {
    const blobs: RangeBlobWrites[] = [
      {
        id: crypto.randomBytes(32),
        offset: 123,
        length: 8 * 1024 * 1024 + 40,
        writes: [
          { tmp: Buffer.from('/a/\xff\x01name', 'latin1'), offset: 5 * 2 ** 32 },
          {
            tmp: Buffer.from('/b/.aegis-restore-x'),
            offset: 0,
            finish: { dest: Buffer.from('/b/\u00e9t\u00e9'), size: 2 ** 40, meta: { type: 'file', uid: 2 ** 32 - 2, gid: 0, mode: 0o7777, atimeNs: -1_000_000_001n, mtimeNs: 2n ** 62n } },
          },
        ],
      },
      { id: crypto.randomBytes(32), offset: 0, length: 40, writes: [] },
    ];
    const norm = (b: RangeBlobWrites[]) => JSON.parse(JSON.stringify(b, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)));
    expect(norm(decodeRangeWrites(encodeRangeWrites(blobs)))).toEqual(norm(blobs));
  });
});

describe('metadata of a symlink, FIFO or device the restore made', () => {
  const meta = (type: 'symlink' | 'fifo', uid = process.getuid!()) => ({ type, uid, gid: uid, mode: 0o640, atimeNs: 1_500_000_000_000_000_000n, mtimeNs: 1_400_000_000_000_000_000n });
  /** A file of mode 0600 at `to`, and a symlink to it at `from`. */
  const linkedFile = (to: string, from: string) => {
    fs.writeFileSync(to, 'x');
    fs.chmodSync(to, 0o600);
    fs.symlinkSync(to, from);
  };

  it('goes to a symlink itself, never to what it points to', () => {
    const pointee = path.join(dir, 'pointee');
    const link = path.join(dir, 'meta-link');
    linkedFile(pointee, link);
    const uid = process.getuid!() === 0 ? 4321 : process.getuid!();
    applyMetadata(Buffer.from(link), meta('symlink', uid));
    const l = fs.lstatSync(link, { bigint: true });
    expect([Number(l.uid), l.mtimeNs]).toEqual([uid, 1_400_000_000_000_000_000n]);
    const p = fs.statSync(pointee);
    expect([p.uid, p.mode & 0o7777]).toEqual([process.getuid!(), 0o600]);
  });

  it('is refused when the name no longer holds what the restore made (a symlink swapped in for a FIFO)', () => {
    const victim = path.join(dir, 'victim');
    const name = path.join(dir, 'meta-swapped');
    linkedFile(victim, name);
    expect(() => applyMetadata(Buffer.from(name), meta('fifo'))).toThrow('is no longer the fifo this restore made');
    expect(fs.statSync(victim).mode & 0o7777).toBe(0o600);
    expect(fs.lstatSync(name).mtimeMs).not.toBe(1_400_000_000_000);
  });
});

describe('a piece of a file of several blobs', () => {
  /** A request writing `plain` at offset 0 of the temporary file `tmp` (relative), as for the first blob of a larger file. */
  function piece(plain: Buffer, tmp: string): { data: Buffer; blobs: RangeBlobWrites[] } {
    const id = blobId(keys, BlobType.Data, plain);
    const { sealed } = sealBlobWithId(keys, BlobType.Data, id, plain, 'auto');
    return { data: sealed, blobs: [{ id, offset: 0, length: sealed.length, writes: [{ tmp: Buffer.from(tmp), offset: 0 }] }] };
  }

  it('is written into the temporary file the restore made, and into nothing someone put in its place', () => {
    const made = piece(Buffer.from('first piece'), '.aegis-restore-test-ours');
    expect(writeRangeBlobs(keys, 'p', made.data, made.blobs, root, true)).toEqual([{ writes: [null] }]);
    expect(fs.readFileSync(path.join(dir, '.aegis-restore-test-ours'), 'utf8')).toBe('first piece');

    // A file linked elsewhere too (someone's own, or one they could link to) is refused.
    const theirs = path.join(dir, 'theirs');
    fs.writeFileSync(theirs, 'their content');
    fs.linkSync(theirs, path.join(dir, '.aegis-restore-test-linked'));
    const linked = piece(Buffer.from('SNAPSHOT BYTES'), '.aegis-restore-test-linked');
    const [r] = writeRangeBlobs(keys, 'p', linked.data, linked.blobs, root, true);
    expect(r!.writes![0]!.message).toBe(`${path.join(dir, '.aegis-restore-test-linked')} was replaced by another file during the restore; not written`);
    expect(fs.readFileSync(theirs, 'utf8')).toBe('their content');

    if (process.getuid?.() === 0) {
      // As root: a file of another user's is refused too.
      const other = path.join(dir, '.aegis-restore-test-other');
      fs.writeFileSync(other, 'their content');
      fs.chownSync(other, 1234, 1234);
      const owned = piece(Buffer.from('SNAPSHOT BYTES'), '.aegis-restore-test-other');
      expect(writeRangeBlobs(keys, 'p', owned.data, owned.blobs, root, true)[0]!.writes![0]!.message).toMatch(/was replaced by another file/);
      expect(fs.readFileSync(other, 'utf8')).toBe('their content');
    }
  });
});
