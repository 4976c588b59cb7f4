import path from 'node:path';
import { LocalStorage } from './local.js';
import { type Storage } from './storage.js';

/**
 * Options that affect how a location is opened. Backends ignore what does not
 * concern them.
 */
export interface OpenStorageOptions {
  /** Extra, backend-specific settings (S3 region, connections, …). */
  [key: string]: unknown;
}

/**
 * Turn a repository location into a Storage, wrapped in the decorators every
 * repository gets. Locations: a local path (absolute or relative) or `local:PATH`.
 * Remote schemes are added by their backends.
 */
export async function openStorage(location: string, _options: OpenStorageOptions = {}): Promise<Storage> {
  if (location.startsWith('local:')) return new LocalStorage(path.resolve(location.slice('local:'.length)));
  if (/^[a-z0-9]+:/.test(location) && !location.startsWith('/')) {
    throw new Error(`unknown repository location scheme in "${location}" (expected a path or local:PATH)`);
  }
  return new LocalStorage(path.resolve(location));
}
