import os from 'node:os';
import path from 'node:path';

/**
 * Where this machine keeps what Aegis remembers about repositories (the state
 * database, decoded snapshots): $AEGIS_STATE_DIR, else $XDG_STATE_HOME/aegis,
 * else ~/.local/state/aegis. A module of its own so that finding it does not
 * load SQLite.
 */
export function stateDir(): string {
  if (process.env.AEGIS_STATE_DIR) return process.env.AEGIS_STATE_DIR;
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'aegis');
}

/**
 * How long the state of a repository no backup has used is kept. Each
 * repository's rows are about 0.5 KB per file backed up (its decoded
 * snapshots about 0.6 KB each); without an end, a
 * machine that moves to a new repository (or a developer's, creating test
 * repositories) keeps the rows of every old one for ever (one such database had
 * grown to 2 GB). restic drops cache directories unused for 30 days likewise.
 */
export const STALE_AFTER_MS = 30 * 24 * 3600 * 1000;
