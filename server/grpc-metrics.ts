// Metrics of the client port, by method and status code: how many calls were handled and how long
// they took. The SLIs of DESIGN.md read from them: retrieval success rate and latency (Secrets/Get
// by code), throttling (RESOURCE_EXHAUSTED), denied access (PERMISSION_DENIED).

import { status } from "@grpc/grpc-js";
import { Counter, Histogram, type Registry } from "prom-client";

const codeNames = new Map(
  Object.entries(status)
    .filter(([, value]) => typeof value === "number")
    .map(([name, value]) => [value as number, name]),
);

export class GrpcMetrics {
  private readonly handled: Counter<"method" | "code">;
  private readonly seconds: Histogram<"method">;

  constructor(registry: Registry) {
    this.handled = new Counter({
      name: "strongroom_grpc_server_handled_total",
      help: "Calls on the client port, by full method and gRPC status code.",
      labelNames: ["method", "code"],
      registers: [registry],
    });
    this.seconds = new Histogram({
      name: "strongroom_grpc_server_handling_seconds",
      help: "Time from a call's arrival to its answer on the client port, by full method.",
      labelNames: ["method"],
      // From a local read (sub-millisecond) to a write waiting out an election (seconds).
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
  }

  /** Starts timing a call; the returned function records its outcome. */
  start(method: string): (code: status) => void {
    const stop = this.seconds.startTimer({ method });
    return (code) => {
      stop();
      this.handled.inc({ method, code: codeNames.get(code) ?? String(code) });
    };
  }
}
