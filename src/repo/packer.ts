import { type MasterKeys } from '../crypto/keys.js';
import { type Storage } from '../storage/storage.js';
import { type BlobType } from './blob.js';
import { type IndexedPack } from './index.js';
import { packName } from './layout.js';
import { type PackedBlob, buildPack, newPackId } from './pack.js';

/**
 * Collects sealed blobs into packs of about `targetSize` bytes and uploads them,
 * with at most `maxUploads` packs in flight so memory stays bounded. Finished
 * packs are reported through `onPackStored` only after the storage confirmed
 * them durable: the index must never name a pack that is not there.
 */
export class Packer {
  private parts: Buffer[] = [];
  private blobs: PackedBlob[] = [];
  private bytes = 0;
  private readonly inflight = new Set<Promise<void>>();
  private failure: unknown;
  /** Sealed bytes handed to storage so far. */
  storedBytes = 0;
  packsStored = 0;

  constructor(
    private readonly storage: Storage,
    private readonly keys: MasterKeys,
    private readonly targetSize: number,
    private readonly onPackStored: (pack: IndexedPack) => void | Promise<void>,
    private readonly maxUploads = 3,
  ) {}

  /** Add a sealed blob; resolves once there is room for more (back-pressure). */
  async add(type: BlobType, id: Buffer, sealed: Buffer, rawLength: number): Promise<void> {
    if (this.failure) throw this.failure;
    this.blobs.push({ type, id, offset: this.bytes, length: sealed.length, rawLength });
    this.parts.push(sealed);
    this.bytes += sealed.length;
    if (this.bytes >= this.targetSize) await this.finishPack();
  }

  get pendingBytes(): number {
    return this.bytes;
  }

  private async finishPack(): Promise<void> {
    if (this.blobs.length === 0) return;
    const parts = this.parts;
    const blobs = this.blobs;
    this.parts = [];
    this.blobs = [];
    this.bytes = 0;
    while (this.inflight.size >= this.maxUploads) await Promise.race(this.inflight);
    if (this.failure) throw this.failure;
    const packId = newPackId();
    const data = buildPack(this.keys, packId, parts, blobs);
    const upload = (async () => {
      await this.storage.put(packName(packId), data);
      this.storedBytes += data.length;
      this.packsStored++;
      await this.onPackStored({ packId, blobs });
    })().catch((err) => {
      this.failure ??= err;
    });
    const tracked = upload.finally(() => this.inflight.delete(tracked));
    this.inflight.add(tracked);
  }

  /** Wait for uploads already started, without writing the partial pack (used when interrupted). */
  async drain(): Promise<void> {
    await Promise.all(this.inflight);
  }

  /** Write the last partial pack and wait for every upload. */
  async flush(): Promise<void> {
    await this.finishPack();
    await Promise.all(this.inflight);
    if (this.failure) throw this.failure;
  }
}
