import { type Repository } from '../repo/repository.js';
import { type TreeNode } from '../snapshot/tree.js';
import { sameXattrs } from '../snapshot/xattrs.js';
import { joinPath } from './walk.js';

/**
 * What changed between two trees, one path per line:
 *   +  added            -  removed
 *   M  content changed  T  type changed
 *   U  metadata only (mode, owner, times, extended attributes)
 * Identical subtrees (same tree blob ID) are skipped without loading them.
 */
export type ChangeKind = '+' | '-' | 'M' | 'T' | 'U';

export interface Change {
  kind: ChangeKind;
  path: Buffer;
  type: TreeNode['type'];
}

export interface DiffStats {
  added: number;
  removed: number;
  modified: number;
  typeChanged: number;
  metadata: number;
}

function sameContent(a: TreeNode, b: TreeNode): boolean {
  if (a.type !== b.type) return false;
  if (a.type === 'file') return a.size === b.size && (a.content ?? []).join() === (b.content ?? []).join();
  if (a.type === 'symlink') return (a.linkTarget ?? Buffer.alloc(0)).equals(b.linkTarget ?? Buffer.alloc(0));
  if (a.type === 'chardev' || a.type === 'blockdev') return a.rdev === b.rdev;
  return true;
}

function sameMetadata(a: TreeNode, b: TreeNode): boolean {
  return a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.mtimeNs === b.mtimeNs && sameXattrs(a.xattrs, b.xattrs);
}

export async function* diffTrees(repo: Repository, a: string | undefined, b: string | undefined, path: Buffer = Buffer.from('/')): AsyncGenerator<Change> {
  if (a === b) return;
  const left = a ? (await repo.loadTree(a)).nodes : [];
  const right = b ? (await repo.loadTree(b)).nodes : [];
  let i = 0;
  let j = 0;
  while (i < left.length || j < right.length) {
    const l = left[i];
    const r = right[j];
    const c = !l ? 1 : !r ? -1 : Buffer.compare(l.name, r.name);
    if (c < 0) {
      yield* everything(repo, l!, joinPath(path, l!.name), '-');
      i++;
    } else if (c > 0) {
      yield* everything(repo, r!, joinPath(path, r!.name), '+');
      j++;
    } else {
      const p = joinPath(path, l!.name);
      if (l!.type !== r!.type) {
        yield { kind: 'T', path: p, type: r!.type };
        if (l!.type === 'dir') yield* diffTrees(repo, l!.subtree, undefined, p);
        if (r!.type === 'dir') yield* diffTrees(repo, undefined, r!.subtree, p);
      } else if (l!.type === 'dir') {
        if (!sameMetadata(l!, r!)) yield { kind: 'U', path: p, type: 'dir' };
        yield* diffTrees(repo, l!.subtree, r!.subtree, p);
      } else if (!sameContent(l!, r!)) {
        yield { kind: 'M', path: p, type: r!.type };
      } else if (!sameMetadata(l!, r!)) {
        yield { kind: 'U', path: p, type: r!.type };
      }
      i++;
      j++;
    }
  }
}

async function* everything(repo: Repository, node: TreeNode, path: Buffer, kind: '+' | '-'): AsyncGenerator<Change> {
  yield { kind, path, type: node.type };
  if (node.type === 'dir' && node.subtree) {
    yield* diffTrees(repo, kind === '-' ? node.subtree : undefined, kind === '+' ? node.subtree : undefined, path);
  }
}
