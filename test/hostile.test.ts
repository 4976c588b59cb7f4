import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobType } from '../src/repo/blob.js';
import { Repository } from '../src/repo/repository.js';
import { type TreeNode } from '../src/snapshot/tree.js';
import { LocalStorage } from '../src/storage/local.js';
import { type Workspace, workspace } from './helpers/cli.js';

function node(name: Buffer, type: TreeNode['type'], extra: Partial<TreeNode> = {}): TreeNode {
  return { name, type, mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, atimeNs: 0n, ctimeNs: 0n, size: 0, dev: '1', inode: '1', links: 1, ...extra };
}

/**
 * A repository written by someone hostile: valid encryption (they hold the keys)
 * but tree entries that try to climb out of the restore target.
 */
describe('a hostile repository', () => {
  let ws: Workspace;
  let repo: Repository;

  /** A snapshot whose root tree `build` makes; `save` stores a tree and gives its ID. */
  async function snapshotOf(build: (save: (nodes: TreeNode[]) => Promise<string>) => Promise<TreeNode[]>): Promise<string> {
    const packs: Parameters<Repository['writeIndex']>[0] = [];
    const packer = repo.newPacker((p) => {
      packs.push(p);
    });
    const save = async (nodes: TreeNode[]) => {
      const t = repo.encodeTree({ nodes });
      await packer.add(BlobType.Tree, t.id, t.seal(), t.rawLength);
      return t.id.toString('hex');
    };
    const root = await save(await build(save));
    await packer.flush();
    await repo.writeIndex(packs);
    return repo.saveSnapshot({ time: new Date().toISOString(), tree: root, paths: ['/x'], hostname: 'h', username: 'u', uid: 0, gid: 0, tags: [], program_version: 'test' });
  }

  function snapshotWith(entryName: Buffer, type: TreeNode['type'] = 'file'): Promise<string> {
    return snapshotOf(async (save) => {
      const inner = type === 'dir' ? await save([node(Buffer.from('payload'), 'file')]) : undefined;
      return [node(entryName, type, inner ? { subtree: inner, mode: 0o755 } : { content: [] })];
    });
  }

  beforeAll(async () => {
    ws = workspace('hostile');
    await ws.ok(['init']);
    repo = await Repository.open(new LocalStorage(ws.repo), ws.env.AEGIS_PASSWORD!);
  });
  afterAll(() => ws.cleanup());

  it.each([
    ['..', 'dir'],
    ['.', 'dir'],
    ['a/../../escape', 'file'],
    ['/etc/evil', 'file'],
    ['', 'file'],
  ] as const)('refuses an entry named %j (%s) and writes nothing outside the target', async (name, type) => {
    const id = await snapshotWith(Buffer.from(name), type);
    const outside = path.join(ws.dir, 'outside');
    const target = path.join(outside, 'target');
    fs.mkdirSync(target, { recursive: true });
    const r = await ws.run(['restore', id.slice(0, 12), '--target', target]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unsafe name/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.readdirSync(outside)).toEqual(['target']);
    expect(fs.readdirSync(target)).toEqual([]);
    expect(fs.existsSync('/etc/evil')).toBe(false);
    fs.rmSync(outside, { recursive: true, force: true });
  });

  it('refuses a tree that names an entry twice (a symlink out of the target, then a directory through it), writing nothing through the link', async () => {
    const outside = path.join(ws.dir, 'outside2');
    const target = path.join(outside, 'target');
    const elsewhere = path.join(outside, 'elsewhere');
    fs.mkdirSync(target, { recursive: true });
    fs.mkdirSync(elsewhere);
    const id = await snapshotOf(async (save) => {
      const inner = await save([node(Buffer.from('payload'), 'file', { content: [] })]);
      return [
        node(Buffer.from('a'), 'symlink', { linkTarget: Buffer.from(elsewhere), mode: 0o777 }),
        node(Buffer.from('a'), 'dir', { subtree: inner, mode: 0o755 }),
      ];
    });
    const r = await ws.run(['restore', id.slice(0, 12), '--target', target]);
    expect(fs.readdirSync(elsewhere)).toEqual([]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/tree for \/ has duplicate or unsorted entries/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
