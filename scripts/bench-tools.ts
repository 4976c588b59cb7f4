/**
 * Per-tool adapters: how aegis, restic and borg are initialised, back up, restore and
 * list, with every setting that matters for a fair comparison in one place.
 *
 * Compression: all three use a fast zstd level where it helps —
 *   aegis  repository default `auto` (zstd level 1, stored raw unless it saves ≥ 1/32),
 *   restic `--compression auto` on a version-2 repository (zstd "fastest"),
 *   borg   `--compression auto,zstd,1` (an lz4 probe decides, then zstd level 1).
 * Encryption: aegis AES-256-GCM, restic AES-256-CTR + Poly1305, borg `-e repokey`
 * (AES-256-CTR + HMAC-SHA256). Caches and state of each tool live in its own scratch
 * directory, created fresh for every run.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandSpec } from './bench-measure.js';
import type { BenchToolHandle, ToolName } from './bench-types.js';

/** The checkout this script was compiled from (dist/scripts/bench-tools.js → ../..). */
export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const AEGIS_BIN = path.join(PROJECT_ROOT, 'bin', 'aegis');

const PASSWORD = 'aegis-bench-passphrase';

/** One tool's repository and scratch space in this run. */
export interface ToolContext {
  /** Scratch directory: password file, caches, state, restore targets. */
  dir: string;
  /** Repository location. */
  repo: string;
  /** Extra environment (S3 credentials). */
  extraEnv: Record<string, string>;
  /** Name of the newest snapshot/archive written so far. */
  latest: string;
}

export interface Probe {
  ok: boolean;
  version?: string;
  reason?: string;
}

export interface ToolAdapter {
  readonly name: ToolName;
  /** Settings used, printed with the results. */
  readonly settings: string;
  probe(): Probe;
  /** Whether the CLI has this command yet (aegis grows commands while the bench is written). */
  has(command: 'restore' | 'ls'): boolean;
  init(ctx: ToolContext): CommandSpec;
  /** A backup of `source`, recorded under `name` (borg archive names; the others ignore it). */
  backup(ctx: ToolContext, source: string, name: string): CommandSpec;
  /** Restore the newest snapshot into the empty directory `target`. */
  restore(ctx: ToolContext, target: string): CommandSpec;
  snapshots(ctx: ToolContext): CommandSpec;
  ls(ctx: ToolContext): CommandSpec;
  /** Repository location on an S3 endpoint, or null when the tool has no S3 backend. */
  s3Location(endpoint: string, bucket: string): string | null;
  /** What hooks (the mount bench) get to run the tool themselves. */
  handle(ctx: ToolContext): BenchToolHandle;
}

/** Create the scratch directory layout and the password file. */
export function prepareContext(dir: string, repo: string, extraEnv: Record<string, string> = {}): ToolContext {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'password'), PASSWORD + '\n', { mode: 0o600 });
  return { dir, repo, extraEnv, latest: 'latest' };
}

function versionOf(cmd: string, args: string[]): Probe {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) return { ok: false, reason: `${cmd} not found on PATH (bash scripts/setup.sh --bench installs it)` };
  // "restic 0.14.0 compiled with go1.19.8 on linux/amd64" → "restic 0.14.0"
  const first = `${r.stdout}${r.stderr}`.trim().split('\n')[0] ?? cmd;
  return { ok: true, version: /^\S+ \S+/.exec(first)?.[0] ?? first };
}

class Aegis implements ToolAdapter {
  readonly name = 'aegis' as const;
  readonly settings = 'compression auto (repository default: zstd level 1 where it saves ≥ 1/32), AES-256-GCM';
  private readonly commands = new Map<string, boolean>();

  probe(): Probe {
    if (!fs.existsSync(path.join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js'))) return { ok: false, reason: 'aegis is not built (npx tsc -p .)' };
    const r = spawnSync(process.execPath, [AEGIS_BIN, '--version'], { encoding: 'utf8' });
    if (r.status !== 0) return { ok: false, reason: `aegis --version failed: ${r.stderr.trim().split('\n')[0] ?? ''}` };
    return { ok: true, version: `aegis ${r.stdout.trim()}` };
  }

  has(command: 'restore' | 'ls'): boolean {
    let known = this.commands.get(command);
    if (known === undefined) {
      // The top-level help lists every command the CLI has.
      const r = spawnSync(process.execPath, [AEGIS_BIN, '--help'], { encoding: 'utf8' });
      known = new RegExp(`aegis ${command}\\b`).test(r.stdout);
      this.commands.set(command, known);
    }
    return known;
  }

  private run(ctx: ToolContext, args: string[], cwd?: string): CommandSpec {
    return {
      cmd: process.execPath,
      args: [AEGIS_BIN, ...args, ...this.globals(ctx)],
      env: this.env(ctx),
      cwd,
    };
  }
  private globals(ctx: ToolContext): string[] {
    return ['-r', ctx.repo, '--password-file', path.join(ctx.dir, 'password'), '-q'];
  }
  private env(ctx: ToolContext): Record<string, string> {
    return { AEGIS_STATE_DIR: path.join(ctx.dir, 'state'), XDG_CACHE_HOME: path.join(ctx.dir, 'cache'), ...ctx.extraEnv };
  }

  init(ctx: ToolContext): CommandSpec {
    return this.run(ctx, ['init']);
  }
  backup(ctx: ToolContext, source: string): CommandSpec {
    return this.run(ctx, ['backup', source]);
  }
  restore(ctx: ToolContext, target: string): CommandSpec {
    return this.run(ctx, ['restore', 'latest', '--target', target]);
  }
  snapshots(ctx: ToolContext): CommandSpec {
    return this.run(ctx, ['snapshots']);
  }
  ls(ctx: ToolContext): CommandSpec {
    return this.run(ctx, ['ls', 'latest']);
  }
  s3Location(endpoint: string, bucket: string): string {
    return `s3:${endpoint}/${bucket}`;
  }
  handle(ctx: ToolContext): BenchToolHandle {
    return { name: this.name, repo: ctx.repo, command: [process.execPath, AEGIS_BIN], env: this.env(ctx), globalArgs: this.globals(ctx), latest: 'latest', scratch: ctx.dir };
  }
}

class Restic implements ToolAdapter {
  readonly name = 'restic' as const;
  readonly settings = 'repository version 2, --compression auto (zstd fastest), AES-256-CTR + Poly1305';

  probe(): Probe {
    return versionOf('restic', ['version']);
  }
  has(): boolean {
    return true;
  }
  private env(ctx: ToolContext): Record<string, string> {
    return { RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: path.join(ctx.dir, 'cache'), ...ctx.extraEnv };
  }
  private run(ctx: ToolContext, args: string[]): CommandSpec {
    return { cmd: 'restic', args: ['-r', ctx.repo, ...args], env: this.env(ctx) };
  }
  init(ctx: ToolContext): CommandSpec {
    return this.run(ctx, ['init', '--repository-version', '2']);
  }
  backup(ctx: ToolContext, source: string): CommandSpec {
    return this.run(ctx, ['--compression', 'auto', 'backup', '-q', source]);
  }
  restore(ctx: ToolContext, target: string): CommandSpec {
    return this.run(ctx, ['restore', 'latest', '-q', '--target', target]);
  }
  snapshots(ctx: ToolContext): CommandSpec {
    return this.run(ctx, ['snapshots', '-q']);
  }
  ls(ctx: ToolContext): CommandSpec {
    return this.run(ctx, ['ls', '-q', 'latest']);
  }
  s3Location(endpoint: string, bucket: string): string {
    return `s3:${endpoint}/${bucket}`;
  }
  handle(ctx: ToolContext): BenchToolHandle {
    return { name: this.name, repo: ctx.repo, command: ['restic'], env: this.env(ctx), globalArgs: ['-r', ctx.repo], latest: 'latest', scratch: ctx.dir };
  }
}

class Borg implements ToolAdapter {
  readonly name = 'borg' as const;
  readonly settings = '-e repokey (AES-256-CTR + HMAC-SHA256), --compression auto,zstd,1';

  probe(): Probe {
    return versionOf('borg', ['--version']);
  }
  has(): boolean {
    return true;
  }
  private env(ctx: ToolContext): Record<string, string> {
    return {
      BORG_PASSPHRASE: PASSWORD,
      BORG_BASE_DIR: path.join(ctx.dir, 'base'),
      BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
      BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
      ...ctx.extraEnv,
    };
  }
  private run(ctx: ToolContext, args: string[], cwd?: string): CommandSpec {
    return { cmd: 'borg', args, env: this.env(ctx), cwd };
  }
  init(ctx: ToolContext): CommandSpec {
    return this.run(ctx, ['init', '-e', 'repokey', ctx.repo]);
  }
  backup(ctx: ToolContext, source: string, name: string): CommandSpec {
    return this.run(ctx, ['create', '--compression', 'auto,zstd,1', `${ctx.repo}::${name}`, source]);
  }
  restore(ctx: ToolContext, target: string): CommandSpec {
    return this.run(ctx, ['extract', `${ctx.repo}::${ctx.latest}`], target);
  }
  snapshots(ctx: ToolContext): CommandSpec {
    return this.run(ctx, ['list', ctx.repo]);
  }
  ls(ctx: ToolContext): CommandSpec {
    return this.run(ctx, ['list', `${ctx.repo}::${ctx.latest}`]);
  }
  s3Location(): null {
    return null;
  }
  handle(ctx: ToolContext): BenchToolHandle {
    return { name: this.name, repo: ctx.repo, command: ['borg'], env: this.env(ctx), globalArgs: [], latest: ctx.latest, scratch: ctx.dir };
  }
}

export function adapterFor(name: ToolName): ToolAdapter {
  switch (name) {
    case 'aegis':
      return new Aegis();
    case 'restic':
      return new Restic();
    case 'borg':
      return new Borg();
  }
}
