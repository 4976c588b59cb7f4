/**
 * The "small mutation" between the unchanged and the mutated backup, applied to the
 * bench's working copy of the dataset (never to the cache): edit a few small text
 * files, add a few files, delete a few, and insert bytes in the middle of the largest
 * binary and at two places in the disk image. Deterministic from the seed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { MARKER, Rng, TextMaker, keystream, randomBytes, writeRandomFile } from './bench-data.js';

export interface MutationInfo {
  modified: number;
  added: number;
  deleted: number;
  /** Files that had bytes inserted, with where and how many. */
  insertions: Array<{ file: string; offsets: number[]; bytes: number }>;
  /** Net change of the dataset's size. */
  bytesDelta: number;
  summary: string;
}

function listFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const entries = fs.readdirSync(path.join(root, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const r = rel ? path.join(rel, e.name) : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.isFile() && r !== MARKER) out.push(r);
    }
  };
  walk('');
  return out;
}

/** Rewrite `file` with `insert` placed at each offset (ascending), through a temporary file and a rename. */
async function insertBytes(file: string, offsets: number[], insert: Buffer): Promise<void> {
  const tmp = `${file}.bench-tmp`;
  const src = await fs.promises.open(file, 'r');
  const dst = await fs.promises.open(tmp, 'w');
  try {
    const buf = Buffer.allocUnsafe(8 << 20);
    let pos = 0;
    const copyUntil = async (end: number): Promise<void> => {
      while (pos < end) {
        const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, end - pos), pos);
        if (bytesRead === 0) throw new Error(`${file} is shorter than expected`);
        await dst.write(buf.subarray(0, bytesRead));
        pos += bytesRead;
      }
    };
    for (const off of offsets) {
      await copyUntil(off);
      await dst.write(insert);
    }
    await copyUntil((await src.stat()).size);
  } finally {
    await src.close();
    await dst.close();
  }
  await fs.promises.rename(tmp, file);
}

export async function mutateDataset(root: string, seed: number): Promise<MutationInfo> {
  const rng = new Rng(seed ^ 0x3a7a7e);
  const text = new TextMaker(new Rng(seed ^ 0x7e47)); // same vocabulary as the dataset
  const files = listFiles(root);
  const texts = files.filter((f) => !f.startsWith('media/') && !f.startsWith('archives/') && !f.startsWith('vm/'));
  let bytesDelta = 0;

  // Edit: a line inserted in the middle and one appended.
  const editCount = Math.min(20, Math.max(3, Math.floor(texts.length / 100)));
  const chosen = new Set<string>();
  while (chosen.size < editCount) chosen.add(rng.pick(texts));
  for (const rel of chosen) {
    const p = path.join(root, rel);
    const old = fs.readFileSync(p);
    const mid = old.indexOf(0x0a, old.length >> 1) + 1 || old.length;
    const line = Buffer.concat([text.text(rng.int(40, 120)), Buffer.from('\n')]);
    const tail = text.text(rng.int(40, 200));
    fs.writeFileSync(p, Buffer.concat([old.subarray(0, mid), line, old.subarray(mid), tail]));
    bytesDelta += line.length + tail.length;
  }

  // Delete a few others.
  const deleteCount = Math.min(5, Math.max(1, Math.floor(texts.length / 400)));
  let deleted = 0;
  while (deleted < deleteCount) {
    const rel = rng.pick(texts);
    if (chosen.has(rel)) continue;
    const p = path.join(root, rel);
    if (!fs.existsSync(p)) continue;
    bytesDelta -= fs.statSync(p).size;
    fs.rmSync(p);
    deleted++;
  }

  // Add: ten text files in a new directory and beside existing ones, and one 1 MiB binary.
  const newDir = path.join(root, 'notes', 'added-after-first-backup');
  fs.mkdirSync(newDir, { recursive: true });
  let added = 0;
  for (let i = 0; i < 10; i++) {
    const dir = i < 5 ? newDir : path.join(root, path.dirname(rng.pick(texts)));
    const content = text.text(rng.int(200, 8000));
    fs.writeFileSync(path.join(dir, `new-${text.wordString()}-${i}.txt`), content);
    bytesDelta += content.length;
    added++;
  }
  writeRandomFile(path.join(root, 'media', 'new-clip.bin'), 1 << 20, keystream(seed, 'mutation binary'));
  bytesDelta += 1 << 20;
  added++;

  // Insert bytes mid-file: 1,000 into the largest binary, 4 KiB at 1/3 and 2/3 of the image.
  const insertions: MutationInfo['insertions'] = [];
  const bins = files.filter((f) => f.startsWith('media/') || f.startsWith('archives/'));
  const largest = bins.reduce((a, b) => (fs.statSync(path.join(root, b)).size > fs.statSync(path.join(root, a)).size ? b : a));
  const largestSize = fs.statSync(path.join(root, largest)).size;
  const binInsert = randomBytes(keystream(seed, 'mutation insert 1'), 1000);
  await insertBytes(path.join(root, largest), [Math.floor(largestSize / 2)], binInsert);
  insertions.push({ file: largest, offsets: [Math.floor(largestSize / 2)], bytes: binInsert.length });
  bytesDelta += binInsert.length;

  const image = path.join('vm', 'disk.img');
  const imageSize = fs.statSync(path.join(root, image)).size;
  const imageInsert = randomBytes(keystream(seed, 'mutation insert 2'), 4096);
  const imageOffsets = [Math.floor(imageSize / 3) + 1234, Math.floor((2 * imageSize) / 3) + 4321];
  await insertBytes(path.join(root, image), imageOffsets, imageInsert);
  insertions.push({ file: image, offsets: imageOffsets, bytes: imageInsert.length * imageOffsets.length });
  bytesDelta += imageInsert.length * imageOffsets.length;

  const summary =
    `${chosen.size} text files edited, ${deleted} deleted, ${added} added (one a 1 MiB binary), ` +
    `1,000 bytes inserted mid-file into ${largest}, 2 × 4 KiB into ${image}`;
  return { modified: chosen.size, added, deleted, insertions, bytesDelta, summary };
}
