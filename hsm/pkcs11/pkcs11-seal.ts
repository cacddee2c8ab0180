// The PKCS#11 seal: the root key, encrypted by a non-extractable key inside the HSM, is decrypted
// by the HSM at unseal - no operator needed, so every node unseals by itself on start (see
// AutoUnsealer for the retries while the HSM is unreachable).

import { HeldRootKey, type Seal, type SealStatus } from "../seal.js";
import { type Pkcs11Protector, type SealRecord, verifyRootKey } from "../seal-record.js";
import type { Pkcs11Client } from "./pkcs11-client.js";

export class Pkcs11Seal implements Seal {
  readonly type = "pkcs11";
  private readonly rootKeyHeld = new HeldRootKey();

  constructor(
    private readonly record: SealRecord,
    private readonly protector: Pkcs11Protector,
    private readonly client: Pkcs11Client,
  ) {}

  status(): SealStatus {
    return {
      type: this.type,
      sealed: !this.rootKeyHeld.held,
      threshold: 1,
      shares: 0,
      progress: 0,
      nonce: "",
    };
  }

  async unseal(): Promise<SealStatus> {
    if (this.rootKeyHeld.held) return this.status();
    const blob = Buffer.from(this.protector.wrappedRootKey, "base64");
    const rootKey = await this.client.unwrapRootKey(blob, this.protector.keyLabel, this.protector.mechanism);
    try {
      verifyRootKey(this.record, rootKey, `the HSM key "${this.protector.keyLabel}"`);
    } catch (error) {
      rootKey.fill(0);
      throw error;
    }
    this.rootKeyHeld.take(rootKey);
    return this.status();
  }

  rootKey(): Uint8Array {
    return this.rootKeyHeld.get(this.type);
  }

  seal(): void {
    this.rootKeyHeld.clear();
  }

  close(): void {
    this.seal();
    this.client.close();
  }
}
