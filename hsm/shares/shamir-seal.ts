// The Shamir seal: operators enter a threshold of shares (one per call, from any terminal); the
// secret they rebuild opens the root key stored in the seal record. A typo or a wrong share is
// refused when it is entered; the attempt in progress has a nonce and a timeout (ShareCollector).

import { SealError } from "../errors.js";
import { HeldRootKey, type Seal, type SealStatus, type UnsealInput } from "../seal.js";
import {
  type SealRecord,
  type ShamirProtector,
  unwrapRootKeyWithShares,
  verifyRootKey,
} from "../seal-record.js";
import { ShareCollector, type ShareCollectorOptions } from "./share-collector.js";

export class ShamirSeal implements Seal {
  readonly type = "shamir";
  private readonly rootKeyHeld = new HeldRootKey();
  private readonly collector: ShareCollector;

  constructor(
    private readonly record: SealRecord,
    private readonly protector: ShamirProtector,
    options: ShareCollectorOptions = {},
  ) {
    this.collector = new ShareCollector(options);
  }

  status(): SealStatus {
    const { progress, nonce } = this.collector.progress(this.protector.shares);
    return {
      type: this.type,
      sealed: !this.rootKeyHeld.held,
      threshold: this.protector.shares.threshold,
      shares: this.protector.shares.count,
      progress,
      nonce,
    };
  }

  async unseal(input: UnsealInput = {}): Promise<SealStatus> {
    if (this.rootKeyHeld.held) return this.status();
    if (input.share === undefined) {
      throw new SealError("INVALID_ARGUMENT", "the Shamir seal unseals with shares: give one");
    }
    const submission = await this.collector.submit(this.protector.shares, input.share, input.nonce);
    if (!submission.complete) return this.status();
    try {
      const rootKey = unwrapRootKeyWithShares(this.protector, submission.secret);
      try {
        verifyRootKey(this.record, rootKey, `the shares of set ${this.protector.shares.id}`);
      } catch (error) {
        rootKey.fill(0);
        throw error;
      }
      this.rootKeyHeld.take(rootKey);
    } finally {
      submission.secret.fill(0);
    }
    return this.status();
  }

  /** Discards the unseal attempt in progress. */
  resetAttempt(): void {
    this.collector.reset();
  }

  rootKey(): Uint8Array {
    return this.rootKeyHeld.get(this.type);
  }

  seal(): void {
    this.rootKeyHeld.clear();
    this.collector.reset();
  }

  close(): void {
    this.seal();
  }
}
