// grpc-js writes its own errors with console.error ("E No address added out of total 1 resolved"),
// outside the node's log format and before the node's own report of the same failure. A process
// that runs nodes sends them into its pino logger instead: as warnings, except what the caller is
// also told by the error it gets (a listener that could not bind: `listening` reports it, named by
// its config field), which is only debug. grpc-js's logger is one per process, so this is set by
// the program (`strongroom server`, `strongroom dev`), not by each node.
//
// One grpc-js message quotes what a client sent: a header it could not take as metadata ("Failed
// to add metadata entry KEY: VALUE. ..."), which may be a token. Pino's redaction sees fields, not
// message text, so that value is cut here, before the line is logged.

import { setLogger } from "@grpc/grpc-js";
import type { Logger } from "./logger.js";

/** grpc-js messages its callers also get as errors, and report themselves. */
const reportedByCaller = [/^No address added out of total \d+ resolved/];

const metadataEntry = /^Failed to add metadata entry ([^:]*):[\s\S]*$/;

/** A grpc-js line as the node logs it: a header's value never in it. */
function grpcLogLine(message: unknown, rest: readonly unknown[] = []): string {
  const line = [message, ...rest].map(String).join(" ");
  return line.replace(metadataEntry, "Failed to add metadata entry $1 (its value is not logged)");
}

export function sendGrpcLogsTo(logger: Logger): void {
  const fields = { component: "grpc-js" };
  setLogger({
    error: (message?: unknown, ...rest: unknown[]) => {
      const line = grpcLogLine(message, rest);
      if (reportedByCaller.some((pattern) => pattern.test(line))) logger.debug(fields, line);
      else logger.warn(fields, line);
    },
    info: (message?: unknown, ...rest: unknown[]) => logger.info(fields, grpcLogLine(message, rest)),
    debug: (message?: unknown, ...rest: unknown[]) => logger.debug(fields, grpcLogLine(message, rest)),
  });
}
