// The rate limiter on a fake clock: a bucket per identity and rule, the most specific prefix
// deciding, refill at the sustained rate, a retry-after hint, forwarded calls not limited twice.

import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { RateLimiter } from "../../../server/access/rate-limiter.js";
import { RefusalMetrics } from "../../../server/access/refusal-metrics.js";
import { NodeError } from "../../../server/errors.js";
import type { RequestContext } from "../../../server/request.js";

function setUp() {
  let now = 0;
  const registry = new Registry();
  const limiter = new RateLimiter({
    rules: [
      { prefix: "", perSecond: 100, burst: 100 },
      { prefix: "slow/", perSecond: 2, burst: 3 },
    ],
    bucketsMax: 3,
    refusals: new RefusalMetrics(registry),
    now: () => now,
  });
  const get = (identity: string, path: string, forwardedBy: string | null = null) => {
    const context: RequestContext = {
      method: "/strongroom.v1.Secrets/Get",
      identity,
      token: null,
      answerBy: Number.MAX_SAFE_INTEGER,
      forwardedBy,
      authorization: { caller: null, tokenUseSpent: false },
    };
    try {
      limiter.check(context, { path });
      return "ok";
    } catch (error) {
      expect(error).toBeInstanceOf(NodeError);
      return `limited ${(error as NodeError).retryAfterMs}`;
    }
  };
  return { get, registry, advance: (ms: number) => (now += ms) };
}

describe("rate limiter", () => {
  it("allows a burst, then the sustained rate, with a retry-after hint in between", async () => {
    const { get, advance, registry } = setUp();
    expect([1, 2, 3, 4].map(() => get("app", "slow/db"))).toEqual(["ok", "ok", "ok", "limited 500"]);
    advance(250);
    expect(get("app", "slow/db")).toBe("limited 250");
    advance(250);
    expect(get("app", "slow/db")).toBe("ok");
    expect(get("app", "slow/db")).toBe("limited 500");
    // Another identity has its own bucket; another path its own rule.
    expect(get("other", "slow/db")).toBe("ok");
    expect(get("app", "fast/db")).toBe("ok");
    // A call the leader takes from a follower was limited there.
    expect(get("app", "slow/db", "n2")).toBe("ok");
    const metrics = await registry.metrics();
    expect(metrics).toMatch(/strongroom_requests_refused_total\{reason="RATE_LIMITED"\} 3/);
  });

  it("keeps a bounded number of buckets, forgetting the least recently used", () => {
    const { get } = setUp();
    for (let i = 0; i < 3; i++) get("a", "slow/x");
    expect(get("a", "slow/x")).toMatch(/^limited/);
    for (const identity of ["b", "c", "d"]) get(identity, "slow/x");
    // "a" was dropped, so it starts with a full bucket again.
    expect(get("a", "slow/x")).toBe("ok");
  });
});
