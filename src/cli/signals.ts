/**
 * Ctrl-C and SIGTERM abort the running command cleanly (it stops at the next
 * safe point, stores what it can, and exits 130). A second signal exits at once;
 * that is still safe because every repository write is atomic.
 */
const controller = new AbortController();
let installed = false;

export function interruptSignal(): AbortSignal {
  if (!installed) {
    installed = true;
    const onSignal = (sig: NodeJS.Signals) => {
      if (controller.signal.aborted) process.exit(130);
      process.stderr.write(`\naegis: ${sig === 'SIGINT' ? 'interrupted' : 'terminated'}, stopping cleanly (again to force)\n`);
      controller.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  return controller.signal;
}
