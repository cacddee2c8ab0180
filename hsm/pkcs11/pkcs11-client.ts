// A node's client of one PKCS#11 token: finds (or generates) the AES-256 key that wraps the root
// key, and encrypts or decrypts the root key with it. The calls run in the PKCS#11 helper process
// (pkcs11-helper.ts), each within seal.pkcs11.callTimeoutMs, so a module that hangs or crashes
// costs a failed call (HSM_UNAVAILABLE, HSM_ERROR), never the node's event loop. What each call
// does on the token, and the errors it gives, are TokenClient's (token-client.ts).

import { SealError } from "../errors.js";
import type { Pkcs11Config, Pkcs11Mechanism } from "./pkcs11-config.js";
import { callHelper, closeHelperSession } from "./pkcs11-helper.js";
import type { HelperCall } from "./pkcs11-helper-protocol.js";

/** How long a call on the token may take when the config does not say (seal.pkcs11.callTimeoutMs). */
export const defaultPkcs11CallTimeoutMs = 10_000;

let nextClientId = 1;

export class Pkcs11Client {
  /** Names this client's session in the helper. */
  private readonly id = nextClientId++;

  constructor(readonly config: Pkcs11Config) {}

  /**
   * The key with the configured label, checked to be an AES-256 key. With `generate`, creates it
   * when no key has that label (and refuses when one does, so that a typo in the label cannot
   * silently create a second key).
   */
  async ensureKey(keyLabel: string, options: { generate: boolean }): Promise<void> {
    await this.call({ kind: "ensureKey", keyLabel, generate: options.generate });
  }

  /** Encrypts the root key under the HSM key; the blob is what the seal record keeps. */
  async wrapRootKey(rootKey: Uint8Array, keyLabel: string, mechanism: Pkcs11Mechanism): Promise<Uint8Array> {
    return this.valueOf(await this.call({ kind: "wrapRootKey", rootKey, keyLabel, mechanism }));
  }

  /** Decrypts a blob made by wrapRootKey; a blob the key cannot open is HSM_UNWRAP_FAILED. */
  async unwrapRootKey(blob: Uint8Array, keyLabel: string, mechanism: Pkcs11Mechanism): Promise<Uint8Array> {
    return this.valueOf(await this.call({ kind: "unwrapRootKey", blob, keyLabel, mechanism }));
  }

  /** Logs out and closes the session (the module stays loaded in the helper). */
  close(): void {
    closeHelperSession(this.id, this.config);
  }

  private call(call: HelperCall): Promise<Uint8Array | null> {
    return callHelper(this.id, this.config, call, this.config.callTimeoutMs ?? defaultPkcs11CallTimeoutMs);
  }

  private valueOf(value: Uint8Array | null): Uint8Array {
    if (value === null) throw new SealError("HSM_ERROR", "the PKCS#11 helper answered without a value");
    return value;
  }
}
