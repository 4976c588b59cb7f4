import { type BackupProgress } from '../engine/backup.js';
import { type RestoreProgress } from '../engine/restore.js';
import { formatBytes, formatDuration } from './format.js';

/**
 * A single self-rewriting status line on a terminal: files, bytes, rate and,
 * when the total is known, an ETA. Silent when stderr is not a terminal.
 */
export class ProgressLine {
  private readonly start = Date.now();
  private lastLength = 0;
  readonly enabled: boolean;

  constructor(private readonly totalBytes?: number) {
    this.enabled = Boolean(process.stderr.isTTY);
  }

  update(p: BackupProgress): void {
    if (!this.enabled) return;
    const secs = (Date.now() - this.start) / 1000;
    const rate = secs > 0 ? p.bytesRead / secs : 0;
    let line = `${p.filesDone} files, ${formatBytes(p.bytesDone)} (${formatBytes(p.bytesRead)} read), ${formatBytes(rate)}/s, ${formatDuration(secs)}`;
    // Unchanged files count as done without being read, so the ETA uses the rate of all bytes processed.
    const total = this.totalBytes ?? p.bytesExpected;
    const done = secs > 0 ? p.bytesDone / secs : 0;
    if (total && done > 0 && total > p.bytesDone) line += `, ETA ${formatDuration((total - p.bytesDone) / done)}`;
    if (p.errors) line += `, ${p.errors} errors`;
    this.show(line);
  }

  /** A restore's line; the totals grow while the snapshot's trees are still being walked. */
  restore(p: RestoreProgress): void {
    if (!this.enabled) return;
    const secs = (Date.now() - this.start) / 1000;
    const rate = secs > 0 ? p.bytesDone / secs : 0;
    let line = `${p.filesDone} of ${p.filesTotal} files, ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}, ${formatBytes(rate)}/s, ${formatDuration(secs)}`;
    if (rate > 0 && p.bytesTotal > p.bytesDone) line += `, ETA ${formatDuration((p.bytesTotal - p.bytesDone) / rate)}`;
    this.show(line);
  }

  private show(line: string): void {
    const width = (process.stderr.columns ?? 100) - 1;
    if (line.length > width) line = line.slice(0, width);
    process.stderr.write(`\r${line.padEnd(this.lastLength)}`);
    this.lastLength = line.length;
  }

  done(): void {
    if (this.enabled && this.lastLength) process.stderr.write(`\r${' '.repeat(this.lastLength)}\r`);
    this.lastLength = 0;
  }
}
