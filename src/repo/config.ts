import { type ChunkerParams, DEFAULT_CHUNKER } from '../chunker/fastcdc.js';
import { type CompressionMode } from './compression.js';

export const FORMAT_VERSION = 1;

/** The sealed `config` object: what every client must agree on. */
export interface RepoConfig {
  version: number;
  /** Random, hex; names the local cache and state of this repository. */
  id: string;
  created: string;
  chunker: ChunkerParams;
  /** Target size of a pack in bytes. */
  packSize: number;
  /** Default for `backup --compression`. */
  compression: CompressionMode;
}

export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
/** Pack offsets are 32-bit: keep packs well below 4 GiB, and large enough to be worth a request. */
export const MIN_PACK_SIZE = 256 * 1024;
export const MAX_PACK_SIZE = 1024 * 1024 * 1024;

export function validatePackSize(n: number): void {
  if (!Number.isInteger(n) || n < MIN_PACK_SIZE || n > MAX_PACK_SIZE) {
    throw new Error(`pack size must be between ${MIN_PACK_SIZE / 1024} KiB and ${MAX_PACK_SIZE / 1024 / 1024} MiB`);
  }
}

export function newConfig(id: string, overrides: Partial<Pick<RepoConfig, 'chunker' | 'packSize' | 'compression'>> = {}): RepoConfig {
  return {
    version: FORMAT_VERSION,
    id,
    created: new Date().toISOString(),
    chunker: overrides.chunker ?? DEFAULT_CHUNKER,
    packSize: overrides.packSize ?? DEFAULT_PACK_SIZE,
    compression: overrides.compression ?? 'auto',
  };
}
