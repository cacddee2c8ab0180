// One counter of calls refused by access control and its guards, by reason, shared by the
// authorizer and the rate limiter: strongroom_requests_refused_total{reason}.

import { Counter, type Registry } from "prom-client";
import { NodeError, type NodeErrorCode } from "../errors.js";

const counted: ReadonlySet<NodeErrorCode> = new Set(["PERMISSION_DENIED", "TOKEN_INVALID", "RATE_LIMITED"]);

export class RefusalMetrics {
  private readonly refusals: Counter<"reason">;

  constructor(registry: Registry) {
    this.refusals = new Counter({
      name: "strongroom_requests_refused_total",
      help: "Calls refused by access control, by reason (PERMISSION_DENIED, TOKEN_INVALID, RATE_LIMITED).",
      labelNames: ["reason"],
      registers: [registry],
    });
  }

  /** Counts `error` if it is a refusal of access control. */
  note(error: unknown): void {
    if (error instanceof NodeError && counted.has(error.code)) this.refusals.inc({ reason: error.code });
  }
}
