// The plaintext port for load balancers, Kubernetes probes and Prometheus: health answers with a
// status code that says what the node is (as Vault's sys/health does) and a body with no secret,
// path or identity in it; /metrics is the prom-client registry.
//
//   GET /v1/sys/health   200 leader, unsealed · 429 follower, unsealed · 503 sealed · 501 not initialized
//                        (Vault's query parameters change them, for load balancers that want another
//                        answer: standbyok=true, activecode, standbycode, sealedcode, uninitcode)
//   GET /v1/sys/ready    200 initialized, unsealed, a member and a leader known · 503 otherwise
//                        (for readiness: a client sent here is served, by this node or the leader)
//   GET /v1/sys/live     200 while the process serves (for liveness: does not depend on quorum)
//   GET /metrics         Prometheus text format
//
// HEAD gets the same status without the body (for probes that send it).

import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export interface HealthView {
  readonly initialized: boolean;
  readonly sealed: boolean;
  readonly leader: boolean;
  readonly nodeId: string;
  readonly term: number;
  /** Whether this node knows a leader (its own calls can be served or forwarded). */
  readonly leaderKnown: boolean;
  /** Whether this node was removed from the cluster (it refuses calls that need one). */
  readonly removed: boolean;
  /** Audit sinks whose last write failed (the node serves while one sink works). */
  readonly auditSinksFailing: number;
  /** Audit sinks with entries outstanding that took none for a second (a hung disk or collector). */
  readonly auditSinksStalled: number;
}

export interface HttpEndpoints {
  readonly port: number;
  close(): Promise<void>;
}

interface HealthCodes {
  readonly active: number;
  readonly standby: number;
  readonly sealed: number;
  readonly uninit: number;
}

/** The status codes /v1/sys/health answers with, from its query (as Vault's), or what is wrong with it. */
export function healthCodes(query: URLSearchParams): HealthCodes | string {
  const problems: string[] = [];
  const code = (name: string, fallback: number): number => {
    const text = query.get(name);
    if (text === null) return fallback;
    if (/^\d{3}$/.test(text) && Number(text) >= 200 && Number(text) <= 599) return Number(text);
    problems.push(`${name} must be an HTTP status code from 200 to 599, not ${JSON.stringify(text)}`);
    return fallback;
  };
  const standbyOk = query.get("standbyok");
  if (standbyOk !== null && standbyOk !== "true" && standbyOk !== "false")
    problems.push(`standbyok must be true or false, not ${JSON.stringify(standbyOk)}`);
  const active = code("activecode", 200);
  const standbyCode = code("standbycode", 429);
  const codes: HealthCodes = {
    active,
    // standbyok=true: an unsealed follower answers as the leader does (it forwards what it cannot serve).
    standby: standbyOk === "true" ? active : standbyCode,
    sealed: code("sealedcode", 503),
    uninit: code("uninitcode", 501),
  };
  return problems.length === 0 ? codes : problems.join("; ");
}

export async function startHttpEndpoints(
  address: string,
  health: () => HealthView,
  registry: Registry,
): Promise<HttpEndpoints> {
  const server: Server = createServer((request, response) => {
    // A probe may add a query (a health option, a cache buster): the route is the path alone. Split
    // by hand: new URL() throws on some request targets ("//"), and nothing here may throw.
    const [url = "", query = ""] = (request.url ?? "").split("?", 2);
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (url === "/v1/sys/live") {
      response.writeHead(200, { "content-type": "application/json" }).end('{"live":true}');
      return;
    }
    if (url === "/v1/sys/health") {
      const codes = healthCodes(new URLSearchParams(query));
      if (typeof codes === "string") {
        response.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: codes }));
        return;
      }
      const view = health();
      const code = !view.initialized
        ? codes.uninit
        : view.sealed
          ? codes.sealed
          : view.leader
            ? codes.active
            : codes.standby;
      response.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify(view));
      return;
    }
    if (url === "/v1/sys/ready") {
      const view = health();
      const ready = view.initialized && !view.sealed && !view.removed && view.leaderKnown;
      response
        .writeHead(ready ? 200 : 503, { "content-type": "application/json" })
        .end(JSON.stringify({ ready, ...view }));
      return;
    }
    if (url === "/metrics") {
      registry.metrics().then(
        (text) => response.writeHead(200, { "content-type": registry.contentType }).end(text),
        () => response.writeHead(500).end(),
      );
      return;
    }
    response.writeHead(404).end();
  });
  const separator = address.lastIndexOf(":");
  const host = address.slice(0, separator).replace(/^\[|\]$/g, "");
  const port = Number(address.slice(separator + 1));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address();
  return {
    port: typeof bound === "object" && bound !== null ? bound.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
