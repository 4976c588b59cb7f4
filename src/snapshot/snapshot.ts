/** A snapshot record (docs/FORMAT.md, "Snapshots"). Field names follow restic's JSON. */
export interface BackupSummary {
  files_new: number;
  files_changed: number;
  files_unmodified: number;
  dirs_new: number;
  dirs_changed: number;
  dirs_unmodified: number;
  data_blobs: number;
  tree_blobs: number;
  data_added: number;
  data_added_packed: number;
  total_files_processed: number;
  total_bytes_processed: number;
  /** Bytes actually read from files (0 for an unchanged backup). */
  bytes_read: number;
  files_read: number;
  errors: number;
  backup_start: string;
  backup_end: string;
}

export interface Snapshot {
  time: string;
  tree: string;
  paths: string[];
  hostname: string;
  username: string;
  uid: number;
  gid: number;
  tags: string[];
  parent?: string;
  excludes?: string[];
  program_version: string;
  /**
   * True when an entry of the snapshot has extended attributes (absent
   * otherwise): the mount shows attributes only if a snapshot has some, since
   * answering for them costs `ls -l` a request per entry (docs/MOUNT.md).
   */
  has_xattrs?: boolean;
  summary?: BackupSummary;
}

/** A snapshot with the ID it is stored under. */
export interface SnapshotEntry {
  id: string;
  snapshot: Snapshot;
}

export function shortId(id: string): string {
  return id.slice(0, 8);
}

export function sortByTime(entries: SnapshotEntry[]): SnapshotEntry[] {
  return entries.sort((a, b) => a.snapshot.time.localeCompare(b.snapshot.time) || a.id.localeCompare(b.id));
}
