import crypto from 'node:crypto';
import os from 'node:os';
import { type MasterKeys } from '../crypto/keys.js';
import { type Storage, isNotFound } from '../storage/storage.js';
import { LockedError } from '../errors.js';
import { LOCKS, idOf } from './layout.js';
import { openJson, sealJson } from './objects.js';

/**
 * Backups take shared locks and may run side by side; prune takes an exclusive
 * lock. A lock is a sealed object `locks/<random id>` refreshed every few minutes;
 * one not refreshed for STALE_MS, or held by a dead process on this host, is stale
 * and ignored (and removed by the next exclusive locker).
 */
export interface LockRecord {
  time: string;
  refreshed: string;
  hostname: string;
  username: string;
  pid: number;
  exclusive: boolean;
}

export const STALE_MS = 30 * 60 * 1000;
const REFRESH_MS = 5 * 60 * 1000;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function deadHere(lock: LockRecord): boolean {
  return lock.hostname === os.hostname() && !processAlive(lock.pid);
}

export function isStale(lock: LockRecord, now = Date.now()): boolean {
  return now - Date.parse(lock.refreshed) > STALE_MS || deadHere(lock);
}

export class RepoLock {
  private timer: NodeJS.Timeout | undefined;
  private released = false;

  private constructor(
    private readonly storage: Storage,
    private readonly keys: MasterKeys,
    readonly name: string,
    private record: LockRecord,
  ) {}

  static async acquire(storage: Storage, keys: MasterKeys, exclusive: boolean): Promise<RepoLock> {
    const now = new Date().toISOString();
    const record: LockRecord = {
      time: now,
      refreshed: now,
      hostname: os.hostname(),
      username: safeUsername(),
      pid: process.pid,
      exclusive,
    };
    const name = `${LOCKS}${crypto.randomBytes(32).toString('hex')}`;
    await storage.put(name, sealJson(keys, name, record), { ifNotExists: true });
    const lock = new RepoLock(storage, keys, name, record);
    // Write first, then look: of two racing lockers at least one sees the other.
    const conflict = await lock.findConflict();
    if (conflict) {
      await storage.delete(name);
      const who = `${conflict.username}@${conflict.hostname} (pid ${conflict.pid}) since ${conflict.time}`;
      throw new LockedError(
        conflict.exclusive
          ? `repository is locked exclusively by ${who}`
          : `repository is in use by ${who}; an exclusive operation must wait`,
      );
    }
    lock.timer = setInterval(() => void lock.refresh().catch(() => {}), REFRESH_MS);
    lock.timer.unref();
    return lock;
  }

  private async findConflict(): Promise<LockRecord | undefined> {
    for await (const info of this.storage.list(LOCKS)) {
      if (info.name === this.name || !idOf(LOCKS, info.name)) continue;
      let other: LockRecord;
      try {
        other = openJson<LockRecord>(this.keys, info.name, await this.storage.get(info.name));
      } catch (err) {
        if (isNotFound(err)) continue;
        throw err;
      }
      if (isStale(other)) {
        // A lock of a dead process on this host is certainly stale: anyone may clear it.
        // One that merely aged out is cleared only by an exclusive locker.
        if (this.record.exclusive || deadHere(other)) await this.storage.delete(info.name);
        continue;
      }
      if (other.exclusive || this.record.exclusive) return other;
    }
    return undefined;
  }

  private async refresh(): Promise<void> {
    if (this.released) return;
    this.record = { ...this.record, refreshed: new Date().toISOString() };
    await this.storage.put(this.name, sealJson(this.keys, this.name, this.record));
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    await this.storage.delete(this.name);
  }
}

function safeUsername(): string {
  try {
    return os.userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 'unknown');
  }
}
