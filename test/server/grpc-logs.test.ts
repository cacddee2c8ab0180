// grpc-js's own log lines, as a node logs them: through its pino logger, a header value a client
// sent never in them, and a listener's bind failure (which the node reports itself) only at debug.
// grpc-js's real code paths produce the lines; only the logger's destination is in memory.

import { experimental, logVerbosity, Metadata } from "@grpc/grpc-js";
import { expect, it } from "vitest";
import { sendGrpcLogsTo } from "../../server/grpc-logs.js";
import { createLogger } from "../../server/logger.js";

const lines: { level: number; component?: string; msg: string }[] = [];
sendGrpcLogsTo(createLogger("n1", "debug", { write: (line: string) => lines.push(JSON.parse(line)) }));

it("a header grpc-js cannot take is logged by its name, never its value", () => {
  lines.length = 0;
  // A token with a character HTTP/2 metadata may not hold: grpc-js refuses it and says so.
  const metadata = Metadata.fromHttp2Headers({ authorization: "Bearer s3cr3t-token\u0007" });
  expect(metadata.get("authorization")).toEqual([]);
  expect(lines).toEqual([
    {
      level: 40,
      component: "grpc-js",
      node: "n1",
      time: expect.any(Number),
      msg: "Failed to add metadata entry authorization (its value is not logged)",
    },
  ]);
  expect(JSON.stringify(lines)).not.toContain("s3cr3t");
});

it("a bind failure the node reports itself is debug; other grpc-js errors are warnings", () => {
  lines.length = 0;
  experimental.log(logVerbosity.ERROR, "No address added out of total 1 resolved");
  experimental.log(logVerbosity.ERROR, "Connection to peer failed");
  expect(lines.map(({ level, msg }) => [level, msg])).toEqual([
    [20, "No address added out of total 1 resolved"],
    [40, "Connection to peer failed"],
  ]);
});
