// The seals of one node, built from the replicated seal record: a Shamir seal when the record has
// unseal shares, a PKCS#11 seal when it has an HSM protector and this node is configured for the
// token. With both ("seal HA"), either one alone unseals: the HSM every day, the shares when the
// HSM or its key is lost. The node holds the root key of whichever seal unsealed first. With an
// HSM alone, a threshold of recovery shares is what lets the HSM unseal a node again once an
// operator sealed it: the shares unlock nothing, they prove that enough share holders agree.

import { SealError } from "./errors.js";
import type { Pkcs11Client } from "./pkcs11/pkcs11-client.js";
import { Pkcs11Seal } from "./pkcs11/pkcs11-seal.js";
import { HeldRootKey, type Seal, type SealStatus } from "./seal.js";
import { checkAuthorization } from "./seal-operations.js";
import {
  pkcs11ProtectorOf,
  type SealRecord,
  type SealType,
  shamirProtectorOf,
  verifyRootKey,
} from "./seal-record.js";
import { ShamirSeal } from "./shares/shamir-seal.js";
import { ShareCollector, type ShareCollectorOptions } from "./shares/share-collector.js";

export interface SealSetOptions {
  /** This node's client for the HSM; without it an HSM protector cannot be used here. */
  readonly pkcs11Client?: Pkcs11Client;
  readonly shareAttempt?: ShareCollectorOptions;
}

export interface SealSetStatus {
  readonly sealed: boolean;
  /** The protectors in the seal record. */
  readonly types: readonly SealType[];
  /** Which seal gave the root key; "carried" when it was kept across a change of the record. */
  readonly unsealedBy: SealType | "carried" | null;
  /** The Shamir seal's status (threshold, shares, progress, nonce), if the record has one. */
  readonly shamir: SealStatus | null;
  /** Whether this node can use the record's HSM protector (it is configured for the token). */
  readonly hsmUsable: boolean;
  /** The recovery shares of an HSM-only seal, and the attempt in progress to authorize an HSM unseal. */
  readonly recovery: RecoveryStatus | null;
}

export interface RecoveryStatus {
  readonly threshold: number;
  readonly shares: number;
  readonly progress: number;
  readonly nonce: string;
}

export class SealSet {
  private readonly shamir: ShamirSeal | null;
  private readonly pkcs11: Pkcs11Seal | null;
  /** Recovery shares entered towards an HSM unseal (an HSM-only record), else null. */
  private readonly recoveryCollector: ShareCollector | null;
  private unsealedBy: Seal | null = null;
  /** A root key carried over from the previous record of an unsealed node (see adoptRootKey). */
  private readonly adopted = new HeldRootKey();

  constructor(
    readonly record: SealRecord,
    options: SealSetOptions = {},
  ) {
    const shamir = shamirProtectorOf(record);
    const hsm = pkcs11ProtectorOf(record);
    this.shamir = shamir === undefined ? null : new ShamirSeal(record, shamir, options.shareAttempt);
    this.pkcs11 =
      hsm === undefined || options.pkcs11Client === undefined
        ? null
        : new Pkcs11Seal(record, hsm, options.pkcs11Client);
    this.recoveryCollector = record.recovery === null ? null : new ShareCollector(options.shareAttempt);
  }

  status(): SealSetStatus {
    return {
      sealed: this.unsealedBy === null && !this.adopted.held,
      types: this.record.protectors.map((protector) => protector.type),
      unsealedBy: this.unsealedBy?.type ?? (this.adopted.held ? "carried" : null),
      shamir: this.shamir?.status() ?? null,
      hsmUsable: this.pkcs11 !== null,
      recovery: this.recoveryStatus(),
    };
  }

  /** True when the record has an HSM protector this node can use (so it should auto-unseal). */
  canAutoUnseal(): boolean {
    return this.pkcs11 !== null;
  }

  /** One unseal share from an operator; resolves to the status after it. */
  async unsealWithShare(share: string, nonce?: string): Promise<SealSetStatus> {
    if (!this.status().sealed) return this.status();
    if (this.shamir === null) {
      throw new SealError(
        "INVALID_ARGUMENT",
        "this cluster has no unseal shares: it unseals with its HSM (recovery shares authorize operations, they do not unseal)",
      );
    }
    await this.shamir.unseal(nonce === undefined ? { share } : { share, nonce });
    if (!this.shamir.status().sealed) this.unsealedBy = this.shamir;
    return this.status();
  }

  /**
   * One recovery share of an HSM-only seal towards letting the HSM unseal this node again;
   * resolves true once a threshold of them was checked against the record (the caller then asks
   * the HSM), false while more are needed or when the node is not sealed.
   */
  async authorizeHsmUnseal(share: string, nonce?: string): Promise<boolean> {
    const recovery = this.record.recovery;
    if (this.recoveryCollector === null || recovery === null) {
      throw new SealError(
        "INVALID_ARGUMENT",
        "this cluster has unseal shares: give those (recovery shares exist only with an HSM alone)",
      );
    }
    if (this.pkcs11 === null) {
      throw new SealError(
        "INVALID_ARGUMENT",
        "this node is not configured for the cluster's HSM (no pkcs11 section in its config): no share can unseal it",
      );
    }
    if (!this.status().sealed) return false;
    const submission = await this.recoveryCollector.submit(recovery, share, nonce);
    if (!submission.complete) return false;
    try {
      checkAuthorization(this.record, submission.secret);
    } finally {
      submission.secret.fill(0);
    }
    return true;
  }

  /** Asks the HSM for the root key. */
  async unsealWithHsm(): Promise<SealSetStatus> {
    if (!this.status().sealed) return this.status();
    if (this.pkcs11 === null) {
      throw new SealError(
        "INVALID_ARGUMENT",
        pkcs11ProtectorOf(this.record) === undefined
          ? "this cluster has no HSM seal"
          : "this node is not configured for the cluster's HSM (no pkcs11 section in its config)",
      );
    }
    await this.pkcs11.unseal();
    this.unsealedBy = this.pkcs11;
    this.shamir?.resetAttempt();
    return this.status();
  }

  /**
   * Takes the root key of a node that was unsealed under the previous seal record (a rekey or
   * migration changes how the key is protected, never the key), after checking it against this
   * record. The set owns the buffer from then on.
   */
  adoptRootKey(rootKey: Uint8Array): void {
    try {
      verifyRootKey(this.record, rootKey, "the key kept across the seal record change");
    } catch (error) {
      rootKey.fill(0);
      throw error;
    }
    this.adopted.take(rootKey);
  }

  /** Discards a half-entered attempt (unseal shares, or recovery shares). */
  resetShareAttempt(): void {
    this.shamir?.resetAttempt();
    this.recoveryCollector?.reset();
  }

  rootKey(): Uint8Array {
    if (this.unsealedBy !== null) return this.unsealedBy.rootKey();
    if (this.adopted.held) return this.adopted.get("shamir");
    throw new SealError("SEALED", "the node is sealed: unseal it first");
  }

  seal(): void {
    this.shamir?.seal();
    this.pkcs11?.seal();
    this.recoveryCollector?.reset();
    this.adopted.clear();
    this.unsealedBy = null;
  }

  close(): void {
    this.seal();
    this.shamir?.close();
    this.pkcs11?.close();
  }

  private recoveryStatus(): RecoveryStatus | null {
    const recovery = this.record.recovery;
    if (recovery === null || this.recoveryCollector === null) return null;
    const { progress, nonce } = this.recoveryCollector.progress(recovery);
    return { threshold: recovery.threshold, shares: recovery.count, progress, nonce };
  }
}
