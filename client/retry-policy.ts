// When a failed call is tried again, and how long to wait first. Reads, and writes with a request
// id (which the cluster applies once however often they come), are retried after any failure that
// is not the answer itself (unavailable, a timeout, a sealed node); other writes only when they
// certainly did not take effect: they never left this process, or the cluster refused them before
// proposing (no leader yet, a sealed leader, a dropped proposal, a rate limit). Such a write whose
// outcome is unknown (a timeout after it was sent, a node sealed while it served the call) is
// never retried: the caller decides, reading first or writing with check-and-set. A move to another
// endpoint goes at once until every one has failed in a row; then waits are exponential with full
// jitter, inside the deadline.

import { randomInt } from "node:crypto";
import { type ServiceError, status } from "@grpc/grpc-js";
import { neverSent, reasonTrailer, retryAfterTrailer } from "./errors.js";

/** Refusals that say this node, not the cluster, cannot serve now: the next endpoint may. */
const leftForAnother = new Set(["SEALED", "NO_LEADER", "REMOVED", "AUDIT_UNAVAILABLE"]);

/** Reasons with which the cluster refused a call before doing anything. */
const refusedBeforeWork = new Set([
  "NO_LEADER",
  "NOT_LEADER",
  "LEADER_SEALED",
  "TRANSFER_IN_PROGRESS",
  "PROPOSAL_DROPPED",
  "AUDIT_UNAVAILABLE",
  "ACCESS_UNAVAILABLE",
  "SEALED",
  "RATE_LIMITED",
  "READ_QUEUE_FULL",
  // The node was removed from the cluster: it refused before proposing or reading.
  "REMOVED",
]);

/**
 * The node was sealed while it served the call (its barrier refused to encrypt or decrypt): a read
 * waiting for its read index when an operator sealed the node, say. Whether a write took effect
 * first is not known; an idempotent call goes to another node.
 */
const sealedDuringCall = "BARRIER_SEALED";

/**
 * Whether the node that answered `reason` serves nothing until an operator acts (sealed, removed):
 * once every endpoint has said so, a call ends at once rather than at its deadline.
 */
export function refusesUntilOperatorActs(reason: string): boolean {
  return reason === "SEALED" || reason === sealedDuringCall || reason === "REMOVED";
}

export interface RetryDecision {
  readonly retry: boolean;
  /** Try another endpoint next (this one is down, sealed or not serving). */
  readonly switchEndpoint: boolean;
  /** The server asked to wait at least this long. */
  readonly waitAtLeastMs: number;
}

/** `idempotent`: the call may be sent again whatever became of it (a read, a write with a request id). */
export function decide(error: ServiceError, idempotent: boolean): RetryDecision {
  const reason = String(error.metadata?.get(reasonTrailer)[0] ?? "");
  const retryAfter = Number(error.metadata?.get(retryAfterTrailer)[0] ?? 0);
  const waitAtLeastMs = Number.isFinite(retryAfter) ? retryAfter : 0;
  if (refusedBeforeWork.has(reason)) {
    // A sealed node, one that knows no leader (cut off from the others, perhaps), one removed from
    // the cluster or one whose audit fails (its disk full, say) is left for another; the rest (an
    // election, a rate limit) are waited out.
    return { retry: true, switchEndpoint: leftForAnother.has(reason), waitAtLeastMs };
  }
  if (neverSent(error)) return { retry: true, switchEndpoint: true, waitAtLeastMs };
  if (!idempotent) return { retry: false, switchEndpoint: false, waitAtLeastMs };
  if (reason === sealedDuringCall) return { retry: true, switchEndpoint: true, waitAtLeastMs };
  const transient =
    error.code === status.UNAVAILABLE ||
    error.code === status.DEADLINE_EXCEEDED ||
    error.code === status.CANCELLED ||
    reason === "TIMEOUT";
  return { retry: transient, switchEndpoint: transient, waitAtLeastMs };
}

/** Whether the failure speaks of the endpoint itself (for its circuit breaker). */
export function isEndpointFailure(error: ServiceError): boolean {
  return neverSent(error) || (error.code === status.UNAVAILABLE && !error.metadata?.get(reasonTrailer)[0]);
}

/** A uniform random number in [0, 1), for jitter (node:crypto, as everywhere in the project). */
export function uniform(): number {
  return randomInt(0, 2 ** 31) / 2 ** 31;
}

/**
 * The wait before the next attempt, and how many endpoints in a row the call has now moved on from
 * without a pause. A move to an endpoint not tried since the last pause goes at once (after what
 * the server asked for, if anything): the node that failed said nothing of the next one, and a
 * random wait there only added to a failover (up to 100 ms at the first retry, while the other
 * side of a partition had a leader already). Once every endpoint has failed in a row, or the call
 * stays where it is (an election, a rate limit), it backs off.
 */
export function nextWait(
  decision: RetryDecision,
  movesInARow: number,
  endpoints: number,
  backoff: () => number,
): { readonly waitMs: number; readonly movesInARow: number } {
  if (decision.switchEndpoint && movesInARow + 1 < endpoints)
    return { waitMs: decision.waitAtLeastMs, movesInARow: movesInARow + 1 };
  return { waitMs: Math.max(decision.waitAtLeastMs, backoff()), movesInARow: 0 };
}

/** Exponential backoff with full jitter: a random wait up to base·2^attempt, capped. */
export function backoffMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = uniform,
): number {
  return Math.floor(random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20)));
}
