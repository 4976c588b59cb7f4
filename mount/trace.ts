import { performance } from 'node:perf_hooks';

/**
 * AEGIS_MOUNT_TRACE=1: besides the request counts (fuse.ts), one stderr line per
 * start-up step with the milliseconds since the process started, so the time to
 * a ready mount can be split into its parts (docs/MOUNT.md, "Debugging").
 */
export const TRACE = process.env.AEGIS_MOUNT_TRACE === '1';

export function tracePhase(what: string): void {
  if (TRACE) process.stderr.write(`aegis mount trace: ${performance.now().toFixed(1)} ms ${what}\n`);
}

/** Extra figures for the trace's memory line (MiB), e.g. the chunk cache's byte count. */
export const traceMemory: Record<string, () => number> = {};
