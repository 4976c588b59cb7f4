import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Workspace, workspace } from './helpers/cli.js';
import { aegis, expectUserError, onTerminal, withoutPassword } from './helpers/errors.js';

interface KeyEntry {
  id: string;
  short_id: string;
  current: boolean;
  created: string;
  hostname: string;
  username: string;
}

/** Several passphrases for one repository; none of them encrypts data, so adding and removing is cheap. */
describe('keys', () => {
  let ws: Workspace;
  let first: string;
  const second = 'second passphrase, also long enough';
  let secondFile: string;
  let src: string;

  const keyFiles = () => fs.readdirSync(path.join(ws.repo, 'keys')).sort();
  const listAs = async (passphrase: string): Promise<KeyEntry[]> =>
    JSON.parse((await ws.ok(['key', 'list', '--json'], { env: { AEGIS_PASSWORD: passphrase } })).stdout);
  const opens = async (passphrase: string): Promise<number | null> => (await ws.run(['snapshots', '--json'], { env: { AEGIS_PASSWORD: passphrase } })).code;

  beforeAll(async () => {
    ws = workspace('keys');
    first = ws.env.AEGIS_PASSWORD!;
    secondFile = path.join(ws.dir, 'second.pw');
    fs.writeFileSync(secondFile, `${second}\n`);
    src = path.join(ws.dir, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'file.txt'), 'data under every key\n');
    await ws.ok(['init']);
    await ws.ok(['backup', src]);
  });
  afterAll(() => ws.cleanup());

  it('key add --new-password-file: the repository opens with either passphrase and shows the same data', async () => {
    expect(keyFiles()).toHaveLength(1);
    const r = await ws.ok(['key', 'add', '--new-password-file', secondFile]);
    const added = /added key ([0-9a-f]{8})/.exec(r.stdout)?.[1];
    expect(added, r.stdout).toBeDefined();
    expect(keyFiles()).toHaveLength(2);
    expect(keyFiles().some((k) => k.startsWith(added!))).toBe(true);
    const withFirst = (await ws.ok(['snapshots', '--json'])).stdout;
    const withSecond = (await ws.ok(['snapshots', '--json'], { env: { AEGIS_PASSWORD: second } })).stdout;
    expect(withSecond).toBe(withFirst);
    const target = path.join(ws.dir, 'restored-with-second');
    await ws.ok(['restore', `latest:${src}`, '--target', target], { env: { AEGIS_PASSWORD: second } });
    expect(fs.readFileSync(path.join(target, 'file.txt'), 'utf8')).toBe('data under every key\n');
    // The trailing newline of the file was not part of the passphrase.
    expect(await opens(`${second}\n`)).toBe(12);
  });

  it('key list shows both keys and marks the one in use (table and JSON)', async () => {
    const asFirst = await listAs(first);
    const asSecond = await listAs(second);
    expect(asFirst).toHaveLength(2);
    expect(asFirst.map((k) => k.id)).toEqual(asSecond.map((k) => k.id));
    expect(asFirst.filter((k) => k.current)).toHaveLength(1);
    expect(asSecond.filter((k) => k.current)).toHaveLength(1);
    const firstKey = asFirst.find((k) => k.current)!;
    const secondKey = asSecond.find((k) => k.current)!;
    expect(firstKey.id).not.toBe(secondKey.id);
    for (const k of asFirst) {
      expect(k.id).toMatch(/^[0-9a-f]{64}$/);
      expect(k.short_id).toBe(k.id.slice(0, 8));
      expect(Number.isNaN(Date.parse(k.created))).toBe(false);
      expect(k.hostname).not.toBe('');
      expect(k.username).not.toBe('');
    }

    const table = (await ws.ok(['key', 'list'], { env: { AEGIS_PASSWORD: second } })).stdout;
    const rows = table.split('\n').filter((l) => /[0-9a-f]{8}/.test(l));
    expect(rows).toHaveLength(2);
    const marked = rows.filter((l) => l.startsWith('*'));
    expect(marked).toHaveLength(1);
    expect(marked[0]).toContain(secondKey.short_id);
    expect(rows.find((l) => !l.startsWith('*'))).toContain(firstKey.short_id);
  });

  it('refuses to remove the key in use', async () => {
    const inUse = (await listAs(first)).find((k) => k.current)!;
    expectUserError(await ws.run(['key', 'remove', inUse.short_id]), 1, /key in use/);
    expect(keyFiles()).toHaveLength(2);
    expect(await opens(first)).toBe(0);
  });

  it('key remove without an ID, or with one that matches nothing, changes nothing', async () => {
    expectUserError(await ws.run(['key', 'remove']), 1, /needs the ID/);
    const ids = (await listAs(first)).map((k) => k.id);
    let prefix = '00000000';
    while (ids.some((id) => id.startsWith(prefix))) prefix = prefix.replace(/^./, (c) => (Number.parseInt(c, 16) + 1).toString(16));
    expectUserError(await ws.run(['key', 'remove', prefix]), 1, /no key matches/);
    expect(keyFiles()).toHaveLength(2);
  });

  it('key remove of the other key: its passphrase stops working (exit 12)', async () => {
    const other = (await listAs(first)).find((k) => !k.current)!;
    const r = await ws.ok(['key', 'remove', other.short_id]);
    expect(r.stdout).toContain(other.short_id);
    expect(keyFiles()).toHaveLength(1);
    expectUserError(await ws.run(['snapshots'], { env: { AEGIS_PASSWORD: second } }), 12, /wrong passphrase/);
    expect(await opens(first)).toBe(0);
  });

  it('refuses to remove the last key', async () => {
    const [only] = await listAs(first);
    expect(only!.current).toBe(true);
    expectUserError(await ws.run(['key', 'remove', only!.short_id]), 1, /last key/);
    expectUserError(await ws.run(['key', 'remove', only!.id]), 1, /last key/);
    expect(keyFiles()).toHaveLength(1);
    expect(await opens(first)).toBe(0);
  });

  it('key add refuses an empty new passphrase and a missing source for it', async () => {
    const empty = path.join(ws.dir, 'empty.pw');
    fs.writeFileSync(empty, '\n');
    expectUserError(await ws.run(['key', 'add', '--new-password-file', empty]), 1, /empty passphrase/);
    expectUserError(await ws.run(['key', 'passwd', '--new-password-file', empty]), 1, /empty passphrase/);
    expectUserError(await ws.run(['key', 'add']), 1, /no new passphrase.*--new-password-file/);
    expectUserError(await ws.run(['key', 'add', '--new-password-file', path.join(ws.dir, 'missing.pw')]), 1, /cannot read password file .*missing\.pw/);
    expect(keyFiles()).toHaveLength(1);
  });

  it('key passwd: the old passphrase stops working (exit 12), the new one works', async () => {
    const before = keyFiles();
    const newFile = path.join(ws.dir, 'new.pw');
    const changed = 'a brand new passphrase';
    fs.writeFileSync(newFile, changed);
    await ws.ok(['key', 'passwd', '--new-password-file', newFile]);
    expect(keyFiles()).toHaveLength(1);
    expect(keyFiles()).not.toEqual(before);
    expectUserError(await ws.run(['snapshots']), 12, /wrong passphrase/);
    expect(await opens(changed)).toBe(0);
    const target = path.join(ws.dir, 'restored-after-passwd');
    await ws.ok(['restore', `latest:${src}`, '--target', target], { env: { AEGIS_PASSWORD: changed } });
    expect(fs.readFileSync(path.join(target, 'file.txt'), 'utf8')).toBe('data under every key\n');
    // Back to the workspace passphrase for the tests below.
    const firstFile = path.join(ws.dir, 'first.pw');
    fs.writeFileSync(firstFile, first);
    await ws.ok(['key', 'passwd', '--new-password-file', firstFile], { env: { AEGIS_PASSWORD: changed } });
    expect(await opens(changed)).toBe(12);
    expect(await opens(first)).toBe(0);
  });

  describe('passphrase sources', () => {
    let pwFile: string;
    const run = (args: string[], env: NodeJS.ProcessEnv) => aegis(['-r', ws.repo, ...args], { env: { ...withoutPassword(ws.env), ...env } });

    beforeAll(() => {
      pwFile = path.join(ws.dir, 'source.pw');
      fs.writeFileSync(pwFile, `${first}\n`);
    });

    it('--password-file', async () => {
      expect((await run(['snapshots', '--password-file', pwFile], {})).code).toBe(0);
      expect((await run(['snapshots', '-p', pwFile], {})).code).toBe(0);
    });

    it('AEGIS_PASSWORD_FILE', async () => {
      expect((await run(['snapshots'], { AEGIS_PASSWORD_FILE: pwFile })).code).toBe(0);
    });

    it('AEGIS_PASSWORD_COMMAND (its output, without the final newline)', async () => {
      const r = await run(['snapshots'], { AEGIS_PASSWORD_COMMAND: `cat '${pwFile}'` });
      expect(r.code, r.stderr).toBe(0);
      expectUserError(await run(['snapshots'], { AEGIS_PASSWORD_COMMAND: 'echo wrong' }), 12);
      expectUserError(await run(['snapshots'], { AEGIS_PASSWORD_COMMAND: 'exit 7' }), 1, /AEGIS_PASSWORD_COMMAND failed/);
    });

    it('AEGIS_PASSWORD', async () => {
      expect((await run(['snapshots'], { AEGIS_PASSWORD: first })).code).toBe(0);
      expectUserError(await run(['snapshots'], { AEGIS_PASSWORD: `${first}x` }), 12);
    });

    it('first match wins: --password-file, AEGIS_PASSWORD_FILE, AEGIS_PASSWORD_COMMAND, AEGIS_PASSWORD', async () => {
      const wrongFile = path.join(ws.dir, 'wrong.pw');
      fs.writeFileSync(wrongFile, 'wrong');
      const all = { AEGIS_PASSWORD_FILE: wrongFile, AEGIS_PASSWORD_COMMAND: 'echo wrong', AEGIS_PASSWORD: 'wrong' };
      expect((await run(['snapshots', '--password-file', pwFile], all)).code).toBe(0);
      expect((await run(['snapshots'], { ...all, AEGIS_PASSWORD_FILE: pwFile })).code).toBe(0);
      expect((await run(['snapshots'], { ...all, AEGIS_PASSWORD_FILE: undefined, AEGIS_PASSWORD_COMMAND: `cat '${pwFile}'` })).code).toBe(0);
      expect((await run(['snapshots'], { AEGIS_PASSWORD: first, AEGIS_PASSWORD_COMMAND: 'echo wrong' })).code).toBe(12);
      expect((await run(['snapshots', '--password-file', wrongFile], { AEGIS_PASSWORD: first })).code).toBe(12);
    });

    it('a prompt on a terminal, without echo', async () => {
      const env = withoutPassword(ws.env);
      const r = await onTerminal(['-r', ws.repo, 'snapshots', '--json'], env, [{ expect: 'passphrase: ', send: `${first}\r` }]);
      expect(r.code, r.screen).toBe(0);
      expect(r.screen).toContain('"short_id"');
      expect(r.screen).not.toContain(first);
      const wrong = await onTerminal(['-r', ws.repo, 'snapshots'], env, [{ expect: 'passphrase: ', send: 'not it\r' }]);
      expect(wrong.code, wrong.screen).toBe(12);
      expect(wrong.screen).not.toContain('not it');
      const interrupted = await onTerminal(['-r', ws.repo, 'snapshots'], env, [{ expect: 'passphrase: ', send: 'abc\u0003' }]);
      expect(interrupted.code, interrupted.screen).toBe(130);
      expect(interrupted.screen).toMatch(/aegis: interrupted/);
    });

    it('init on a terminal asks twice; different answers create nothing', async () => {
      const repo = path.join(ws.dir, 'tty-repo');
      const env = withoutPassword(ws.env);
      const mismatch = await onTerminal(['-r', repo, 'init'], env, [
        { expect: 'passphrase for the new repository: ', send: 'one thing\r' },
        { expect: 'enter it again: ', send: 'another\r' },
      ]);
      expect(mismatch.code, mismatch.screen).toBe(1);
      expect(mismatch.screen).toMatch(/aegis: the passphrases do not match/);
      expect(fs.existsSync(path.join(repo, 'config'))).toBe(false);
      const ok = await onTerminal(['-r', repo, 'init'], env, [
        { expect: 'passphrase for the new repository: ', send: 'typed twice\r' },
        { expect: 'enter it again: ', send: 'typed twice\r' },
      ]);
      expect(ok.code, ok.screen).toBe(0);
      expect(ok.screen).not.toContain('typed twice');
      expect((await aegis(['-r', repo, 'snapshots'], { env: { ...env, AEGIS_PASSWORD: 'typed twice' } })).code).toBe(0);
    });
  });
});
