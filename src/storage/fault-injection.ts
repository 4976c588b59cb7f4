import { UserError } from '../errors.js';
import { type ByteRange, type GetOptions, type ObjectInfo, type PutFileOptions, type PutOptions, type Staging, type Storage, StorageError, type StorageErrorKind } from './storage.js';

/**
 * A test and diagnostic wrapper that makes storage misbehave on purpose, by rule.
 * openStorage() adds it only when AEGIS_FAULTS is set (or the `faults` option is
 * given), directly on top of the backend, so injected faults look like backend
 * faults: transient ones are retried by retrying.ts like real ones.
 *
 * Syntax (docs/S3.md, "Fault injection"): rules separated by ";", each rule a
 * comma-separated list of settings.
 *
 *   op=get|put|stat|list|delete   operations the rule applies to (default: all)
 *   name=GLOB                     object names (for list: the prefix); * matches anything, ? one character
 *   nth=N                         only the Nth matching call (1-based)
 *   from=N                        the Nth matching call and every one after it
 *   p=0.2                         each matching call with this probability (seeded PRNG)
 *   times=K                       at most K injections by this rule
 *   fail=transient|permanent|not-found|exists   throw a StorageError of that kind
 *   stall=DURATION                wait this long (e.g. 500ms, 2s) before the call goes on
 *   truncate[=KEEP]               get only: return just the first KEEP bytes (a number, 1KiB, or 50%; default 50%)
 *   corrupt                       get only: flip one bit of the returned bytes
 *
 * A rule made only of `seed=N` seeds the PRNG (default seed 1), so runs repeat.
 * Without nth/from/p a rule fires on every matching call. Each process counts
 * its own calls. Example: retry every third pack upload once, and stall reads:
 *
 *   AEGIS_FAULTS='op=put,name=data/*,p=0.3,fail=transient; op=get,nth=5,stall=2s; seed=7'
 */
export type FaultOp = 'get' | 'put' | 'stat' | 'list' | 'delete';

export interface FaultRule {
  /** The rule as written, for messages. */
  text: string;
  ops: Set<FaultOp>;
  name?: RegExp;
  nth?: number;
  from?: number;
  p?: number;
  times?: number;
  fail?: StorageErrorKind;
  stallMs?: number;
  truncate?: { bytes: number } | { fraction: number };
  corrupt?: boolean;
}

export interface FaultPlan {
  rules: FaultRule[];
  seed: number;
}

const OPS: FaultOp[] = ['get', 'put', 'stat', 'list', 'delete'];
const KINDS: StorageErrorKind[] = ['transient', 'permanent', 'not-found', 'exists'];

export class FaultSyntaxError extends UserError {
  constructor(detail: string) {
    super(`AEGIS_FAULTS: ${detail} (see docs/S3.md, "Fault injection")`);
    this.name = 'FaultSyntaxError';
  }
}

/** Durations: a number of `defaultUnit`, or a number with ms, s, m or h. */
export function parseDuration(value: number | string, defaultUnit: 'ms' | 's' = 's'): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new Error(`expected a duration (a number of ${defaultUnit === 's' ? 'seconds' : 'milliseconds'}, or e.g. 500ms, 30s, 2m)`);
    return defaultUnit === 's' ? value * 1000 : value;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(value);
  if (!m) throw new Error(`invalid duration "${value}" (expected e.g. 500ms, 30s, 2m)`);
  const n = Number(m[1]);
  const unit = (m[2] ?? defaultUnit).toLowerCase();
  return n * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as Record<string, number>)[unit]!;
}

/** Sizes: a number of bytes, or a number with K, M, G (powers of 1024; KiB/KB/k accepted alike). */
export function parseByteSize(value: number | string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new Error('expected a size (a number of bytes, or e.g. 512MiB, 1GiB)');
    return Math.floor(value);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)?\s*$/i.exec(value);
  if (!m) throw new Error(`invalid size "${value}" (expected e.g. 4096, 512MiB, 1GiB)`);
  const unit = (m[2] ?? 'b').toLowerCase()[0]!;
  const mult = ({ b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 } as Record<string, number>)[unit]!;
  return Math.floor(Number(m[1]) * mult);
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

function positiveInt(key: string, value: string, rule: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new FaultSyntaxError(`${key}=${value} is not a positive whole number in "${rule}"`);
  return n;
}

export function parseFaults(spec: string): FaultPlan {
  const plan: FaultPlan = { rules: [], seed: 1 };
  for (const raw of spec.split(';')) {
    const text = raw.trim();
    if (!text) continue;
    const rule: FaultRule = { text, ops: new Set(OPS) };
    let onlySeed = true;
    for (const part of text.split(',')) {
      const setting = part.trim();
      if (!setting) continue;
      const eq = setting.indexOf('=');
      const key = (eq < 0 ? setting : setting.slice(0, eq)).trim().toLowerCase();
      const value = eq < 0 ? '' : setting.slice(eq + 1).trim();
      if (key !== 'seed') onlySeed = false;
      const need = () => {
        if (!value) throw new FaultSyntaxError(`"${key}" needs a value in "${text}"`);
      };
      switch (key) {
        case 'seed':
          need();
          plan.seed = positiveInt(key, value, text) >>> 0;
          break;
        case 'op': {
          need();
          const ops = value.split(/[|+/]/).map((o) => o.trim().toLowerCase());
          if (ops.includes('*')) break;
          for (const o of ops) if (!OPS.includes(o as FaultOp)) throw new FaultSyntaxError(`unknown operation "${o}" in "${text}" (use ${OPS.join(', ')})`);
          rule.ops = new Set(ops as FaultOp[]);
          break;
        }
        case 'name':
          need();
          rule.name = globToRegExp(value);
          break;
        case 'nth':
          need();
          rule.nth = positiveInt(key, value, text);
          break;
        case 'from':
          need();
          rule.from = positiveInt(key, value, text);
          break;
        case 'times':
          need();
          rule.times = positiveInt(key, value, text);
          break;
        case 'p': {
          need();
          const p = Number(value);
          if (!(p >= 0 && p <= 1)) throw new FaultSyntaxError(`p=${value} is not a probability between 0 and 1 in "${text}"`);
          rule.p = p;
          break;
        }
        case 'fail':
          need();
          if (!KINDS.includes(value as StorageErrorKind)) throw new FaultSyntaxError(`fail=${value} in "${text}" (use ${KINDS.join(', ')})`);
          rule.fail = value as StorageErrorKind;
          break;
        case 'stall':
          need();
          try {
            rule.stallMs = parseDuration(value, 'ms');
          } catch (err) {
            throw new FaultSyntaxError(`${(err as Error).message} in "${text}"`);
          }
          break;
        case 'truncate':
          if (!value) rule.truncate = { fraction: 0.5 };
          else if (value.endsWith('%')) {
            const f = Number(value.slice(0, -1)) / 100;
            if (!(f >= 0 && f < 1)) throw new FaultSyntaxError(`truncate=${value} must keep less than 100% in "${text}"`);
            rule.truncate = { fraction: f };
          } else {
            try {
              rule.truncate = { bytes: parseByteSize(value) };
            } catch (err) {
              throw new FaultSyntaxError(`${(err as Error).message} in "${text}"`);
            }
          }
          break;
        case 'corrupt':
          rule.corrupt = true;
          break;
        default:
          throw new FaultSyntaxError(`unknown setting "${key}" in "${text}"`);
      }
    }
    if (onlySeed) continue;
    if ([rule.nth, rule.from, rule.p].filter((x) => x !== undefined).length > 1) {
      throw new FaultSyntaxError(`use only one of nth, from and p in "${text}"`);
    }
    if (rule.fail === undefined && rule.stallMs === undefined && !rule.truncate && !rule.corrupt) {
      throw new FaultSyntaxError(`rule "${text}" does nothing (give fail=, stall=, truncate or corrupt)`);
    }
    if ((rule.truncate || rule.corrupt) && rule.fail === undefined) {
      const others = [...rule.ops].filter((o) => o !== 'get');
      if (others.length === OPS.length - 1) rule.ops = new Set(['get']);
      else if (others.length > 0) throw new FaultSyntaxError(`truncate and corrupt apply to get only, in "${text}"`);
    }
    plan.rules.push(rule);
  }
  return plan;
}

/** mulberry32: small, fast, seeded; good enough to pick faults reproducibly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface RuleState {
  rule: FaultRule;
  index: number;
  matches: number;
  injected: number;
}

export class FaultInjectingStorage implements Storage {
  readonly location: string;
  private readonly states: RuleState[];
  private readonly random: () => number;
  /** How many faults were injected, per rule index; for tests and diagnostics. */
  readonly injected: number[];

  constructor(
    readonly inner: Storage,
    plan: FaultPlan | string,
  ) {
    const p = typeof plan === 'string' ? parseFaults(plan) : plan;
    this.location = inner.location;
    this.states = p.rules.map((rule, index) => ({ rule, index, matches: 0, injected: 0 }));
    this.injected = p.rules.map(() => 0);
    this.random = prng(p.seed);
  }

  /** The rules that fire for this call (counting every match). */
  private firing(op: FaultOp, name: string): FaultRule[] {
    const out: FaultRule[] = [];
    for (const s of this.states) {
      const r = s.rule;
      if (!r.ops.has(op) || (r.name && !r.name.test(name))) continue;
      s.matches++;
      if (r.times !== undefined && s.injected >= r.times) continue;
      let fire: boolean;
      if (r.nth !== undefined) fire = s.matches === r.nth;
      else if (r.from !== undefined) fire = s.matches >= r.from;
      else if (r.p !== undefined) fire = this.random() < r.p;
      else fire = true;
      if (!fire) continue;
      s.injected++;
      this.injected[s.index] = s.injected;
      out.push(r);
    }
    return out;
  }

  private async before(op: FaultOp, name: string): Promise<FaultRule[]> {
    const rules = this.firing(op, name);
    for (const r of rules) if (r.stallMs) await new Promise((resolve) => setTimeout(resolve, r.stallMs));
    for (const r of rules) {
      if (r.fail) throw new StorageError(r.fail, name, `injected fault (${r.fail}) on ${op} ${name || '(all)'} by AEGIS_FAULTS rule "${r.text}"`);
    }
    return rules;
  }

  async put(name: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    await this.before('put', name);
    await this.inner.put(name, data, options);
  }

  async putFile(name: string, file: string, options?: PutFileOptions): Promise<void> {
    await this.before('put', name);
    await this.inner.putFile(name, file, options);
  }

  staging(): Promise<Staging> {
    return this.inner.staging();
  }

  async get(name: string, range?: ByteRange, options?: GetOptions): Promise<Buffer> {
    const rules = await this.before('get', name);
    let data = await this.inner.get(name, range, options);
    for (const r of rules) {
      if (r.truncate) {
        const keep = 'bytes' in r.truncate ? Math.min(r.truncate.bytes, data.length) : Math.floor(data.length * r.truncate.fraction);
        data = data.subarray(0, Math.min(keep, Math.max(0, data.length - 1)));
      }
      if (r.corrupt && data.length > 0) {
        data = Buffer.from(data);
        const at = Math.floor(this.random() * data.length);
        data[at] = data[at]! ^ (1 << Math.floor(this.random() * 8));
      }
    }
    return data;
  }

  async stat(name: string): Promise<ObjectInfo> {
    await this.before('stat', name);
    return this.inner.stat(name);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    await this.before('list', prefix);
    yield* this.inner.list(prefix);
  }

  async delete(name: string): Promise<void> {
    await this.before('delete', name);
    await this.inner.delete(name);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
