/**
 * Runs a long-lived part until SIGTERM or SIGINT, then stops it cleanly. A
 * second signal while stopping exits at once.
 */
import type { Logger } from "../shared/logger.js";

export function stopOnSignal(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, "second signal: exiting now");
      process.exit(130);
    }
    stopping = true;
    log.info({ signal }, "shutting down");
    stop()
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        log.error({ err: err instanceof Error ? err.message : String(err) }, "shutdown failed");
        process.exit(1);
      });
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}
