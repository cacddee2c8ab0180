// One interface for every seal: a seal turns what an operator or an HSM provides into the root key,
// held in memory only, and forgets it (zeroed) on seal(). What the cluster stores about a seal is
// its protector in the seal record (seal-record.ts); creating one is init's job (seal-init.ts).

import { SealError } from "./errors.js";
import type { SealType } from "./seal-record.js";

export interface SealStatus {
  readonly type: SealType;
  readonly sealed: boolean;
  /** Shares needed to unseal (1 for an HSM, which needs none from operators). */
  readonly threshold: number;
  /** Shares handed out (0 for an HSM). */
  readonly shares: number;
  /** Shares entered in the unseal attempt in progress. */
  readonly progress: number;
  /** The nonce of the unseal attempt in progress, or "". */
  readonly nonce: string;
}

/** What an unseal call brings: a share for Shamir, nothing for an HSM (it unseals by itself). */
export interface UnsealInput {
  readonly share?: string;
  readonly nonce?: string;
}

export interface Seal {
  readonly type: SealType;
  status(): SealStatus;
  /** One step of unsealing; resolves to the new status, rejects with a SealError naming the cause. */
  unseal(input?: UnsealInput): Promise<SealStatus>;
  /** The root key while unsealed (the seal's own buffer: copy it if it must outlive seal()). */
  rootKey(): Uint8Array;
  /** Zeroes the root key and any half-entered shares. */
  seal(): void;
  /** Also releases what the seal holds open (an HSM session). */
  close(): void;
}

/** The root key as a seal holds it: one buffer, zeroed when the seal closes. */
export class HeldRootKey {
  private key: Uint8Array | null = null;

  get held(): boolean {
    return this.key !== null;
  }

  take(key: Uint8Array): void {
    this.clear();
    this.key = key;
  }

  get(type: SealType): Uint8Array {
    if (this.key === null) throw new SealError("SEALED", `the ${type} seal is sealed: unseal it first`);
    return this.key;
  }

  clear(): void {
    this.key?.fill(0);
    this.key = null;
  }
}
