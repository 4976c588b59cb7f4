/**
 * Names as the mount's JavaScript side holds them.
 *
 * A file name is bytes, and a JavaScript string can only become valid UTF-8, so
 * inside the mount a name is a string under the mapping MirBSD calls OPTU-8:
 *
 *  - a name that is valid UTF-8 is shown unchanged;
 *  - every byte 0x80–0xff that is not part of a valid UTF-8 sequence is shown as
 *    the private-use character U+EF80 + (byte − 0x80), i.e. U+EF80–U+EFFF;
 *  - so that the mapping stays one-to-one, a name that already contains a
 *    character in U+EF80–U+EFFF has those characters escaped byte by byte too.
 *
 * `decodeName` reverses it exactly. The FUSE binding (native/aegis_fuse.c) undoes
 * and redoes the same mapping at the kernel boundary, so users see the stored
 * bytes (docs/MOUNT.md).
 */

const ESC_BASE = 0xef80;
const ESC_FIRST = 0xef80;
const ESC_LAST = 0xefff;

function hasEscapeRange(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= ESC_FIRST && c <= ESC_LAST) return true;
  }
  return false;
}

/** Length of the valid UTF-8 sequence starting at b[i], or 0 if there is none. */
function utf8SeqLen(b: Uint8Array, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  let len: number;
  let min: number;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    min = 0x10000;
  } else return 0;
  if (i + len > b.length) return 0;
  let cp = c & (len === 2 ? 0x1f : len === 3 ? 0x0f : 0x07);
  for (let k = 1; k < len; k++) {
    const d = b[i + k]!;
    if ((d & 0xc0) !== 0x80) return 0;
    cp = (cp << 6) | (d & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

/** The name as shown in the mount. */
export function displayName(raw: Buffer): string {
  // Fast path: plain ASCII, by far the most common.
  let ascii = true;
  for (let i = 0; i < raw.length; i++) {
    if (raw[i]! >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return raw.toString('latin1');
  const s = raw.toString('utf8');
  if (Buffer.byteLength(s, 'utf8') === raw.length && !s.includes('\ufffd') && !hasEscapeRange(s)) return s;
  if (Buffer.from(s, 'utf8').equals(raw) && !hasEscapeRange(s)) return s;
  let out = '';
  let i = 0;
  while (i < raw.length) {
    const len = utf8SeqLen(raw, i);
    if (len === 0) {
      out += String.fromCharCode(ESC_BASE + (raw[i]! - 0x80));
      i++;
      continue;
    }
    const piece = raw.toString('utf8', i, i + len);
    const cp = piece.codePointAt(0)!;
    if (cp >= ESC_FIRST && cp <= ESC_LAST) {
      for (let k = 0; k < len; k++) out += String.fromCharCode(ESC_BASE + (raw[i + k]! - 0x80));
    } else out += piece;
    i += len;
  }
  return out;
}

/** The original bytes of a name shown by `displayName`. */
export function decodeName(shown: string): Buffer {
  if (!hasEscapeRange(shown)) return Buffer.from(shown, 'utf8');
  const parts: Buffer[] = [];
  let run = '';
  for (let i = 0; i < shown.length; i++) {
    const c = shown.charCodeAt(i);
    if (c >= ESC_FIRST && c <= ESC_LAST) {
      if (run) parts.push(Buffer.from(run, 'utf8'));
      run = '';
      parts.push(Buffer.of(c - ESC_BASE + 0x80));
    } else run += shown[i];
  }
  if (run) parts.push(Buffer.from(run, 'utf8'));
  return Buffer.concat(parts);
}

/**
 * A name for a directory the mount makes up from snapshot metadata (host names,
 * tags): `/` cannot appear in a file name, NUL neither; `.` and `..` are taken.
 */
export function safeVirtualName(s: string): string {
  let out = s.replace(/\//g, '\u2215').replace(/\0/g, '');
  if (out === '' || out === '.' || out === '..') out = `_${out}`;
  return out;
}
