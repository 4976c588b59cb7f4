import type { CommandModule } from 'yargs';
import { resolveSnapshot } from '../../engine/snapshots.js';
import { type WalkEntry, findNode, walk } from '../../engine/walk.js';
import { type TreeNode, nsToIso } from '../../snapshot/tree.js';
import { type GlobalArgs, withRepository } from '../context.js';
import { type FilterArgs, snapshotFilter, withSnapshotFilter } from '../filters.js';
import { displayPath } from '../format.js';

interface Args extends GlobalArgs, Omit<FilterArgs, 'path'> {
  snapshot: string;
  path?: string;
  long?: boolean;
  recursive?: boolean;
}

const TYPE_CHAR: Record<string, string> = { file: '-', dir: 'd', symlink: 'l', fifo: 'p', chardev: 'c', blockdev: 'b', socket: 's' };

export function permissionString(type: string, mode: number): string {
  const bits = 'rwxrwxrwx';
  let s = TYPE_CHAR[type] ?? '?';
  for (let i = 0; i < 9; i++) s += mode & (1 << (8 - i)) ? bits[i] : '-';
  const chars = s.split('');
  if (mode & 0o4000) chars[3] = chars[3] === 'x' ? 's' : 'S';
  if (mode & 0o2000) chars[6] = chars[6] === 'x' ? 's' : 'S';
  if (mode & 0o1000) chars[9] = chars[9] === 'x' ? 't' : 'T';
  return chars.join('');
}

const ACL_NAMES = new Set(['system.posix_acl_access', 'system.posix_acl_default']);

/** As GNU ls marks it: `+` after the mode when the entry has a POSIX ACL (a space otherwise, to keep the columns). */
function aclMark(n: TreeNode): string {
  return n.xattrs?.some((x) => ACL_NAMES.has(x.name.toString('latin1'))) ? '+' : ' ';
}

function longLine(e: WalkEntry): string {
  const n = e.node;
  const owner = `${n.user ?? n.uid}`.padEnd(8) + ' ' + `${n.group ?? n.gid}`.padEnd(8);
  const when = nsToIso(n.mtimeNs).replace('T', ' ').slice(0, 19);
  const target = n.type === 'symlink' ? ` -> ${displayPath(n.linkTarget ?? Buffer.alloc(0))}` : '';
  return `${permissionString(n.type, n.mode)}${aclMark(n)} ${owner} ${String(n.size).padStart(12)} ${when} ${displayPath(e.path)}${target}`;
}

function jsonLine(e: WalkEntry): string {
  const n = e.node;
  return JSON.stringify({
    struct_type: 'node',
    name: n.name.toString('utf8'),
    type: n.type,
    path: e.path.toString('utf8'),
    uid: n.uid,
    gid: n.gid,
    ...(n.user !== undefined ? { user: n.user } : {}),
    ...(n.group !== undefined ? { group: n.group } : {}),
    size: n.size,
    mode: n.mode,
    permissions: permissionString(n.type, n.mode),
    mtime: nsToIso(n.mtimeNs),
    atime: nsToIso(n.atimeNs),
    ctime: nsToIso(n.ctimeNs),
    inode: n.inode,
    links: n.links,
    ...(n.linkTarget ? { link_target: n.linkTarget.toString('utf8') } : {}),
  });
}

export const lsCommand: CommandModule<GlobalArgs, Args> = {
  command: 'ls <snapshot> [path]',
  describe: 'list files in a snapshot (all of it, or one directory)',
  builder: (y) =>
    withSnapshotFilter(y, false)
      .positional('snapshot', { type: 'string', describe: 'snapshot ID, prefix or "latest"' })
      .positional('path', { type: 'string', describe: 'directory or file inside the snapshot' })
      .option('long', { alias: 'l', type: 'boolean', describe: 'mode, owner, size and time' })
      .option('recursive', { type: 'boolean', describe: 'with a path: also list subdirectories (default: whole snapshot recursive)' }) as never,
  handler: async (args) => {
    await withRepository(args, async (repo) => {
      const snap = await resolveSnapshot(repo, args.snapshot, snapshotFilter(args));
      const start = await findNode(repo, snap.snapshot.tree, args.path ?? '/');
      const recursive = args.path === undefined || args.path === '/' || Boolean(args.recursive);
      const out: string[] = [];
      const flush = () => {
        if (out.length) process.stdout.write(out.join('\n') + '\n');
        out.length = 0;
      };
      if (args.json) out.push(JSON.stringify({ struct_type: 'snapshot', id: snap.id, short_id: snap.id.slice(0, 8), time: snap.snapshot.time, hostname: snap.snapshot.hostname, paths: snap.snapshot.paths, tree: snap.snapshot.tree }));
      const emit = (e: WalkEntry) => {
        out.push(args.json ? jsonLine(e) : args.long ? longLine(e) : displayPath(e.path));
        if (out.length >= 1000) flush();
      };
      if (start.node.type !== 'dir') emit(start);
      else if (recursive) for await (const e of walk(repo, start)) emit(e);
      else {
        const tree = await repo.loadTree(start.node.subtree!);
        for (const node of tree.nodes) emit({ path: Buffer.concat([start.path, Buffer.from(start.path.length > 1 ? '/' : ''), node.name]), node });
      }
      flush();
    });
  },
};
