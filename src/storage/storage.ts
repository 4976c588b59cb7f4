/**
 * The storage layer knows only named opaque objects. Names are slash-separated
 * relative paths such as `data/ab/ab12…` or `snapshots/9f…`. Nothing here knows
 * about encryption or formats: the repository layer above decides what bytes mean.
 */

export interface ByteRange {
  /** First byte to return. */
  offset: number;
  /** Number of bytes to return. */
  length: number;
}

export interface ObjectInfo {
  name: string;
  size: number;
}

export interface PutOptions {
  /**
   * Fail with StorageError('exists') instead of replacing an existing object.
   * Used for locks and the repository config so that two clients racing to
   * create the same object cannot both believe they won.
   */
  ifNotExists?: boolean;
  /** Hex SHA-256 of `data`, when the caller has it: a backend that signs payloads (S3) sends it instead of hashing again. */
  sha256?: string;
}

/**
 * Optional hints for a read. Backends ignore them; the on-disk cache for remote
 * repositories (cache.ts) uses them.
 */
export interface GetOptions {
  /** What the bytes are: the cache evicts data ranges before tree ranges. */
  kind?: 'tree' | 'data';
  /**
   * Read from the backend itself, not from any cache (the auditor proving the
   * repository intact, or a second read after the repository found damage); the
   * fresh bytes replace a cached copy.
   */
  fresh?: boolean;
  /**
   * False: bytes read once and never again (a restore streaming a snapshot out):
   * a cached copy may serve them, but none is made.
   */
  keep?: boolean;
}

/** For a file, only the payload hash applies: a backend that signs payloads (S3) sends it instead of reading the file twice. */
export type PutFileOptions = Pick<PutOptions, 'sha256'>;

/**
 * How a writer should prepare large objects (data packs) for this storage: as
 * files for putFile, or in memory for put. The local backend wants files in a
 * directory inside the repository, on the same filesystem, so that putFile is a
 * rename; files left there by a killed process are removed by a later run once
 * a day old. A backend that uploads (S3) wants memory: a file would be written
 * only to be read back for the upload.
 */
export type Staging =
  | {
      inMemory?: false;
      dir: string;
      /** putFile wants PutFileOptions.sha256 (the backend signs payloads). */
      sha256: boolean;
      /** Write the files with O_DIRECT where the filesystem allows (nothing reads them back soon). */
      direct?: boolean;
    }
  | {
      inMemory: true;
      /** put wants PutOptions.sha256 (the backend signs payloads). */
      sha256: boolean;
    };

export interface Storage {
  /** A human-readable location (never contains credentials). */
  readonly location: string;
  /**
   * Atomically create or replace an object: readers see the old or the new bytes,
   * never a prefix. `data` is the caller's again once this settles: keep no view
   * of it (an in-memory pack's buffer is filled with the next pack then).
   */
  put(name: string, data: Uint8Array, options?: PutOptions): Promise<void>;
  /**
   * Store a local file's bytes as object `name`, as atomically as put, and take
   * the file: on success it is gone (moved into place, or uploaded and removed);
   * on failure it is still there, for the caller to retry or remove. Large
   * objects (data packs) are assembled in files so they never sit in memory.
   */
  putFile(name: string, file: string, options?: PutFileOptions): Promise<void>;
  /** Where and how to prepare files for putFile. */
  staging(): Promise<Staging>;
  /**
   * Whole object, or a byte range of it. Throws StorageError('not-found'). A range
   * that reaches past the end of the object throws StorageError('permanent') whose
   * message contains "short read" (never a silently shorter buffer).
   */
  get(name: string, range?: ByteRange, options?: GetOptions): Promise<Buffer>;
  /** Size of an object. Throws StorageError('not-found'). */
  stat(name: string): Promise<ObjectInfo>;
  /**
   * A file on this machine that holds the object's bytes, for a reader on
   * another thread that reads ranges itself (restore workers); undefined when
   * there is none, or when reads must go through `get` (a decorator that
   * counts, injects faults or caches). Whoever fails to read it must fall back
   * to `get`, which retries and reports errors as usual.
   */
  localPath?(name: string): string | undefined;
  /** Every object whose name starts with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Remove an object; removing a missing object is not an error. */
  delete(name: string): Promise<void>;
  /** Release connections and handles. */
  close(): Promise<void>;
}

export type StorageErrorKind =
  | 'not-found'
  | 'exists'
  /** Worth retrying: the same call may succeed later (timeouts, 5xx, throttling, resets). */
  | 'transient'
  /** Retrying cannot help (permissions, missing bucket, bad request). */
  | 'permanent';

export class StorageError extends Error {
  constructor(
    readonly kind: StorageErrorKind,
    readonly objectName: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StorageError';
  }
}

export function isNotFound(err: unknown): boolean {
  return err instanceof StorageError && err.kind === 'not-found';
}

/** `range` of a whole object in memory; a range past its end is a short read, as from a backend. */
export function sliceRange(name: string, data: Buffer, range: ByteRange): Buffer {
  if (range.offset + range.length > data.length) {
    throw new StorageError('permanent', name, `short read of ${name}: wanted ${range.length} bytes at ${range.offset}, got ${Math.max(0, data.length - range.offset)}`);
  }
  return data.subarray(range.offset, range.offset + range.length);
}

export async function collectList(storage: Storage, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of storage.list(prefix)) out.push(info);
  return out;
}
