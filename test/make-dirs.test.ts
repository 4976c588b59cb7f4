import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Workspace, runAegis, workspace } from './helpers/cli.js';
import { expectUserError } from './helpers/errors.js';
import { makeDirs, makeDirsSync } from '../src/util/make-dirs.js';

/**
 * Node 20's recursive mkdir loops forever where mkdir answers ENOENT under a
 * parent that exists (/proc), and the process then ignores SIGTERM: aegis
 * hung at full CPU on `init -r /proc/x`. makeDirs must make what it can and
 * fail at once where it cannot.
 */
describe('making directories', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegis-make-dirs-'));
  let ws: Workspace | undefined;
  afterAll(() => {
    ws?.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('makes every missing level, with the mode asked, and says whether the last was made here', async () => {
    const deep = path.join(dir, 'a', 'b', 'c');
    expect(makeDirsSync(deep, 0o700)).toBe(true);
    expect(fs.statSync(deep).mode & 0o777).toBe(0o700);
    expect(makeDirsSync(deep)).toBe(false);
    expect(await makeDirs(path.join(dir, 'x', 'y'))).toBe(true);
    expect(await makeDirs(path.join(dir, 'x', 'y'))).toBe(false);
    const bytes = Buffer.concat([Buffer.from(`${dir}/`), Buffer.from([0x62, 0xff]), Buffer.from('/z')]);
    expect(makeDirsSync(bytes)).toBe(true);
    expect(fs.statSync(bytes).isDirectory()).toBe(true);
  });

  it('fails at once under /proc, where mkdir answers ENOENT below a directory that exists', async () => {
    expect(() => makeDirsSync('/proc/aegis-test/x')).toThrow(/ENOENT: no such file or directory, mkdir '\/proc\/aegis-test'/);
    await expect(makeDirs('/proc/aegis-test/x')).rejects.toThrow(/ENOENT/);
    fs.writeFileSync(path.join(dir, 'file'), '');
    expect(() => makeDirsSync(path.join(dir, 'file', 'sub'))).toThrow(/ENOTDIR/);
  });

  it('aegis init, restore --target and the state directory there: one clear line each, no hang', async () => {
    ws = workspace('make-dirs');
    await ws.ok(['init']);
    const init = await runAegis(['init', '-r', '/proc/aegis-test/repo'], ws.env);
    expectUserError(init, 1, /^aegis: storage error: cannot create the directory \/proc\/aegis-test\/repo\/keys: ENOENT/);
    const src = path.join(ws.dir, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'f'), 'x');
    const state = await ws.run(['backup', src], { env: { ...ws.env, AEGIS_STATE_DIR: '/proc/aegis-test-state' } });
    expectUserError(state, 1, /^aegis: cannot create the state directory \/proc\/aegis-test-state \(AEGIS_STATE_DIR\): ENOENT/);
    await ws.ok(['backup', src]);
    const restore = await ws.run(['restore', 'latest', '--target', '/proc/aegis-test-target']);
    expectUserError(restore, 1, /^aegis: cannot create the restore target \/proc\/aegis-test-target: ENOENT/);
  });
});
