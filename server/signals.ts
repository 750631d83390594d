import type { Logger } from './logger.ts';

/**
 * A terminal's Ctrl-C reaches every process of the foreground group: under `npm start` both npm
 * and hardcron get SIGINT, and npm forwards its copy to hardcron. A repeat of the first signal
 * this soon after it is taken to be that same Ctrl-C, not a second one asking to exit at once.
 */
const SAME_INTERRUPTION_MS = 1000;

/**
 * On SIGTERM or SIGINT, runs `stop` once and exits 0 (1 if stopping failed); a second signal
 * (other than a copy of the first, see above) exits at once.
 */
export function stopOnSignals(stop: () => Promise<void>, logger: Logger): void {
  let first: { signal: NodeJS.Signals; at: number } | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (first) {
      if (signal === first.signal && Date.now() - first.at < SAME_INTERRUPTION_MS) return;
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    first = { signal, at: Date.now() };
    logger.info({ signal }, 'stopping');
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
