import { type Repository } from '../repo/repository.js';
import { DATA, packIdOf } from '../repo/layout.js';
import { type IndexedPack } from '../repo/index.js';
import { readPackHeader } from '../repo/pack.js';

/**
 * Packs that are stored but named by no index: left by a backup that was killed
 * after uploading them and before writing its index. Their headers say what they
 * hold, so they are indexed again and the next backup reuses their blobs instead
 * of uploading the data a second time. A pack whose header does not authenticate
 * is left alone (the auditor reports it).
 */
export async function adoptUnindexedPacks(repo: Repository): Promise<number> {
  const found: IndexedPack[] = [];
  for await (const info of repo.storage.list(DATA)) {
    const packId = packIdOf(info.name);
    if (!packId || repo.index.hasPack(packId)) continue;
    try {
      found.push({ packId, entries: await readPackHeader(repo.storage, repo.keys, packId, info.size) });
    } catch {
      /* damaged or foreign: not ours to index */
    }
  }
  if (found.length) await repo.writeIndex(found);
  return found.length;
}
