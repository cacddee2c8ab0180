// `strongroom server --config FILE`: runs one node until SIGTERM or SIGINT, then shuts it down
// gracefully (a leader hands over first; calls in flight get time to finish). A config with
// problems is refused at start with one line per problem, and exit code 2; a listener that cannot
// start (a port in use) or a store that cannot open (a full disk, another node on the same data
// directory) with one line naming it, and exit code 1.

import { ConfigError, loadNodeConfig } from "../server/config.js";
import { sendGrpcLogsTo } from "../server/grpc-logs.js";
import { keepHelperThreadsBatch } from "../server/helper-threads.js";
import { ListenError } from "../server/listen-error.js";
import { createLogger } from "../server/logger.js";
import { StrongroomNode } from "../server/node.js";
import { TlsConfigError } from "../server/tls/tls-files.js";
import { StateError } from "../storage/state/errors.js";

/** Helper threads made after the start (a few, from the event loop) are found this often. */
const helperThreadPassMs = 60_000;

export async function runServer(configFile: string): Promise<void> {
  let node: StrongroomNode;
  let stopHelperPasses = () => {};
  try {
    const config = loadNodeConfig(configFile);
    const logger = createLogger(config.nodeId, config.log.level);
    sendGrpcLogsTo(logger);
    node = await StrongroomNode.start(config, {
      logger,
      processMetrics: true,
      onFatal: (error) => {
        process.stderr.write(`strongroom server: stopped: ${error.message}\n`);
        process.exit(1);
      },
    });
    // After the start: libuv's pool is made on its first use, by then (the stores are open).
    if (config.threads.helperPolicy === "batch" && process.platform === "linux")
      stopHelperPasses = keepHelperThreadsBatch(helperThreadPassMs, (result) => {
        if ("error" in result)
          logger.warn(
            { cause: result.error.message },
            "helper threads left as started (threads.helperPolicy)",
          );
        else if (result.changed > 0)
          logger.debug({ threads: result.changed }, "helper threads set to SCHED_BATCH");
      });
  } catch (error) {
    if (error instanceof ConfigError || error instanceof TlsConfigError) {
      process.stderr.write(`strongroom server: ${error.message}\n`);
      process.exit(2);
    }
    if (error instanceof ListenError || error instanceof StateError) {
      process.stderr.write(`strongroom server: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    stopHelperPasses();
    process.stderr.write(`strongroom server: ${signal}, shutting down\n`);
    node.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`strongroom server: shutdown failed: ${(error as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}
