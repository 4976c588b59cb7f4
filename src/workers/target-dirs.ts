import fs, { constants as fsc } from 'node:fs';

/**
 * The directories of a restore target, reached through descriptors this
 * process opened one name at a time, never through a symlink.
 *
 * A restore often runs as root into a tree other users can write (restoring a
 * user's home). By path, a directory swapped for a symlink between two steps
 * (`mv docs x; ln -s /etc docs`) would have redirected every later write,
 * chown and chmod there. Here each directory is opened with O_NOFOLLOW relative
 * to its parent's descriptor, and every operation names its object as
 * `/proc/self/fd/<parent>/<name>`: the kernel starts that walk at the directory
 * the descriptor holds, wherever it has been moved since, so nothing above the
 * last name can be redirected, and a symlink where a directory should be is
 * refused (ELOOP / ENOTDIR). The last name is handled by each caller with the
 * no-follow form of its call (O_NOFOLLOW, lstat, lchown, O_EXCL, rename).
 * Paths are relative to the target, as latin1 strings (bytes one to one), with
 * no leading slash; '' is the target itself.
 *
 * Descriptors are kept in a small LRU per thread (a restore walks one directory
 * after another); one is closed only when another is opened, so a path from
 * `at` stays good until this object's next `dir` or `at` call.
 *
 * Without /proc (a rescue chroot that did not mount it), paths are built from
 * the target's name instead, as before: the restore still works, without that
 * protection, and says so (`TargetDirs.guarded`).
 */
export class TargetDirs {
  /** Whether /proc/self/fd works here; otherwise paths are plain. */
  static readonly guarded = procWorks();

  /** Relative directory -> descriptor, least recently used first. */
  private readonly fds = new Map<string, number>();
  /** Descriptor -> relative directory, to put real paths back into messages. */
  private readonly rels = new Map<number, string>();

  constructor(
    readonly rootFd: number,
    /** The target's absolute path (latin1), for messages. */
    readonly rootPath: string,
    private readonly max = 256,
    /** Called before a descriptor is closed (the addon keeps a directory it was given open). */
    private readonly beforeClose?: () => void,
  ) {
    this.rels.set(rootFd, '');
  }

  /**
   * Open the target itself. The user named it, so a symlink to a directory is
   * followed (~/Pictures -> /data/Pictures), as restic does; below it, never.
   */
  static openRoot(target: Buffer): number {
    return fs.openSync(target, fsc.O_RDONLY | fsc.O_DIRECTORY);
  }

  /** The descriptor of directory `rel`, opening it (and the directories above it) as needed. */
  dir(rel: string): number {
    if (rel === '') return this.rootFd;
    const have = this.fds.get(rel);
    if (have !== undefined) {
      this.fds.delete(rel);
      this.fds.set(rel, have);
      return have;
    }
    const slash = rel.lastIndexOf('/');
    const parent = TargetDirs.guarded ? this.dir(slash < 0 ? '' : rel.slice(0, slash)) : -1;
    let fd: number;
    try {
      fd = fs.openSync(TargetDirs.guarded ? procPath(parent, rel.slice(slash + 1)) : this.plain(rel), fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
    } catch (err) {
      throw this.explained(err, rel);
    }
    this.fds.set(rel, fd);
    this.rels.set(fd, rel);
    this.evict();
    return fd;
  }

  /** `rel` named through its parent directory's descriptor. */
  at(rel: string): Buffer {
    if (!TargetDirs.guarded) return this.plain(rel);
    const slash = rel.lastIndexOf('/');
    return procPath(this.dir(slash < 0 ? '' : rel.slice(0, slash)), rel.slice(slash + 1));
  }

  /** The descriptor path of directory `rel` itself (for calls that take no descriptor). */
  self(rel: string): Buffer {
    return TargetDirs.guarded ? Buffer.from(`/proc/self/fd/${this.dir(rel)}`, 'latin1') : this.plain(rel);
  }

  private plain(rel: string): Buffer {
    return Buffer.from(rel === '' ? this.rootPath : `${this.rootPath}/${rel}`, 'latin1');
  }

  /** Where `rel` is, as a user knows it. */
  shown(rel: string): string {
    return this.plain(rel).toString();
  }

  /** A message with this object's descriptor paths put back as the paths they stand for. */
  explain(message: string): string {
    return message.replace(/\/proc\/self\/fd\/(\d+)(\/?)/g, (whole, fd: string, slash: string) => {
      const rel = this.rels.get(Number(fd));
      return rel === undefined ? whole : `${this.shown(rel)}${slash}`;
    });
  }

  /** `err` with its message explained; a symlink met where a directory was expected says so. */
  explained(err: unknown, rel: string): Error {
    const e = err as NodeJS.ErrnoException;
    if (e?.code === 'ELOOP' || e?.code === 'ENOTDIR') {
      const out = new Error(`${this.shown(rel)} is not a directory (a symlink or a file); refusing to restore through it`) as NodeJS.ErrnoException;
      out.code = e.code;
      return out;
    }
    if (e instanceof Error) e.message = this.explain(e.message);
    return e as Error;
  }

  /**
   * Close every descriptor but the target's (its owner closes that). `beforeClose`
   * runs even when none was opened: what was kept may be the target's own.
   */
  close(): void {
    this.beforeClose?.();
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
    this.rels.clear();
    this.rels.set(this.rootFd, '');
  }

  private evict(): void {
    // The two most recent stay: an operation may name two directories (a hardlink's source and its new name).
    while (this.fds.size > Math.max(2, this.max)) {
      const [rel, fd] = this.fds.entries().next().value!;
      this.fds.delete(rel);
      this.rels.delete(fd);
      this.beforeClose?.();
      fs.closeSync(fd);
    }
  }
}

function procWorks(): boolean {
  try {
    // Listing it opens it: never empty where it works.
    return fs.readdirSync('/proc/self/fd').length > 0;
  } catch {
    return false;
  }
}

function procPath(dirFd: number, name: string): Buffer {
  return Buffer.from(`/proc/self/fd/${dirFd}/${name}`, 'latin1');
}

/** The parent of a relative path ('' for a name in the target itself). */
export function parentOf(rel: string): string {
  const slash = rel.lastIndexOf('/');
  return slash < 0 ? '' : rel.slice(0, slash);
}

/** `rel` joined with a name (both latin1). */
export function joinRel(rel: string, name: string): string {
  return rel === '' ? name : `${rel}/${name}`;
}
