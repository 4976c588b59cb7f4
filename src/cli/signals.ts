/**
 * Ctrl-C and SIGTERM abort the running command cleanly (it stops at the next
 * safe point, stores what it can, and exits 130). A second signal exits at once;
 * that is still safe because every repository write is atomic.
 *
 * Commands that store or read data (backup, restore) also give the clean stop a
 * deadline (`stopGrace`): a backup stops by waiting for the packs in flight, and
 * storage that does not answer (a stalled server) would hold it for as long as
 * the retry budget allows, minutes per request, with the user looking at
 * "stopping cleanly". After the deadline the command exits as a second signal
 * would: what was stored is kept, the next backup uploads the rest again (and
 * adopts packs stored but not yet indexed), and the lock left behind is stale.
 */
const controller = new AbortController();
let installed = false;
let graceMs: number | undefined;

/** How long a clean stop may take: AEGIS_STOP_GRACE seconds, default 20. */
export const STOP_GRACE_DEFAULT_S = 20;

export function interruptSignal(options: { stopGrace?: boolean } = {}): AbortSignal {
  if (options.stopGrace) graceMs = stopGraceMs();
  if (!installed) {
    installed = true;
    const onSignal = (sig: NodeJS.Signals) => {
      if (controller.signal.aborted) process.exit(130);
      const grace = graceMs !== undefined ? ` within ${graceMs / 1000} s` : '';
      process.stderr.write(`\naegis: ${sig === 'SIGINT' ? 'interrupted' : 'terminated'}, stopping cleanly${grace} (again to force)\n`);
      controller.abort();
      if (graceMs !== undefined) {
        setTimeout(() => {
          process.stderr.write(`aegis: still not stopped after ${graceMs! / 1000} s (storage not answering?); stopping now: what was stored is kept, the next backup uploads the rest again\n`);
          process.exit(130);
        }, graceMs).unref();
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  return controller.signal;
}

function stopGraceMs(): number {
  const raw = process.env.AEGIS_STOP_GRACE;
  const seconds = raw === undefined || raw.trim() === '' ? STOP_GRACE_DEFAULT_S : Number(raw);
  if (!Number.isFinite(seconds) || seconds < 0) {
    process.stderr.write(`aegis: AEGIS_STOP_GRACE must be a number of seconds, not "${raw}"; using ${STOP_GRACE_DEFAULT_S}\n`);
    return STOP_GRACE_DEFAULT_S * 1000;
  }
  return Math.round(seconds * 1000);
}
