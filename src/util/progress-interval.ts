/**
 * How often long commands (backup, restore) report progress:
 * AEGIS_PROGRESS_INTERVAL_MS, at least 10, default 250 ms. Tests lower it to
 * watch a command reach a given point.
 */
export function progressIntervalMs(): number {
  const v = Number(process.env.AEGIS_PROGRESS_INTERVAL_MS);
  return Number.isFinite(v) && v >= 10 ? v : 250;
}
