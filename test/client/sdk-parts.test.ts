// The SDK's pure parts: which failures are retried (reads and writes apart), the backoff's bounds,
// and the read cache's TTL with jitter, size bound and stale-if-error, on a fake clock.

import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { describeConnectionFailure } from "../../client/connection-failure.js";
import { fromServiceError } from "../../client/errors.js";
import { ReadCache } from "../../client/read-cache.js";
import { backoffMs, decide, nextWait } from "../../client/retry-policy.js";

function failure(code: status, details: string, reason?: string, retryAfterMs?: number): ServiceError {
  const metadata = new Metadata();
  if (reason !== undefined) metadata.set("strongroom-reason", reason);
  if (retryAfterMs !== undefined) metadata.set("strongroom-retry-after-ms", String(retryAfterMs));
  return Object.assign(new Error(details), { code, details, metadata }) as ServiceError;
}

describe("retry policy", () => {
  it("retries a write only when it certainly did not take effect", () => {
    const cases: [ServiceError, boolean][] = [
      [failure(status.UNAVAILABLE, "No connection established"), true],
      [failure(status.UNAVAILABLE, "no leader", "NO_LEADER"), true],
      [failure(status.UNAVAILABLE, "sealed leader", "LEADER_SEALED"), true],
      [failure(status.FAILED_PRECONDITION, "sealed", "SEALED"), true],
      [failure(status.UNAVAILABLE, "removed from the cluster", "REMOVED"), true],
      [failure(status.RESOURCE_EXHAUSTED, "slow down", "RATE_LIMITED", 250), true],
      [failure(status.UNAVAILABLE, "Connection dropped"), false],
      [failure(status.DEADLINE_EXCEEDED, "Deadline exceeded"), false],
      [failure(status.DEADLINE_EXCEEDED, "timed out", "TIMEOUT"), false],
      [failure(status.UNAVAILABLE, "leader did not answer", "FORWARD_FAILED"), false],
      [failure(status.UNAVAILABLE, "no audit sink", "AUDIT_UNAVAILABLE"), true],
      // Refused by the audit of a follower after it forwarded the write: the leader may have done it.
      [failure(status.UNAVAILABLE, "no audit sink, forwarded", "AUDIT_FAILED_AFTER_FORWARD"), false],
      // Done, but its response entry could not be written: the answer was withheld.
      [failure(status.UNAVAILABLE, "no audit sink, done", "AUDIT_FAILED_AFTER_ACT"), false],
      [failure(status.ABORTED, "cas", "CAS_MISMATCH"), false],
      // Sealed while it served the call: a write may have been proposed before.
      [failure(status.FAILED_PRECONDITION, "the barrier is sealed", "BARRIER_SEALED"), false],
    ];
    expect(cases.map(([error]) => decide(error, false).retry)).toEqual(cases.map(([, retry]) => retry));
    expect(
      decide(failure(status.RESOURCE_EXHAUSTED, "slow down", "RATE_LIMITED", 250), false).waitAtLeastMs,
    ).toBe(250);
    // A removed node is left for a member; so is one whose audit fails (another's may not), while
    // an election or a rate limit is waited out where it is.
    const switches = (reason: string) =>
      decide(failure(status.UNAVAILABLE, reason, reason), false).switchEndpoint;
    expect(["REMOVED", "AUDIT_UNAVAILABLE", "SEALED", "NO_LEADER"].map(switches)).toEqual([
      true,
      true,
      true,
      true,
    ]);
    expect(["TRANSFER_IN_PROGRESS", "RATE_LIMITED"].map(switches)).toEqual([false, false]);
  });

  it("retries a read after any transient failure, never after an answer", () => {
    expect(decide(failure(status.UNAVAILABLE, "Connection dropped"), true)).toMatchObject({
      retry: true,
      switchEndpoint: true,
    });
    expect(decide(failure(status.DEADLINE_EXCEEDED, "Deadline exceeded"), true).retry).toBe(true);
    expect(decide(failure(status.NOT_FOUND, "no secret", "NOT_FOUND"), true).retry).toBe(false);
    expect(decide(failure(status.PERMISSION_DENIED, "no", "PERMISSION_DENIED"), true).retry).toBe(false);
    // The node was sealed while it served the read (its operator sealed it): another node may serve.
    expect(
      decide(failure(status.FAILED_PRECONDITION, "the barrier is sealed", "BARRIER_SEALED"), true),
    ).toMatchObject({ retry: true, switchEndpoint: true });
    expect(
      decide(failure(status.FAILED_PRECONDITION, "not initialized", "NOT_INITIALIZED"), true).retry,
    ).toBe(false);
  });

  it("waits a random time up to base·2^attempt, capped", () => {
    expect(backoffMs(3, 50, 2000, () => 0.999)).toBe(399);
    expect(backoffMs(10, 50, 2000, () => 0.5)).toBe(1000);
    expect(backoffMs(1, 50, 2000, () => 0)).toBe(0);
  });

  it("moves to an endpoint not tried since the last pause at once, and backs off once all have failed", () => {
    const move = decide(failure(status.UNAVAILABLE, "no leader", "NO_LEADER"), true);
    const backoff = () => 700;
    // Three endpoints: the first two moves go at once, the third (every one has failed) waits.
    const first = nextWait(move, 0, 3, backoff);
    expect(first).toEqual({ waitMs: 0, movesInARow: 1 });
    const second = nextWait(move, first.movesInARow, 3, backoff);
    expect(second).toEqual({ waitMs: 0, movesInARow: 2 });
    expect(nextWait(move, second.movesInARow, 3, backoff)).toEqual({ waitMs: 700, movesInARow: 0 });
    // One endpoint: nowhere to move, so every retry backs off.
    expect(nextWait(move, 0, 1, backoff)).toEqual({ waitMs: 700, movesInARow: 0 });
    // A retry that stays (an election in progress) backs off, and starts the count again.
    const stay = decide(failure(status.UNAVAILABLE, "transfer", "TRANSFER_IN_PROGRESS"), true);
    expect(nextWait(stay, 1, 3, backoff)).toEqual({ waitMs: 700, movesInARow: 0 });
    // What the node asked for is waited even on a move.
    const asked = decide(failure(status.UNAVAILABLE, "audit", "AUDIT_UNAVAILABLE", 250), true);
    expect(nextWait(asked, 0, 3, backoff)).toEqual({ waitMs: 250, movesInARow: 1 });
  });

  it("says what an unverifiable certificate means, without Node 24's hint about the system's CAs", () => {
    const said = "unable to verify the first certificate";
    const meaning =
      "the node's certificate is not signed by a CA in the client's CA bundle (STRONGROOM_CACERT, --cacert, tls.caFile)";
    // Node 20 and 22, then Node 24: the client never uses the system's CA store, so the hint goes.
    for (const cause of [
      said,
      `${said}; if the root CA is installed locally, try running Node.js with --use-system-ca`,
    ]) {
      const details = `No connection established. Last error: Error: ${cause} (2026-12-02T07:00:00.000Z)`;
      expect(describeConnectionFailure(details, "127.0.0.1:8200")).toBe(
        `cannot connect to 127.0.0.1:8200: ${said}: ${meaning}`,
      );
    }
  });

  it("says when a failed write's outcome is unknown", () => {
    expect(fromServiceError(failure(status.UNAVAILABLE, "Connection dropped"), "a:1", 1).outcomeUnknown).toBe(
      true,
    );
    expect(
      fromServiceError(failure(status.UNAVAILABLE, "No connection established"), "a:1", 1).outcomeUnknown,
    ).toBe(false);
    // The deadline ended while the call waited for a connection (grpc-js's words): it never left,
    // so a write is known not to have applied, and may be sent again. Once it was sent, not.
    const waited = failure(status.DEADLINE_EXCEEDED, "Deadline exceeded after 0.001s,Waiting for LB pick");
    expect(fromServiceError(waited, "a:1", 1).outcomeUnknown).toBe(false);
    expect(decide(waited, false)).toMatchObject({ retry: true, switchEndpoint: true });
    const sent = failure(
      status.DEADLINE_EXCEEDED,
      "Deadline exceeded after 1.002s,LB pick: 0.001s,remote_addr=127.0.0.1:8200",
    );
    expect(fromServiceError(sent, "a:1", 1).outcomeUnknown).toBe(true);
    expect(decide(sent, false).retry).toBe(false);
    expect(fromServiceError(failure(status.ABORTED, "cas", "CAS_MISMATCH"), "a:1", 1).outcomeUnknown).toBe(
      false,
    );
    const forwarded = failure(status.UNAVAILABLE, "no audit sink, forwarded", "AUDIT_FAILED_AFTER_FORWARD");
    expect(fromServiceError(forwarded, "a:1", 1).outcomeUnknown).toBe(true);
    // With a request id, the write is sent again: the cluster applies it once.
    expect(decide(forwarded, true)).toMatchObject({ retry: true, switchEndpoint: true });
    const withheld = failure(status.UNAVAILABLE, "no audit sink, done", "AUDIT_FAILED_AFTER_ACT");
    expect(fromServiceError(withheld, "a:1", 1).outcomeUnknown).toBe(true);
    expect(decide(withheld, true)).toMatchObject({ retry: true });
  });

  it("says what a message past a node's limit means, and does not retry it", () => {
    const tooLarge = failure(
      status.RESOURCE_EXHAUSTED,
      "Received message larger than max (3000050 vs 2097152)",
    );
    expect(fromServiceError(tooLarge, "a:1", 1).message).toBe(
      "the message is 3000050 bytes, more than the 2097152 its receiver takes (a node takes requests up to its requests.messageBytesMax, and a secret's value up to 1 MiB)",
    );
    expect(decide(tooLarge, true).retry).toBe(false);
    // A node's own RESOURCE_EXHAUSTED keeps its words.
    const busy = failure(status.RESOURCE_EXHAUSTED, "too many watchers", "WATCHERS_EXHAUSTED");
    expect(fromServiceError(busy, "a:1", 1).message).toBe("too many watchers (WATCHERS_EXHAUSTED)");
  });
});

describe("read cache", () => {
  function setUp(jitter = 0) {
    let now = 0;
    const cache = new ReadCache<string>(
      { ttlMs: 100, jitter, maxEntries: 2, staleIfError: true },
      () => now,
      () => 1,
    );
    let fetches = 0;
    let down = false;
    const get = (key: string) =>
      cache.get(
        key,
        async () => {
          fetches++;
          if (down) throw new Error("unreachable");
          return `${key}@${now}`;
        },
        () => true,
      );
    return {
      cache,
      get,
      advance: (ms: number) => (now += ms),
      fetches: () => fetches,
      setDown: (value: boolean) => (down = value),
    };
  }

  it("answers from a fresh entry, fetches again once it expired", async () => {
    const { get, advance, fetches, cache } = setUp();
    expect(await get("a")).toBe("a@0");
    advance(99);
    expect(await get("a")).toBe("a@0");
    advance(1);
    expect(await get("a")).toBe("a@100");
    expect(fetches()).toBe(2);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2 });
  });

  it("shortens lifetimes by the jitter", async () => {
    const { get, advance, fetches } = setUp(0.5);
    await get("a");
    advance(50);
    await get("a");
    expect(fetches()).toBe(2);
  });

  it("keeps at most its bound, dropping the least recently used", async () => {
    const { get, fetches, cache } = setUp();
    await get("a");
    await get("b");
    await get("a");
    await get("c");
    expect(cache.stats().entries).toBe(2);
    await get("a");
    await get("b");
    expect(fetches()).toBe(4);
  });

  it("does not keep a read that was in flight when its key changed", async () => {
    const cache = new ReadCache<string>(
      { ttlMs: 100, jitter: 0, maxEntries: 10, staleIfError: false },
      () => 0,
    );
    let fetches = 0;
    const pending: ((value: string) => void)[] = [];
    const get = (key: string) =>
      cache.get(
        key,
        () => {
          fetches++;
          return new Promise<string>((resolve) => pending.push(resolve));
        },
        () => false,
      );
    // The event for "a" comes while its read is on the wire: the read is answered, not kept.
    const first = get("a");
    cache.invalidate("a");
    pending.shift()?.("old");
    expect(await first).toBe("old");
    const second = get("a");
    expect(fetches).toBe(2);
    pending.shift()?.("new");
    expect(await second).toBe("new");
    expect(await get("a")).toBe("new");
    // An event for another key, or none, leaves a read to be kept; a clear drops every one.
    const other = get("b");
    cache.invalidate("c");
    pending.shift()?.("b1");
    await other;
    expect(await get("b")).toBe("b1");
    const cleared = get("d");
    cache.clear();
    pending.shift()?.("d1");
    await cleared;
    expect(cache.stats().entries).toBe(0);
    expect(fetches).toBe(4);
  });

  it("answers an expired entry while the source is down, and fails what it never had", async () => {
    const { get, advance, setDown, cache } = setUp();
    await get("a");
    advance(500);
    setDown(true);
    expect(await get("a")).toBe("a@0");
    expect(cache.stats()).toMatchObject({ staleServed: 1, lastStaleAgeMs: 500 });
    await expect(get("b")).rejects.toThrow("unreachable");
    cache.invalidate("a");
    await expect(get("a")).rejects.toThrow("unreachable");
  });
});
