import { type MasterKeys } from '../crypto/keys.js';
import { type Storage } from '../storage/storage.js';
import { Semaphore } from '../util/concurrency.js';
import { type BlobType } from './blob.js';
import { type IndexedPack } from './index.js';
import { packName } from './layout.js';
import { type PackedBlob, buildPack, newPackId } from './pack.js';

/**
 * Collects sealed blobs into packs of about `targetSize` bytes and uploads them,
 * with at most `maxUploads` packs uploading and at most one more waiting, so
 * memory stays bounded. Finished packs are reported through `onPackStored` only
 * after the storage confirmed them durable: the index must never name a pack
 * that is not there. Every pack joins `jobs` the moment it is closed, before any
 * await, so `flush` cannot return while a pack is still waiting for a slot.
 */
export class Packer {
  private parts: Buffer[] = [];
  private blobs: PackedBlob[] = [];
  private bytes = 0;
  private readonly jobs = new Set<Promise<void>>();
  private readonly slots: Semaphore;
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
  ) {
    this.slots = new Semaphore(maxUploads);
  }

  /** Add a sealed blob; resolves once there is room for more (back-pressure). */
  async add(type: BlobType, id: Buffer, sealed: Buffer, rawLength: number): Promise<void> {
    if (this.failure) throw this.failure;
    this.blobs.push({ type, id, offset: this.bytes, length: sealed.length, rawLength });
    this.parts.push(sealed);
    this.bytes += sealed.length;
    if (this.bytes >= this.targetSize) await this.closePack();
  }

  get pendingBytes(): number {
    return this.bytes;
  }

  private async closePack(): Promise<void> {
    if (this.blobs.length > 0) {
      const parts = this.parts;
      const blobs = this.blobs;
      this.parts = [];
      this.blobs = [];
      this.bytes = 0;
      const job = this.slots
        .with(async () => {
          const packId = newPackId();
          const data = buildPack(this.keys, packId, parts, blobs);
          parts.length = 0;
          await this.storage.put(packName(packId), data);
          this.storedBytes += data.length;
          this.packsStored++;
          await this.onPackStored({ packId, blobs });
        })
        .catch((err) => {
          this.failure ??= err;
        });
      this.jobs.add(job);
      void job.then(() => this.jobs.delete(job));
    }
    while (this.jobs.size > this.maxUploads) await Promise.race(this.jobs);
    if (this.failure) throw this.failure;
  }

  /** Wait for packs already closed, without writing the partial one (used when interrupted). */
  async drain(): Promise<void> {
    while (this.jobs.size) await Promise.all([...this.jobs]);
  }

  /** Write the last partial pack and wait for every upload. */
  async flush(): Promise<void> {
    await this.closePack();
    await this.drain();
    if (this.failure) throw this.failure;
  }
}
