import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Node has no mknod(2); FIFOs and device nodes are rare enough in backups that
 * the coreutils commands serve. Paths are passed as bytes-preserving strings via
 * latin1 is not possible for exec argv, so these take the path as a Buffer and
 * refuse names that are not valid UTF-8 (reported as a restore warning).
 */
function argPath(p: Buffer): string {
  const s = p.toString('utf8');
  if (!Buffer.from(s, 'utf8').equals(p)) throw new Error('cannot create a special file whose path is not valid UTF-8');
  return s;
}

export async function makeFifo(p: Buffer, mode: number): Promise<void> {
  await run('mkfifo', ['-m', (mode & 0o777).toString(8), '--', argPath(p)]);
}

export async function makeDevice(p: Buffer, kind: 'chardev' | 'blockdev', rdev: number, mode: number): Promise<void> {
  // Linux dev_t encoding (glibc gnu_dev_major/minor).
  const r = BigInt(rdev);
  const major = ((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn);
  const minor = (r & 0xffn) | ((r >> 12n) & ~0xffn);
  await run('mknod', ['-m', (mode & 0o777).toString(8), '--', argPath(p), kind === 'chardev' ? 'c' : 'b', major.toString(), minor.toString()]);
}
