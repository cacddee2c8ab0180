// The node's seal state: the seal record and keyring as the replicated state holds them, the
// seals built from the record, the HSM auto-unseal loop, and the barrier they open. A node is
// initialized once the seal record is applied; it is unsealed once a seal gave the root key and the
// root key opened the keyring into the barrier. The root key stays with the seal set (in memory)
// so that a rotated keyring can be opened when it is applied, and is zeroed on seal().
//
// A node an operator sealed stays sealed until an operator unseals it: by unseal shares, or, with
// an HSM alone, by a threshold of recovery shares that lets the HSM unseal it again. Nothing else
// (a change of the seal record, an auto-unseal attempt still in flight) unseals it.

import {
  AutoUnsealer,
  decodeSealRecord,
  Pkcs11Client,
  type Pkcs11Config,
  type SealRecord,
  SealSet,
  type SealSetStatus,
} from "../hsm/index.js";
import { type Barrier, unwrapKeyring } from "../storage/barrier/index.js";
import { recordDigest, type SecretStateMachine, wellKnownRecords } from "../storage/state/index.js";
import { NodeError } from "./errors.js";

export interface SealKeeperOptions {
  readonly state: SecretStateMachine;
  readonly barrier: Barrier;
  /** This node's HSM, if it has one. */
  readonly pkcs11?: Pkcs11Config;
  readonly shareAttemptTimeoutMs: number;
  /** The longest wait between two HSM auto-unseal attempts (hsm/auto-unsealer.ts). */
  readonly autoUnsealRetryMaxMs: number;
  /** Called whenever the node becomes sealed or unsealed, or initialized. */
  readonly onChange: () => void;
  /** Called with each failed HSM auto-unseal attempt. */
  readonly onAutoUnsealFailure?: (message: string) => void;
}

export interface SealKeeperStatus {
  readonly initialized: boolean;
  readonly sealed: boolean;
  readonly seals: SealSetStatus | null;
  readonly hsmState: string;
  readonly hsmLastError: string;
}

export class SealKeeper {
  private record: SealRecord | null = null;
  private recordBytes: Uint8Array | null = null;
  private seals: SealSet | null = null;
  private unsealer: AutoUnsealer | null = null;
  /** Set by seal(), cleared by the next unseal: the HSM must not undo an operator's seal. */
  private sealedByOperator = false;
  private readonly pkcs11Client: Pkcs11Client | null;
  /** Reloads run one at a time, in the order the changes were applied. */
  private reloading: Promise<void> = Promise.resolve();

  constructor(private readonly options: SealKeeperOptions) {
    this.pkcs11Client = options.pkcs11 === undefined ? null : new Pkcs11Client(options.pkcs11);
  }

  /** The HSM client for init and migration on this node, or an error naming why there is none. */
  hsmClient(): Pkcs11Client {
    if (this.pkcs11Client === null) {
      throw new NodeError("INVALID_ARGUMENT", "this node has no HSM configured (seal.pkcs11 in its config)");
    }
    return this.pkcs11Client;
  }

  initialized(): boolean {
    return this.record !== null;
  }

  sealed(): boolean {
    return this.options.barrier.isSealed();
  }

  currentRecord(): SealRecord {
    if (this.record === null)
      throw new NodeError("NOT_INITIALIZED", "the cluster is not initialized: run init");
    return this.record;
  }

  /**
   * The seal record with the SHA-256 of the bytes it was read from: a new record made from it is
   * proposed as a check-and-set on that digest, so that it never overwrites a change it did not
   * see (another rekey, migration or HSM key rotation, or one not yet applied here).
   */
  currentRecordWithDigest(): { readonly record: SealRecord; readonly digest: Uint8Array } {
    const record = this.currentRecord();
    if (this.recordBytes === null)
      throw new NodeError("NOT_INITIALIZED", "the cluster is not initialized: run init");
    return { record, digest: recordDigest(this.recordBytes) };
  }

  /** The root key while unsealed (the seal set's own buffer). */
  rootKey(): Uint8Array {
    if (this.seals === null) throw new NodeError("SEALED", "the node is sealed");
    return this.seals.rootKey();
  }

  /**
   * A copy of the root key, which the caller zeroes when done: for work that awaits (HSM calls)
   * while it holds the key. The seal set's own buffer is zeroed when the seal record changes (a
   * rekey that commits meanwhile), which would change the key under such work.
   */
  rootKeyCopy(): Uint8Array {
    return Uint8Array.from(this.rootKey());
  }

  /** The seal set and auto-unsealer in use (for metrics), or null. */
  sealSet(): SealSet | null {
    return this.seals;
  }

  autoUnsealer(): AutoUnsealer | null {
    return this.unsealer;
  }

  status(): SealKeeperStatus {
    const auto = this.unsealer?.status();
    return {
      initialized: this.initialized(),
      sealed: this.sealed(),
      seals: this.seals?.status() ?? null,
      hsmState: auto?.state ?? this.hsmStateWithoutUnsealer(),
      hsmLastError: auto?.lastError?.message ?? "",
    };
  }

  /**
   * A node its operator sealed has no unsealer until the recovery shares start one: stopped. A
   * node that stayed unsealed across a change of the seal record (an HSM key rotation, a migration
   * to the HSM) has none either, and its HSM would unseal it at its next start: unsealed.
   */
  private hsmStateWithoutUnsealer(): string {
    if (this.seals === null || !this.seals.canAutoUnseal()) return "";
    if (this.sealedByOperator) return "stopped";
    return this.sealed() ? "" : "unsealed";
  }

  /**
   * Reads the seal record and keyring again (after they were applied or a snapshot restored).
   * One that fails (its caller logs why) does not stop the next: each reads the state anew.
   */
  reload(): Promise<void> {
    const reload = () => this.reloadNow();
    this.reloading = this.reloading.then(reload, reload);
    return this.reloading;
  }

  private async reloadNow(): Promise<void> {
    const { seal, keyring } = wellKnownRecords;
    const bytes = await this.options.state.systemRecord(seal.area, seal.name);
    const recordChanged = !sameBytes(bytes, this.recordBytes);
    if (recordChanged) {
      const wasUnsealed = this.seals !== null && !this.seals.status().sealed;
      const rootKey = wasUnsealed ? Uint8Array.from(this.rootKey()) : null;
      this.stopSeals();
      this.recordBytes = bytes;
      this.record = bytes === null ? null : decodeSealRecord(bytes);
      if (this.record !== null) {
        this.seals = new SealSet(this.record, {
          ...(this.pkcs11Client === null ? {} : { pkcs11Client: this.pkcs11Client }),
          shareAttempt: { attemptTimeoutMs: this.options.shareAttemptTimeoutMs },
        });
        // A rekey or migration does not change the root key: an unsealed node stays unsealed.
        if (rootKey !== null) this.seals.adoptRootKey(rootKey);
        else if (!this.sealedByOperator) void this.startAutoUnseal();
      }
      this.options.onChange();
    }
    // A rotated keyring is opened with the root key this node holds.
    if (!this.sealed() && this.seals !== null) {
      const wrapped = await this.options.state.systemRecord(keyring.area, keyring.name);
      if (wrapped !== null) this.options.barrier.unseal(unwrapKeyring(wrapped, this.seals.rootKey()));
    }
  }

  /**
   * One share from an operator. An unseal share opens the barrier when it completes the
   * threshold. With an HSM alone, it is a recovery share: a threshold of them starts the HSM's
   * auto-unseal again and waits for its first attempt (the status then tells how it went).
   */
  async unsealWithShare(share: string, nonce: string): Promise<SealSetStatus> {
    const seals = this.requireSeals();
    const given = nonce === "" ? undefined : nonce;
    if (seals.status().recovery !== null) {
      if (await seals.authorizeHsmUnseal(share, given)) await this.resumeAutoUnseal();
      return seals.status();
    }
    const status = await seals.unsealWithShare(share, given);
    if (!status.sealed) await this.openBarrier();
    return seals.status();
  }

  resetShareAttempt(): void {
    this.seals?.resetShareAttempt();
  }

  /**
   * Zeroes every key on this node; it serves nothing until an operator unseals it again (with
   * unseal shares, or with recovery shares that let its HSM unseal it).
   */
  seal(): void {
    this.sealedByOperator = true;
    this.options.barrier.seal();
    this.seals?.seal();
    // Dropped, not only stopped: a stopped unsealer still reports "unsealed" if it had unsealed
    // the node, and the status then said so of a node its operator had just sealed.
    this.unsealer?.stop();
    this.unsealer = null;
    this.options.onChange();
  }

  close(): void {
    this.stopSeals();
    this.options.barrier.seal();
    this.pkcs11Client?.close();
  }

  private requireSeals(): SealSet {
    if (this.seals === null)
      throw new NodeError("NOT_INITIALIZED", "the cluster is not initialized: run init");
    return this.seals;
  }

  /** Starts the HSM's auto-unseal loop; resolves after its first attempt, whatever its outcome. */
  private startAutoUnseal(): Promise<void> {
    const seals = this.seals;
    if (seals === null || !seals.canAutoUnseal()) return Promise.resolve();
    this.unsealer = new AutoUnsealer(
      async () => {
        await seals.unsealWithHsm();
        // An operator sealed the node (or the record changed) while the HSM answered.
        if (this.sealedByOperator || this.seals !== seals) {
          seals.seal();
          return;
        }
        await this.openBarrier();
      },
      {
        maxDelayMs: this.options.autoUnsealRetryMaxMs,
        onFailure: (error) => this.options.onAutoUnsealFailure?.(`${error.code}: ${error.message}`),
      },
    );
    return this.unsealer.start();
  }

  /** After an operator's recovery shares: the HSM may unseal this node again, starting now. */
  private async resumeAutoUnseal(): Promise<void> {
    this.sealedByOperator = false;
    this.unsealer?.stop();
    this.unsealer = null;
    await this.startAutoUnseal();
  }

  private async openBarrier(): Promise<void> {
    const { keyring } = wellKnownRecords;
    const wrapped = await this.options.state.systemRecord(keyring.area, keyring.name);
    if (wrapped === null)
      throw new NodeError("NOT_INITIALIZED", "the keyring is missing from the replicated state");
    this.options.barrier.unseal(unwrapKeyring(wrapped, this.rootKey()));
    this.sealedByOperator = false;
    this.options.onChange();
  }

  private stopSeals(): void {
    this.unsealer?.stop();
    this.unsealer = null;
    this.seals?.close();
    this.seals = null;
  }
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
