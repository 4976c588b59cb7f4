/**
 * A fixed-size hash set of 32-byte blob IDs in shared memory, so the worker
 * threads of one backup agree on who stores a new chunk: the first to claim an
 * ID seals it, the others only refer to it. Open addressing with linear probing;
 * each slot has a state word set with Atomics (empty → writing → full).
 *
 * When the table is crowded a claim answers "probably new" and the caller seals
 * the chunk: a duplicate costs space, never correctness, because a snapshot is
 * written only after every worker's packs are stored.
 */
const EMPTY = 0;
const WRITING = 1;
const FULL = 2;
const MAX_PROBES = 64;

export interface ClaimTable {
  states: SharedArrayBuffer;
  ids: SharedArrayBuffer;
}

export function newClaimTable(slots: number): ClaimTable {
  const n = 1 << Math.ceil(Math.log2(Math.max(1024, slots)));
  return { states: new SharedArrayBuffer(n * 4), ids: new SharedArrayBuffer(n * 32) };
}

export class Claims {
  private readonly states: Int32Array;
  private readonly ids: Uint8Array;
  private readonly mask: number;

  constructor(table: ClaimTable) {
    this.states = new Int32Array(table.states);
    this.ids = new Uint8Array(table.ids);
    this.mask = this.states.length - 1;
  }

  /** True if this caller is the first to claim `id` (and must store it). */
  claim(id: Uint8Array): boolean {
    let slot = ((id[0]! << 24) | (id[1]! << 16) | (id[2]! << 8) | id[3]!) & this.mask;
    for (let probe = 0; probe < MAX_PROBES; probe++, slot = (slot + 1) & this.mask) {
      const prev = Atomics.compareExchange(this.states, slot, EMPTY, WRITING);
      if (prev === EMPTY) {
        this.ids.set(id, slot * 32);
        Atomics.store(this.states, slot, FULL);
        Atomics.notify(this.states, slot);
        return true;
      }
      // Another thread is writing this slot: wait for it (microseconds) before comparing.
      while (Atomics.load(this.states, slot) === WRITING) Atomics.wait(this.states, slot, WRITING, 1);
      if (this.matches(slot, id)) return false;
    }
    return true;
  }

  private matches(slot: number, id: Uint8Array): boolean {
    const base = slot * 32;
    for (let i = 0; i < 32; i++) if (this.ids[base + i] !== id[i]) return false;
    return true;
  }
}
