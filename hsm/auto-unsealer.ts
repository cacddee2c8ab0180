// Unseals a node through its HSM on start, and keeps trying while the HSM is unreachable: with
// exponential backoff and full jitter (so a cluster restarted together does not hammer a shared
// HSM in lockstep), bounded by a maximum delay, until it succeeds or is stopped. Every failure is
// kept in status (code and message) for operators and metrics. A refused PIN is the one failure it
// does not retry: HSMs lock a token after a few wrong PINs, so it waits for `retryNow()` after the
// PIN is fixed.

import { SealError, type SealErrorCode } from "./errors.js";

export type AutoUnsealState = "idle" | "trying" | "waiting" | "unsealed" | "needs-operator" | "stopped";

export interface AutoUnsealStatus {
  readonly state: AutoUnsealState;
  readonly attempts: number;
  readonly failures: number;
  readonly lastError: { readonly code: SealErrorCode; readonly message: string } | null;
  /** When the next attempt is due (ms since the epoch), or 0. */
  readonly nextAttemptAt: number;
}

export interface AutoUnsealerOptions {
  readonly initialDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Uniform in [0, 1): the jitter. */
  readonly random?: () => number;
  readonly now?: () => number;
  /** Called with every failure (for logs: the message names the cause and never a secret). */
  readonly onFailure?: (error: SealError) => void;
}

const noRetryCodes: ReadonlySet<SealErrorCode> = new Set(["HSM_PIN_INCORRECT", "INVALID_ARGUMENT"]);

export class AutoUnsealer {
  private state: AutoUnsealState = "idle";
  private attempts = 0;
  private failures = 0;
  private lastError: SealError | null = null;
  private nextAttemptAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly onFailure: (error: SealError) => void;

  constructor(
    private readonly attempt: () => Promise<unknown>,
    options: AutoUnsealerOptions = {},
  ) {
    this.initialDelayMs = options.initialDelayMs ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
    if (!Number.isSafeInteger(this.initialDelayMs) || this.initialDelayMs < 1) {
      throw new SealError(
        "INVALID_ARGUMENT",
        `initialDelayMs must be a positive integer, got ${this.initialDelayMs}`,
      );
    }
    if (!Number.isSafeInteger(this.maxDelayMs) || this.maxDelayMs < this.initialDelayMs) {
      throw new SealError(
        "INVALID_ARGUMENT",
        `maxDelayMs must be an integer of at least initialDelayMs, got ${this.maxDelayMs}`,
      );
    }
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.onFailure = options.onFailure ?? (() => {});
  }

  status(): AutoUnsealStatus {
    return {
      state: this.state,
      attempts: this.attempts,
      failures: this.failures,
      lastError:
        this.lastError === null ? null : { code: this.lastError.code, message: this.lastError.message },
      nextAttemptAt: this.state === "waiting" ? this.nextAttemptAt : 0,
    };
  }

  /** Starts trying at once; resolves after the first attempt (whatever its outcome). */
  start(): Promise<void> {
    if (this.state !== "idle" && this.state !== "stopped") return this.running ?? Promise.resolve();
    return this.tryOnce();
  }

  /** Tries now, whatever the backoff says (after an operator fixed the HSM or its PIN). */
  retryNow(): Promise<void> {
    if (this.state === "unsealed" || this.state === "trying") return this.running ?? Promise.resolve();
    this.clearTimer();
    return this.tryOnce();
  }

  /** Stops retrying (the node is shutting down); an attempt in flight finishes. */
  stop(): void {
    this.clearTimer();
    if (this.state !== "unsealed") this.state = "stopped";
  }

  private tryOnce(): Promise<void> {
    this.state = "trying";
    this.attempts += 1;
    this.running = this.attempt().then(
      () => {
        this.state = this.state === "stopped" ? "stopped" : "unsealed";
        this.lastError = null;
      },
      (error: unknown) => this.failed(error),
    );
    return this.running;
  }

  private failed(error: unknown): void {
    const failure =
      error instanceof SealError
        ? error
        : new SealError(
            "HSM_ERROR",
            `auto-unseal failed: ${error instanceof Error ? error.message : String(error)}`,
            {
              cause: error,
            },
          );
    this.failures += 1;
    this.lastError = failure;
    this.onFailure(failure);
    if (this.state === "stopped") return;
    if (noRetryCodes.has(failure.code)) {
      this.state = "needs-operator";
      return;
    }
    // Full jitter: a uniform delay up to the capped exponential backoff.
    const ceiling = Math.min(this.maxDelayMs, this.initialDelayMs * 2 ** Math.min(this.failures - 1, 30));
    const delay = Math.max(1, Math.floor(this.random() * ceiling));
    this.state = "waiting";
    this.nextAttemptAt = this.now() + delay;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.tryOnce();
    }, delay);
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
