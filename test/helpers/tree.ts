import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** Bytes that are not valid UTF-8, for names. */
export const NON_UTF8 = Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe, 0x2d, 0xc3, 0x28]);

export function deterministicBytes(seed: string, size: number): Buffer {
  const key = crypto.createHash('sha256').update(seed).digest();
  const c = crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

function setTimes(p: string, atimeSec: number, mtimeSec: number): void {
  fs.utimesSync(p, atimeSec, mtimeSec);
}

/**
 * The engine issue's round-trip tree: non-UTF-8 names, names with newlines and
 * spaces, deep nesting, symlinks (one dangling), hardlinks, empty files and
 * directories, a FIFO, a character device, a sparse file of 1 GiB apparent size,
 * exec/setuid/sticky bits, other owners, old and future mtimes, and extended
 * attributes: user.* ones (a binary value, on a file of one blob, one of
 * several blobs, a directory and a non-UTF-8 name), POSIX ACLs (access and
 * default), and as root trusted.* ones, on a symlink too.
 */
export function makeGnarlyTree(root: string, opts: { sparse?: boolean } = {}): void {
  fs.mkdirSync(root, { recursive: true });
  const j = (...p: string[]) => path.join(root, ...p);
  fs.writeFileSync(j('plain.txt'), 'hello aegis\n'.repeat(100));
  fs.writeFileSync(j('with space and\nnewline.txt'), 'odd name\n');
  fs.writeFileSync(Buffer.concat([Buffer.from(root + '/'), NON_UTF8]), 'non-utf8 name content\n');
  fs.mkdirSync(Buffer.concat([Buffer.from(root + '/dir-'), NON_UTF8]));
  fs.writeFileSync(Buffer.concat([Buffer.from(root + '/dir-'), NON_UTF8, Buffer.from('/inside')]), 'inside a non-utf8 dir\n');
  let deep = j('deep');
  for (let i = 0; i < 40; i++) deep = path.join(deep, `level${i}`);
  fs.mkdirSync(deep, { recursive: true });
  fs.writeFileSync(path.join(deep, 'bottom.txt'), 'deep down\n');
  fs.writeFileSync(j('empty-file'), '');
  fs.mkdirSync(j('empty-dir'));
  // Bytes equal to the tree blob of an empty directory: data and tree IDs must not collide.
  fs.writeFileSync(j('looks-like-a-tree.json'), '{"nodes":[]}');
  fs.symlinkSync('plain.txt', j('link-relative'));
  fs.symlinkSync('/nonexistent/target/of/a/dangling/link', j('link-dangling'));
  fs.symlinkSync('deep/level0', j('link-to-dir'));
  fs.writeFileSync(j('hard-a'), 'shared by hardlinks\n');
  fs.linkSync(j('hard-a'), j('hard-b'));
  fs.mkdirSync(j('sub'));
  fs.linkSync(j('hard-a'), j('sub', 'hard-c'));
  execFileSync('mkfifo', [j('fifo')]);
  execFileSync('mknod', [j('chardev'), 'c', '1', '3']);
  fs.writeFileSync(j('binary.bin'), deterministicBytes('binary', 3 * 1024 * 1024 + 12345));
  fs.writeFileSync(j('exec.sh'), '#!/bin/sh\necho hi\n');
  fs.chmodSync(j('exec.sh'), 0o755);
  fs.writeFileSync(j('setuid'), 'setuid\n');
  fs.chmodSync(j('setuid'), 0o4755);
  fs.writeFileSync(j('setgid'), 'setgid\n');
  fs.chmodSync(j('setgid'), 0o2750);
  fs.mkdirSync(j('sticky'));
  fs.chmodSync(j('sticky'), 0o1777);
  fs.writeFileSync(j('owned'), 'someone else\n');
  fs.chownSync(j('owned'), 1234, 5678);
  fs.writeFileSync(j('private'), 'secret\n');
  fs.chmodSync(j('private'), 0o600);
  fs.writeFileSync(j('old'), 'old\n');
  setTimes(j('old'), 315532800.5, 315532800.123456); // 1980
  fs.writeFileSync(j('future'), 'future\n');
  setTimes(j('future'), 4102444800, 4102444800.987654); // 2100
  if (opts.sparse !== false) {
    const fd = fs.openSync(j('sparse.img'), 'w');
    fs.writeSync(fd, Buffer.from('start of sparse\n'), 0, 16, 0);
    fs.writeSync(fd, deterministicBytes('middle', 100_000), 0, 100_000, 512 * 1024 * 1024);
    fs.ftruncateSync(fd, 1024 * 1024 * 1024);
    fs.closeSync(fd);
  }
  setExtendedAttributes(root);
  fs.utimesSync(j('deep'), 1000000000, 1000000000);
}

/** Extended attributes and ACLs for makeGnarlyTree (setfattr and setfacl, from Debian's attr and acl). */
function setExtendedAttributes(root: string): void {
  const j = (...p: string[]) => path.join(root, ...p);
  const setfattr = (file: string, name: string, value: string, ...flags: string[]) => execFileSync('setfattr', [...flags, '-n', name, '-v', value, file]);
  setfattr(j('plain.txt'), 'user.comment', 'the first file, in a family album');
  setfattr(j('plain.txt'), 'user.xdg.origin.url', 'https://example.org/plain.txt');
  // A binary value (setfattr's 0x form), with a NUL and bytes that are not UTF-8.
  setfattr(j('binary.bin'), 'user.checksum', '0x00ff10fe80');
  setfattr(j('sub'), 'user.dir-note', 'a directory with an attribute');
  setfattr(j('empty-file'), 'user.empty', '');
  // The name's bytes cannot travel in a JavaScript argument: printf makes them (NON_UTF8).
  execFileSync('sh', ['-c', `cd "$1" && setfattr -n user.odd-name -v 'on a non-UTF-8 name' "$(printf 'bad\\377\\376-\\303(')"`, 'sh', root]);
  fs.mkdirSync(j('acl-dir'));
  fs.writeFileSync(j('acl-dir', 'shared.txt'), 'readable by one more user\n');
  execFileSync('setfacl', ['-m', 'u:1234:rw-,g:5678:r--', j('acl-dir', 'shared.txt')]);
  execFileSync('setfacl', ['-m', 'd:u:1234:rwx,d:g:5678:r-x', j('acl-dir')]);
  if (process.getuid?.() === 0) {
    setfattr(j('exec.sh'), 'trusted.aegis-test', 'only root reads or writes this');
    setfattr(j('link-relative'), 'trusted.on-a-link', 'a symlink may carry trusted.* attributes', '-h');
  }
}

/** Entries of two trees whose lstat metadata differs (beyond what rsync checks: ns times, nlink). */
export function metadataDifferences(a: string, b: string): string[] {
  const out: string[] = [];
  const walk = (rel: Buffer) => {
    const pa = Buffer.concat([Buffer.from(a), rel]);
    const pb = Buffer.concat([Buffer.from(b), rel]);
    const sa = fs.lstatSync(pa, { bigint: true });
    let sb: fs.BigIntStats;
    try {
      sb = fs.lstatSync(pb, { bigint: true });
    } catch {
      out.push(`missing: ${rel}`);
      return;
    }
    const name = rel.toString('latin1') || '/';
    if (sa.mode !== sb.mode) out.push(`${name}: mode ${sa.mode.toString(8)} vs ${sb.mode.toString(8)}`);
    if (sa.uid !== sb.uid || sa.gid !== sb.gid) out.push(`${name}: owner`);
    if (!sa.isDirectory() && sa.size !== sb.size) out.push(`${name}: size`);
    if (sa.nlink !== sb.nlink && !sa.isDirectory()) out.push(`${name}: nlink ${sa.nlink} vs ${sb.nlink}`);
    if (!sa.isDirectory()) {
      const d = sa.mtimeNs > sb.mtimeNs ? sa.mtimeNs - sb.mtimeNs : sb.mtimeNs - sa.mtimeNs;
      if (d >= 1000n) out.push(`${name}: mtime ${sa.mtimeNs} vs ${sb.mtimeNs}`);
    }
    if (sa.isCharacterDevice() && sa.rdev !== sb.rdev) out.push(`${name}: rdev`);
    if (sa.isSymbolicLink() && !fs.readlinkSync(pa, { encoding: 'buffer' }).equals(fs.readlinkSync(pb, { encoding: 'buffer' }))) out.push(`${name}: link target`);
    if (sa.isDirectory()) {
      const na = (fs.readdirSync(pa, { encoding: 'buffer' }) as Buffer[]).map((x) => x.toString('latin1')).sort();
      const nb = (fs.readdirSync(pb, { encoding: 'buffer' }) as Buffer[]).map((x) => x.toString('latin1')).sort();
      if (na.join('\0') !== nb.join('\0')) out.push(`${name}: entries differ: ${na.filter((x) => !nb.includes(x)).concat(nb.filter((x) => !na.includes(x))).join(', ')}`);
      for (const n of na) walk(Buffer.concat([rel, Buffer.from('/'), Buffer.from(n, 'latin1')]));
    }
  };
  walk(Buffer.alloc(0));
  return out;
}

/** Every regular file below `dir` (paths), sorted. */
export function allFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...allFiles(p));
    else out.push(p);
  }
  return out.sort();
}
