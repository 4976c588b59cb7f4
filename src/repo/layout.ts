/** Where each kind of object lives in storage (docs/FORMAT.md, "Layout"). */
export const CONFIG = 'config';
export const KEYS = 'keys/';
export const INDEX = 'index/';
export const SNAPSHOTS = 'snapshots/';
export const LOCKS = 'locks/';
export const DATA = 'data/';

export function packName(packId: string): string {
  return `${DATA}${packId.slice(0, 2)}/${packId}`;
}

/** The pack ID of a `data/xx/<id>` name, or undefined for anything else. */
export function packIdOf(name: string): string | undefined {
  const m = /^data\/[0-9a-f]{2}\/([0-9a-f]{64})$/.exec(name);
  return m ? m[1] : undefined;
}

/** The ID at the end of `kind/<id>`, if it is a well-formed ID. */
export function idOf(prefix: string, name: string): string | undefined {
  if (!name.startsWith(prefix)) return undefined;
  const id = name.slice(prefix.length);
  return /^[0-9a-f]{64}$/.test(id) ? id : undefined;
}
