/**
 * Extended attributes of a tree node (user.*, trusted.*, security.*, and the
 * POSIX ACLs kept as system.posix_acl_access / system.posix_acl_default).
 * Names and values are bytes. Between this process and the native addon they
 * travel packed (per attribute: u16 LE name length, name, u32 LE value length,
 * value); in a tree blob they are JSON (docs/FORMAT.md, "Tree blobs").
 */
export interface Xattr {
  name: Buffer;
  value: Buffer;
}

/** The packed form's attributes, sorted by name bytes so that equal sets encode equally. */
export function unpackXattrs(packed: Buffer): Xattr[] {
  const out: Xattr[] = [];
  for (let at = 0; at + 2 <= packed.length; ) {
    const nameLength = packed.readUInt16LE(at);
    const name = packed.subarray(at + 2, at + 2 + nameLength);
    const valueLength = packed.readUInt32LE(at + 2 + nameLength);
    const start = at + 2 + nameLength + 4;
    out.push({ name: Buffer.from(name), value: Buffer.from(packed.subarray(start, start + valueLength)) });
    at = start + valueLength;
  }
  return out.sort((a, b) => Buffer.compare(a.name, b.name));
}

export function packXattrs(list: Xattr[]): Buffer {
  let size = 0;
  for (const x of list) size += 2 + x.name.length + 4 + x.value.length;
  const out = Buffer.alloc(size);
  let at = 0;
  for (const x of list) {
    at = out.writeUInt16LE(x.name.length, at);
    at += x.name.copy(out, at);
    at = out.writeUInt32LE(x.value.length, at);
    at += x.value.copy(out, at);
  }
  return out;
}

export function sameXattrs(a: Xattr[] | undefined, b: Xattr[] | undefined): boolean {
  const x = a ?? [];
  const y = b ?? [];
  return x.length === y.length && x.every((e, i) => e.name.equals(y[i]!.name) && e.value.equals(y[i]!.value));
}

/**
 * The attributes a restore by this process can set: trusted.* and security.*
 * need root (CAP_SYS_ADMIN), and are left out otherwise, as owners are.
 */
export function settableXattrs(list: Xattr[] | undefined, privileged: boolean): Xattr[] {
  if (!list) return [];
  if (privileged) return list;
  return list.filter((x) => !isPrivilegedName(x.name));
}

function isPrivilegedName(name: Buffer): boolean {
  return name.subarray(0, 8).toString('latin1') === 'trusted.' || name.subarray(0, 9).toString('latin1') === 'security.';
}
