import { describe, expect, it } from 'vitest';
import { type TreeNode, decodeTree, encodeTree } from '../src/snapshot/tree.js';

/** docs/FORMAT.md, "Tree blobs": a name that is valid UTF-8 is a JSON string, any other is base64. */
describe('names in a tree blob', () => {
  const strict = new TextDecoder('utf-8', { fatal: true });
  const isValidUtf8 = (b: Buffer): boolean => {
    try {
      strict.decode(b);
      return true;
    } catch {
      return false;
    }
  };
  const names = [
    Buffer.from('plain.txt'),
    Buffer.from('Grüße – 日本語 😀'),
    Buffer.from([0xef, 0xbf, 0xbd]), // a real U+FFFD
    Buffer.from([0xef, 0xbf, 0xbe]), // U+FFFE, a noncharacter but valid
    Buffer.from([0xf4, 0x8f, 0xbf, 0xbf]), // U+10FFFF
    Buffer.from([0x61, 0xff, 0x62]), // a byte that is never UTF-8
    Buffer.from([0xc0, 0xaf]), // overlong '/'
    Buffer.from([0xed, 0xa0, 0x80]), // a surrogate
    Buffer.from([0xe2, 0x82]), // truncated
    Buffer.from([0xf4, 0x90, 0x80, 0x80]), // past U+10FFFF
    Buffer.from([0x80]), // a lone continuation byte
  ];

  it('are written as strings exactly when valid UTF-8, and read back byte for byte', () => {
    const node = (name: Buffer): TreeNode => ({ name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 1n, atimeNs: 1n, ctimeNs: 1n, size: 0, dev: '1', inode: '2', links: 1, content: [] });
    const plain = encodeTree({ nodes: names.map(node) });
    const json = JSON.parse(plain.toString('utf8')) as { nodes: Array<{ name?: string; name_b64?: string }> };
    json.nodes.forEach((n, i) => {
      if (isValidUtf8(names[i]!)) expect(n).toMatchObject({ name: names[i]!.toString('utf8') });
      else expect(n).toMatchObject({ name_b64: names[i]!.toString('base64') });
      expect(n.name === undefined).toBe(n.name_b64 !== undefined);
    });
    expect(decodeTree(plain).nodes.map((n) => n.name)).toEqual(names);
    expect(names.filter(isValidUtf8)).toHaveLength(5);
  });
});
