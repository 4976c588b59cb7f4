import { type MasterKeys } from '../crypto/keys.js';
import { type Storage } from '../storage/storage.js';
import { Semaphore } from '../util/concurrency.js';
import { type BlobType } from './blob.js';
import { type IndexedPack } from './index.js';
import { packName } from './layout.js';
import { newPackId, packTrailer } from './pack.js';
import { PackEntriesBuilder } from './pack-entries.js';

/**
 * Collects sealed blobs into packs of about `targetSize` bytes and uploads them,
 * with at most `maxUploads` packs uploading and at most one more waiting, so
 * memory stays bounded. Finished packs are reported through `onPackStored` only
 * after the storage confirmed them durable: the index must never name a pack
 * that is not there. Every pack joins `jobs` the moment it is closed, before any
 * await, so `flush` cannot return while a pack is still waiting for a slot.
 */
export class Packer {
  /** The pack being filled: blobs are copied in as they arrive, the trailer appended at the end. */
  private buffer: Buffer | undefined;
  private blobs = new PackEntriesBuilder();
  private bytes = 0;
  /** Buffers of stored packs, reused: fresh 16 MiB allocations cost page faults and GC. */
  private readonly spare: Buffer[] = [];
  private readonly jobs = new Set<Promise<void>>();
  private readonly slots: Semaphore;
  private failure: unknown;

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
    this.ensureRoom(sealed.length);
    sealed.copy(this.buffer!, this.bytes);
    this.blobs.push(type, id, this.bytes, sealed.length, rawLength);
    this.bytes += sealed.length;
    if (this.bytes >= this.targetSize) await this.closePack();
  }

  /** Room for `n` more bytes plus a header; a blob larger than usual gets a larger buffer. */
  private ensureRoom(n: number): void {
    const headerRoom = 64 * 1024 + this.blobs.count * 64;
    const need = this.bytes + n + headerRoom;
    if (this.buffer && this.buffer.length >= need) return;
    const size = Math.max(need, this.targetSize + 9 * 1024 * 1024);
    let next = this.spare.pop();
    if (!next || next.length < size) next = Buffer.allocUnsafe(size);
    if (this.buffer) {
      this.buffer.copy(next, 0, 0, this.bytes);
      this.spare.push(this.buffer);
    }
    this.buffer = next;
  }

  private async closePack(): Promise<void> {
    if (this.blobs.count > 0) {
      const buffer = this.buffer!;
      const entries = this.blobs.finish();
      const length = this.bytes;
      this.buffer = undefined;
      this.blobs = new PackEntriesBuilder();
      this.bytes = 0;
      const job = this.slots
        .with(async () => {
          const packId = newPackId();
          const trailer = packTrailer(this.keys, packId, entries);
          let data = buffer;
          if (length + trailer.length > buffer.length) {
            data = Buffer.allocUnsafe(length + trailer.length);
            buffer.copy(data, 0, 0, length);
          }
          trailer.copy(data, length);
          await this.storage.put(packName(packId), data.subarray(0, length + trailer.length));
          if (data === buffer && this.spare.length < 1) this.spare.push(buffer);
          await this.onPackStored({ packId, entries });
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
