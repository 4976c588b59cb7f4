import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PackBuffer } from '../src/workers/pack-buffer.js';
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

  it('owns its whole ArrayBuffer, so it can move to another thread without detaching anything else', () => {
    const buf = PackBuffer.fresh(4096, 100);
    expect(buf.byteOffset).toBe(0);
    expect(buf.buffer.byteLength).toBe(buf.length);
    expect(buf.length).toBe(4196);
  });
});
