// Which endpoint a balanced read goes to: the cheaper of two picked at random ("power of two
// choices"), where an endpoint's cost is its reads' peak-EWMA latency times the reads it has in
// flight plus one (as Finagle's and Linkerd's balancers do). Two at random, not the cheapest of all:
// many clients that learn the same costs do not all pile onto the one node that looked cheapest.
//
// Peak EWMA: a latency above the estimate replaces it at once (a node that slows down is avoided
// from its first slow answer); one below pulls it down with a weight that grows with the time since
// the last sample, and the estimate decays toward zero while the endpoint is not used, so a node
// that was slow is tried again after a while instead of never.
//
// A node whose read failed (down, sealed, stalled, overloaded) is avoided for a while instead: it
// fails fast, and by its latency alone would look the cheapest. Avoided, it is not picked (unless
// every endpoint is); after, one read tries it again.

/** How fast an estimate forgets, in ms: after this long unused it is down to 1/e of itself. */
export const loadDecayMs = 10_000;

/** The latency taken for a read in flight where none has answered yet: a day, dearer than any seen. */
const unknownLatencyMs = 86_400_000;

/** One endpoint's balanced reads: in flight, and the latency estimate. */
export class EndpointLoad {
  /** Balanced reads sent here and not yet settled. */
  inFlight = 0;
  private estimateMs = 0;
  private stampMs: number;
  /** Whether any latency has been seen (an endpoint never used costs nothing, unless busy). */
  private observed = false;
  /** Until when a failed read keeps balanced reads away (0: not avoided). */
  private avoidedUntilMs = 0;

  constructor(
    nowMs: number,
    private readonly decayMs: number = loadDecayMs,
  ) {
    this.stampMs = nowMs;
  }

  /** Notes a read's latency, `latencyMs`, seen at `nowMs`. */
  observe(latencyMs: number, nowMs: number): void {
    const decayed = this.decayedTo(nowMs);
    this.estimateMs =
      latencyMs > decayed ? latencyMs : decayed + (latencyMs - decayed) * (1 - this.weight(nowMs));
    this.stampMs = Math.max(this.stampMs, nowMs);
    this.observed = true;
  }

  /** Keeps balanced reads away until `untilMs` (a read here failed). */
  avoidUntil(untilMs: number): void {
    this.avoidedUntilMs = Math.max(this.avoidedUntilMs, untilMs);
  }

  /** Whether balanced reads keep away at `nowMs`. */
  avoided(nowMs: number): boolean {
    return nowMs < this.avoidedUntilMs;
  }

  /** The latency estimate at `nowMs`, decayed for the time unused. */
  latencyMs(nowMs: number): number {
    return this.decayedTo(nowMs);
  }

  /**
   * What one more read here is expected to cost at `nowMs`. An endpoint with reads in flight and no
   * latency seen yet is dearer than any that has one (else every read started before its first
   * answer would go to it), and dearer the more it has: among such, the one with fewest.
   */
  cost(nowMs: number): number {
    if (!this.observed) return this.inFlight * unknownLatencyMs;
    return this.decayedTo(nowMs) * (this.inFlight + 1);
  }

  private decayedTo(nowMs: number): number {
    return this.estimateMs * this.weight(nowMs);
  }

  /** The weight the estimate keeps after the time since the last sample: e^(-Δt/decay). */
  private weight(nowMs: number): number {
    return Math.exp(-Math.max(0, nowMs - this.stampMs) / this.decayMs);
  }
}

/**
 * The cheaper of two candidates picked at random (`random` in [0, 1)); the only one, if one. Ties
 * go to the first picked, itself random.
 */
export function cheaperOfTwo<T>(
  candidates: readonly T[],
  cost: (candidate: T) => number,
  random: () => number,
): T {
  if (candidates.length === 0) throw new RangeError("cheaperOfTwo: no candidates");
  const first = Math.floor(random() * candidates.length);
  if (candidates.length === 1) return candidates[first] as T;
  // The second from the others, each as likely.
  const offset = 1 + Math.floor(random() * (candidates.length - 1));
  const a = candidates[first] as T;
  const b = candidates[(first + offset) % candidates.length] as T;
  return cost(b) < cost(a) ? b : a;
}
