// Brute force against tokens: an identity that keeps presenting tokens that are not valid is made
// to wait, doubling with each failure past a few free ones (a typo or an expired token is not an
// attack), up to a cap. A valid token clears the count. Per node and in memory: guessing a
// 256-bit token is hopeless anyway; this keeps a misbehaving client from turning into load and
// makes an attack visible (strongroom_token_failures_total).

import { NodeError } from "../errors.js";

export interface TokenBackoffOptions {
  /** Failures answered at once; the next presentation after them waits. */
  readonly freeFailures: number;
  readonly baseMs: number;
  readonly maxMs: number;
  /** Identities tracked at once; the oldest is forgotten beyond it. */
  readonly identitiesMax: number;
  readonly now?: () => number;
}

export const defaultTokenBackoff: TokenBackoffOptions = {
  freeFailures: 5,
  baseMs: 1000,
  maxMs: 60_000,
  identitiesMax: 10_000,
};

export class TokenBackoff {
  private readonly failures = new Map<string, { count: number; until: number }>();
  private readonly now: () => number;

  constructor(private readonly options: TokenBackoffOptions = defaultTokenBackoff) {
    this.now = options.now ?? Date.now;
  }

  /** Refuses a presentation from `identity` while it must wait. */
  check(identity: string): void {
    const entry = this.failures.get(identity);
    if (entry === undefined) return;
    const waitMs = entry.until - this.now();
    if (waitMs > 0) {
      throw new NodeError(
        "RATE_LIMITED",
        `too many invalid tokens from ${identity}; try again in ${Math.ceil(waitMs / 1000)} s`,
        { retryAfterMs: waitMs },
      );
    }
  }

  failed(identity: string): void {
    const previous = this.failures.get(identity);
    const count = (previous?.count ?? 0) + 1;
    const over = count - this.options.freeFailures;
    const waitMs = over < 0 ? 0 : Math.min(this.options.maxMs, this.options.baseMs * 2 ** Math.min(over, 30));
    this.failures.delete(identity);
    this.failures.set(identity, { count, until: this.now() + waitMs });
    if (this.failures.size > this.options.identitiesMax) {
      const oldest = this.failures.keys().next().value;
      if (oldest !== undefined) this.failures.delete(oldest);
    }
  }

  succeeded(identity: string): void {
    this.failures.delete(identity);
  }
}
