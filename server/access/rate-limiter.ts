// Per-identity rate limits: a token bucket per identity and rule, where a rule covers the calls
// whose policy path starts with its prefix (the longest matching prefix decides; calls without a
// path, such as seal status or token operations, count under the rule for ""). A call over its
// limit is refused with RESOURCE_EXHAUSTED (reason RATE_LIMITED) and a retry-after hint, before it
// is authorized or routed, so a flood costs the node little. A forwarded call was limited on the
// node that took it and is not limited again. Per node and in memory, bounded in identities.

import { NodeError } from "../errors.js";
import type { Interceptor, RequestContext } from "../request.js";
import { methodPermissions } from "./method-permissions.js";
import type { RefusalMetrics } from "./refusal-metrics.js";

export interface RateRule {
  /** Policy paths starting with this ("" for all). */
  readonly prefix: string;
  /** The sustained rate, in calls per second. */
  readonly perSecond: number;
  /** Calls allowed in a burst above the sustained rate. */
  readonly burst: number;
}

export interface RateLimiterOptions {
  readonly rules: readonly RateRule[];
  /** Buckets (identity and rule) kept at once; the least recently used is dropped beyond it. */
  readonly bucketsMax: number;
  readonly refusals: RefusalMetrics;
  readonly now?: () => number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; updated: number }>();
  private readonly rules: readonly RateRule[];
  private readonly now: () => number;

  constructor(private readonly options: RateLimiterOptions) {
    // Longest prefix first, so the first match is the most specific rule.
    this.rules = [...options.rules].sort((a, b) => b.prefix.length - a.prefix.length);
    this.now = options.now ?? (() => performance.now());
  }

  interceptor(): Interceptor {
    return async (context, request, next) => {
      this.check(context, request);
      return next();
    };
  }

  /** Takes one call from the caller's bucket, or refuses with RATE_LIMITED. */
  check(context: RequestContext, request: unknown): void {
    if (context.forwardedBy !== null) return;
    const path = pathOf(context.method, request);
    const rule = this.rules.find((candidate) => path.startsWith(candidate.prefix));
    if (rule === undefined) return;
    const key = `${rule.prefix}\u0000${context.identity}`;
    const now = this.now();
    const bucket = this.buckets.get(key) ?? { tokens: rule.burst, updated: now };
    bucket.tokens = Math.min(rule.burst, bucket.tokens + ((now - bucket.updated) * rule.perSecond) / 1000);
    bucket.updated = now;
    // Re-inserted, so the map's order is least recently used first.
    this.buckets.delete(key);
    this.buckets.set(key, bucket);
    if (this.buckets.size > this.options.bucketsMax) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return;
    }
    const retryAfterMs = Math.ceil(((1 - bucket.tokens) * 1000) / rule.perSecond);
    const error = new NodeError(
      "RATE_LIMITED",
      `${context.identity} is over its rate limit of ${rule.perSecond}/s${rule.prefix === "" ? "" : ` under ${rule.prefix}`}; retry in ${retryAfterMs} ms`,
      { retryAfterMs },
    );
    this.options.refusals.note(error);
    throw error;
  }
}

/** The policy path a call is checked against, or "" when it has none (or a malformed one). */
function pathOf(method: string, request: unknown): string {
  const permission = methodPermissions.get(method);
  if (permission?.kind !== "path") return "";
  try {
    return permission.path(
      (typeof request === "object" && request !== null ? request : {}) as Record<string, unknown>,
    );
  } catch {
    return "";
  }
}
