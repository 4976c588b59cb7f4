import { BlobType } from '../repo/blob.js';
import { type Repository } from '../repo/repository.js';
import { type TreeNode } from '../snapshot/tree.js';

/**
 * A file's bytes in order, blob by blob, with the next few blobs already being
 * fetched and decrypted while the current one is consumed.
 */
export async function* fileContent(repo: Repository, node: TreeNode, prefetch = 4): AsyncGenerator<Buffer> {
  const ids = node.content ?? [];
  const inflight: Promise<Buffer>[] = [];
  let next = 0;
  const fill = () => {
    while (next < ids.length && inflight.length < prefetch) {
      const p = repo.loadBlob(BlobType.Data, ids[next++]!);
      p.catch(() => {}); // surfaced when awaited below
      inflight.push(p);
    }
  };
  fill();
  while (inflight.length) {
    const buf = await inflight.shift()!;
    fill();
    yield buf;
  }
}
