// grpc-js writes its own errors with console.error ("E No address added out of total 1 resolved"),
// outside the node's log format and before the node's own report of the same failure. A process
// that runs nodes sends them into its pino logger instead: as warnings, except what the caller is
// also told by the error it gets (a listener that could not bind: `listening` reports it, named by
// its config field), which is only debug. grpc-js's logger is one per process, so this is set by
// the program (`strongroom server`, `strongroom dev`), not by each node.

import { setLogger } from "@grpc/grpc-js";
import type { Logger } from "./logger.js";

/** grpc-js messages its callers also get as errors, and report themselves. */
const reportedByCaller = [/^No address added out of total \d+ resolved/];

export function sendGrpcLogsTo(logger: Logger): void {
  const text = (message: unknown, rest: unknown[]) => [message, ...rest].map(String).join(" ");
  setLogger({
    error: (message?: unknown, ...rest: unknown[]) => {
      const line = text(message, rest);
      if (reportedByCaller.some((pattern) => pattern.test(line)))
        logger.debug({ component: "grpc-js" }, line);
      else logger.warn({ component: "grpc-js" }, line);
    },
    info: (message?: unknown, ...rest: unknown[]) =>
      logger.info({ component: "grpc-js" }, text(message, rest)),
    debug: (message?: unknown, ...rest: unknown[]) =>
      logger.debug({ component: "grpc-js" }, text(message, rest)),
  });
}
