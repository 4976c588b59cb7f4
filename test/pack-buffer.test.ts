import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PackBuffer, PackSlots } from '../src/workers/pack-buffer.js';
import { appendTo } from '../src/workers/pack-file.js';

describe('in-memory pack', () => {
  it('holds exactly the bytes sealed into it, grows past its size for a large blob, and hashes them', async () => {
    const out = new PackBuffer(PackBuffer.fresh(1000, 24), crypto.createHash('sha256'));
    const parts = [crypto.randomBytes(700), crypto.randomBytes(300), crypto.randomBytes(5000), crypto.randomBytes(1)];
    for (const part of parts) {
      // The way addToPack writes: ask for room, seal into it, advance.
      const { buf, at } = await out.room(part.length);
      part.copy(buf, at);
      out.advance(part.length);
    }
    await appendTo(out, Buffer.from('trailer'));
    const want = Buffer.concat([...parts, Buffer.from('trailer')]);
    expect(await out.finish()).toBe(want.length);
    expect(out.buffer.length).toBeGreaterThanOrEqual(want.length);
    expect(out.buffer.subarray(0, want.length).equals(want)).toBe(true);
    expect(out.sha256()).toBe(crypto.createHash('sha256').update(want).digest('hex'));
  });

  it('lies in shared memory of its own, which the main thread can be given once and upload from', () => {
    const buf = PackBuffer.fresh(4096, 100);
    expect(buf.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(buf.byteOffset).toBe(0);
    expect(buf.buffer.byteLength).toBe(buf.length);
    expect(buf.length).toBe(4196);
  });
});

describe('pack slots', () => {
  it('sends a slot\'s memory once, reuses released slots, and sends again a buffer a pack grew into', async () => {
    const slots = new PackSlots(1000, 24);
    const a = slots.take();
    const b = slots.take();
    expect([a.slot, b.slot]).toEqual([0, 1]);
    expect(slots.emit(a.slot, a.buf)).toBe(a.buf.buffer);
    expect(slots.emit(b.slot, b.buf)).toBe(b.buf.buffer);
    slots.release(a.slot);
    const again = slots.take();
    expect(again).toEqual({ slot: a.slot, buf: a.buf });
    // The main thread has this memory already.
    expect(slots.emit(again.slot, again.buf)).toBeUndefined();
    slots.release(again.slot);
    slots.release(again.slot); // twice (a failed pack, then its stored message): still one free slot
    // A pack that outgrows its slot's buffer: the slot keeps the larger one, and it is sent with the pack.
    const c = slots.take();
    const out = new PackBuffer(c.buf, undefined);
    await out.room(5000);
    expect(out.buffer).not.toBe(c.buf);
    expect(out.buffer.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(slots.emit(c.slot, out.buffer)).toBe(out.buffer.buffer);
    slots.release(c.slot);
    expect(slots.take()).toEqual({ slot: c.slot, buf: out.buffer });
    expect(slots.take().slot).toBe(2);
    expect(slots.count).toBe(3);
  });
});
