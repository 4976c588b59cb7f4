import { UserError } from '../errors.js';
import { type Repository } from '../repo/repository.js';
import { type TreeNode, isSafeName } from '../snapshot/tree.js';

/** A node with its absolute path inside the snapshot (bytes, starting with "/"). */
export interface WalkEntry {
  path: Buffer;
  node: TreeNode;
}

const SLASH = Buffer.from('/');

export function joinPath(dir: Buffer, name: Buffer): Buffer {
  return dir.length === 1 && dir[0] === 0x2f ? Buffer.concat([dir, name]) : Buffer.concat([dir, SLASH, name]);
}

/** Split "/a/b/c" into name components; rejects "." and ".." so a path cannot climb. */
export function pathComponents(p: string): Buffer[] {
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  if (parts.includes('..')) throw new UserError(`path may not contain "..": ${p}`);
  return parts.map((x) => Buffer.from(x, 'utf8'));
}

/** A synthetic node for a snapshot's root directory. */
export function rootNode(treeId: string): TreeNode {
  return {
    name: Buffer.from('/'),
    type: 'dir',
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtimeNs: 0n,
    atimeNs: 0n,
    ctimeNs: 0n,
    size: 0,
    dev: '0',
    inode: '0',
    links: 1,
    subtree: treeId,
  };
}

/** Find the node at `p` inside the tree `rootTree`; the root itself for "/" or "". */
export async function findNode(repo: Repository, rootTree: string, p: string): Promise<WalkEntry> {
  let node = rootNode(rootTree);
  let path: Buffer = Buffer.from('/');
  for (const part of pathComponents(p)) {
    if (node.type !== 'dir' || !node.subtree) throw new UserError(`${path.toString()} is not a directory in the snapshot`);
    const tree = await repo.loadTree(node.subtree);
    const next = tree.nodes.find((n) => n.name.equals(part));
    if (!next) throw new UserError(`no such path in the snapshot: ${p}`);
    node = next;
    path = joinPath(path, part);
  }
  return { path, node };
}

/**
 * Depth-first, pre-order walk below a directory node, in the tree's (byte) order.
 * Entries with unsafe names or duplicate names are refused: they can only come
 * from a damaged or hostile repository.
 */
export async function* walk(repo: Repository, dir: WalkEntry): AsyncGenerator<WalkEntry> {
  if (dir.node.type !== 'dir' || !dir.node.subtree) return;
  const tree = await repo.loadTree(dir.node.subtree);
  let previous: Buffer | undefined;
  for (const node of tree.nodes) {
    if (!isSafeName(node.name)) throw new UserError(`refusing tree entry with unsafe name ${JSON.stringify(node.name.toString('latin1'))} in ${dir.path.toString()}`);
    if (previous && Buffer.compare(previous, node.name) >= 0) throw new UserError(`tree for ${dir.path.toString()} has duplicate or unsorted entries`);
    previous = node.name;
    const entry = { path: joinPath(dir.path, node.name), node };
    yield entry;
    if (node.type === 'dir') yield* walk(repo, entry);
  }
}
