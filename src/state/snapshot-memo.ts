import crypto from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { type Snapshot } from '../snapshot/snapshot.js';
import { type SnapshotMemo } from '../repo/repository.js';
import { STALE_AFTER_MS } from './state-dir.js';
import { makeDirs } from '../util/make-dirs.js';

const VERSION = 1;

/**
 * Decoded snapshots of one repository, kept on this machine between runs so
 * that listing them reads only the ones not seen before (docs/DECISIONS.md,
 * "Unchanged backup"). Every backup, `snapshots`, `mount` and `diff` lists
 * them all: with 5,001 snapshots in a local repository that was ~0.6 s of
 * opening, reading and decrypting one small object after another.
 *
 * Sound because a snapshot object never changes: it is written once under a
 * random name (`ifNotExists`), and a forgotten one drops out of the listing,
 * which always comes from the storage. The file is
 * `<state dir>/snapshots/<repository ID>.json`: one line of JSON, then a line
 * with its SHA-256, written to a temporary name and renamed. A file that is
 * torn, damaged, of another version or another repository is ignored (and
 * replaced); deleting it only makes the next listing read every snapshot.
 * Failing to write it is not an error. It holds what the state database
 * already does in the clear: paths, host and user names, times. Files not
 * rewritten for STALE_AFTER_MS are removed, as the state database's rows are.
 */
export class SnapshotMemoFile implements SnapshotMemo {
  private readonly file: string;
  private memory: Map<string, Snapshot> | undefined;

  constructor(
    stateDir: string,
    private readonly repoId: string,
  ) {
    // The ID comes from the repository's config: it names a file here only if it is what Aegis writes there.
    if (!SnapshotMemoFile.canName(repoId)) throw new Error(`not a repository ID: ${JSON.stringify(repoId)}`);
    this.file = path.join(stateDir, 'snapshots', `${repoId}.json`);
  }

  /** Whether `repoId` (64 hex digits, as `init` makes them) can name a memo file. */
  static canName(repoId: string): boolean {
    return /^[0-9a-f]{64}$/.test(repoId);
  }

  async load(): Promise<Map<string, Snapshot>> {
    this.memory ??= await this.read();
    return new Map(this.memory);
  }

  async save(entries: Map<string, Snapshot>): Promise<void> {
    this.memory = new Map(entries);
    const body = JSON.stringify({ version: VERSION, repo: this.repoId, entries: [...entries] });
    const text = `${body}\n${sha256(body)}\n`;
    const tmp = `${this.file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    try {
      await makeDirs(path.dirname(this.file), 0o700);
      await fsp.writeFile(tmp, text, { mode: 0o600 });
      await fsp.rename(tmp, this.file);
    } catch {
      await fsp.rm(tmp, { force: true }).catch(() => {});
      return;
    }
    await this.dropStale();
  }

  /**
   * Files of repositories not listed here for STALE_AFTER_MS (a file is
   * rewritten whenever its repository gains or loses a snapshot), as the state
   * database forgets their rows; one still in use is only read again.
   */
  private async dropStale(now = Date.now()): Promise<void> {
    const dir = path.dirname(this.file);
    const names = await fsp.readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      const file = path.join(dir, name);
      if (file === this.file) continue;
      const st = await fsp.stat(file).catch(() => undefined);
      if (st?.isFile() && st.mtimeMs < now - STALE_AFTER_MS) await fsp.rm(file, { force: true }).catch(() => {});
    }
  }

  private async read(): Promise<Map<string, Snapshot>> {
    let text: string;
    try {
      text = await fsp.readFile(this.file, 'utf8');
    } catch {
      return new Map();
    }
    const lines = text.split('\n');
    if (lines.length !== 3 || lines[2] !== '' || sha256(lines[0]!) !== lines[1]) return new Map();
    try {
      const parsed = JSON.parse(lines[0]!) as { version?: unknown; repo?: unknown; entries?: unknown };
      if (parsed.version !== VERSION || parsed.repo !== this.repoId || !Array.isArray(parsed.entries)) return new Map();
      return new Map(parsed.entries as Array<[string, Snapshot]>);
    } catch {
      return new Map();
    }
  }
}

function sha256(text: string): string {
  return crypto.createHash('sha256').update(text).digest('hex');
}
