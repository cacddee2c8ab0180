// One attempt at entering a threshold of shares, one share per call, on one node: how unseal,
// rekey and seal migration take shares from several operators at several terminals. Each share
// is checked as it arrives, so a typo or a wrong share is refused then (and the shares already
// entered are kept); the attempt has a nonce, so an operator who continues someone else's attempt
// (or a stale one) learns it; and a half-finished attempt expires, so shares do not sit in memory
// waiting for an operator who went home. The shares are held in memory only and zeroed when the
// attempt completes, is reset or expires.

import { randomBytes } from "node:crypto";
import { SealError } from "../errors.js";
import { checkShare, combineShares, type ShareSetDescriptor } from "./share-set.js";
import type { ParsedShare } from "./share-text.js";

export const defaultAttemptTimeoutMs = 10 * 60 * 1000;

export interface ShareCollectorOptions {
  /** A half-finished attempt is discarded this long after its first share (default 10 minutes). */
  readonly attemptTimeoutMs?: number;
  readonly now?: () => number;
}

export interface ShareProgress {
  /** Shares entered so far in the current attempt. */
  readonly progress: number;
  readonly threshold: number;
  /** The current attempt's nonce, or "" when none is in progress. */
  readonly nonce: string;
  /** When the current attempt expires (ms since the epoch), or 0. */
  readonly expiresAt: number;
}

export type ShareSubmission =
  | ({ readonly complete: false } & ShareProgress)
  | { readonly complete: true; readonly nonce: string; readonly secret: Uint8Array };

interface Attempt {
  readonly nonce: string;
  readonly setId: string;
  readonly startedAt: number;
  readonly shares: ParsedShare[];
}

export class ShareCollector {
  private attempt: Attempt | null = null;
  private readonly attemptTimeoutMs: number;
  private readonly now: () => number;

  constructor(options: ShareCollectorOptions = {}) {
    const timeout = options.attemptTimeoutMs ?? defaultAttemptTimeoutMs;
    if (!Number.isSafeInteger(timeout) || timeout < 1000) {
      throw new SealError(
        "INVALID_ARGUMENT",
        `attemptTimeoutMs must be an integer of at least 1000, got ${timeout}`,
      );
    }
    this.attemptTimeoutMs = timeout;
    this.now = options.now ?? Date.now;
  }

  progress(descriptor: ShareSetDescriptor): ShareProgress {
    const attempt = this.current(descriptor);
    return {
      progress: attempt?.shares.length ?? 0,
      threshold: descriptor.threshold,
      nonce: attempt?.nonce ?? "",
      expiresAt: attempt === null ? 0 : attempt.startedAt + this.attemptTimeoutMs,
    };
  }

  /**
   * Adds one share. A nonce, when given, must name the attempt in progress; without one the share
   * joins the attempt in progress or starts one. When the threshold is reached the shares are
   * combined, the attempt ends, and the secret is returned (the caller zeroes it).
   */
  async submit(descriptor: ShareSetDescriptor, text: string, nonce?: string): Promise<ShareSubmission> {
    let attempt = this.current(descriptor);
    if (nonce !== undefined && nonce !== "" && nonce !== attempt?.nonce) {
      throw new SealError(
        "NONCE_MISMATCH",
        attempt === null
          ? "no attempt with that nonce is in progress (it completed, was reset or expired): start again without a nonce"
          : "the nonce does not match the attempt in progress (someone else started one): use its nonce, or reset it",
      );
    }
    const share = checkShare(descriptor, text);
    if (attempt?.shares.some((entered) => entered.index === share.index)) {
      share.payload.fill(0);
      throw new SealError("SHARE_DUPLICATE", `share ${share.index} was already entered in this attempt`);
    }
    if (attempt === null) {
      attempt = {
        nonce: randomBytes(16).toString("hex"),
        setId: descriptor.id,
        startedAt: this.now(),
        shares: [],
      };
      this.attempt = attempt;
    }
    attempt.shares.push(share);
    if (attempt.shares.length < descriptor.threshold) {
      return { complete: false, ...this.progress(descriptor) };
    }
    try {
      const secret = await combineShares(descriptor, attempt.shares);
      return { complete: true, nonce: attempt.nonce, secret };
    } finally {
      this.reset();
    }
  }

  /** Discards the attempt in progress and zeroes its shares. */
  reset(): void {
    for (const share of this.attempt?.shares ?? []) share.payload.fill(0);
    this.attempt = null;
  }

  /** The attempt in progress for this set, after dropping one that expired or belongs to an older set. */
  private current(descriptor: ShareSetDescriptor): Attempt | null {
    const attempt = this.attempt;
    if (attempt === null) return null;
    if (attempt.setId !== descriptor.id || this.now() - attempt.startedAt >= this.attemptTimeoutMs) {
      this.reset();
      return null;
    }
    return attempt;
  }
}
