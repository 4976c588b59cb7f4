import { UserError } from '../errors.js';
import { type Repository } from '../repo/repository.js';
import { type Tree, type TreeNode, isSafeName } from '../snapshot/tree.js';

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
 *
 * One generator with an explicit stack (nested `yield*` passes every entry up
 * through each level, a promise per level), and the trees of the next few
 * subdirectories load while earlier entries are consumed. A restore of 31,000
 * entries in 1,500 directories spent 1.0 s in the walk before.
 */
export async function* walk(repo: Repository, dir: WalkEntry): AsyncGenerator<WalkEntry> {
  if (dir.node.type !== 'dir' || !dir.node.subtree) return;
  const stack = [new Frame(repo, dir, await repo.loadTree(dir.node.subtree))];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    const entry = frame.next();
    if (!entry) {
      stack.pop();
      continue;
    }
    yield entry;
    const sub = frame.subtree(entry.node);
    if (sub) stack.push(new Frame(repo, entry, await sub));
  }
}

/** Subdirectory trees loaded ahead while a directory is being walked. */
const PREFETCH = 16;

/** One directory being walked: its entries in order, and its subdirectories' trees loading ahead. */
class Frame {
  private i = 0;
  private previous: Buffer | undefined;
  private readonly subdirs: TreeNode[];
  private nextSubdir = 0;
  private readonly loading = new Map<TreeNode, Promise<Tree>>();

  constructor(private readonly repo: Repository, private readonly dir: WalkEntry, private readonly tree: Tree) {
    this.subdirs = tree.nodes.filter((n) => n.type === 'dir' && n.subtree);
    this.loadAhead();
  }

  next(): WalkEntry | undefined {
    const node = this.tree.nodes[this.i++];
    if (!node) return undefined;
    if (!isSafeName(node.name)) throw new UserError(`refusing tree entry with unsafe name ${JSON.stringify(node.name.toString('latin1'))} in ${this.dir.path.toString()}`);
    if (this.previous && Buffer.compare(this.previous, node.name) >= 0) throw new UserError(`tree for ${this.dir.path.toString()} has duplicate or unsorted entries`);
    this.previous = node.name;
    return { path: joinPath(this.dir.path, node.name), node };
  }

  /** The loaded tree of a subdirectory just returned by next(), if it is one. */
  subtree(node: TreeNode): Promise<Tree> | undefined {
    const p = this.loading.get(node);
    if (p) {
      this.loading.delete(node);
      this.loadAhead();
    }
    return p;
  }

  private loadAhead(): void {
    while (this.nextSubdir < this.subdirs.length && this.loading.size < PREFETCH) {
      const n = this.subdirs[this.nextSubdir++]!;
      const p = this.repo.loadTree(n.subtree!);
      p.catch(() => {}); // reported when (if) the walk gets there
      this.loading.set(n, p);
    }
  }
}
