// The agent's own plaintext port: GET /v1/agent/health (200 once every file has been rendered,
// 503 before; the body lists each file's version, last rendering, last error and its watch's
// failure, never a value)
// and GET /metrics (Prometheus).

import { createServer } from "node:http";
import type { Registry } from "prom-client";
import type { Agent } from "./agent.js";

export async function startAgentHttp(
  address: string,
  agent: Agent,
  registry: Registry,
): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createServer((request, response) => {
    // A probe may add a query (a cache buster): the route is the path alone (split by hand: new
    // URL() throws on some request targets, such as "//"). HEAD: no body.
    const path = (request.url ?? "").split("?", 1)[0];
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/v1/agent/health") {
      const status = agent.status();
      const body = {
        ready: status.ready,
        secrets: status.secrets.map(({ path, file, version, renderedAt, lastError, watchError }) => ({
          path,
          file,
          version,
          renderedAt: renderedAt === null ? null : new Date(renderedAt).toISOString(),
          lastError,
          watchError,
        })),
      };
      response
        .writeHead(status.ready ? 200 : 503, { "content-type": "application/json" })
        .end(JSON.stringify(body));
      return;
    }
    if (path === "/metrics") {
      registry.metrics().then(
        (text) => response.writeHead(200, { "content-type": registry.contentType }).end(text),
        () => response.writeHead(500).end(),
      );
      return;
    }
    response.writeHead(404).end();
  });
  const separator = address.lastIndexOf(":");
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(address.slice(separator + 1)), address.slice(0, separator), () => resolve());
  });
  const bound = server.address();
  return {
    port: typeof bound === "object" && bound !== null ? bound.port : 0,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
