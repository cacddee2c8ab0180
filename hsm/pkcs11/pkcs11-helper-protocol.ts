// The messages between a node and its PKCS#11 helper process (pkcs11-helper.ts starts it,
// pkcs11-helper-process.ts is the helper). One request per call on a token; one answer each.

import type { SealErrorCode } from "../errors.js";
import type { Pkcs11Config, Pkcs11Mechanism } from "./pkcs11-config.js";

export type HelperCall =
  | { readonly kind: "ensureKey"; readonly keyLabel: string; readonly generate: boolean }
  | {
      readonly kind: "wrapRootKey";
      readonly rootKey: Uint8Array;
      readonly keyLabel: string;
      readonly mechanism: Pkcs11Mechanism;
    }
  | {
      readonly kind: "unwrapRootKey";
      readonly blob: Uint8Array;
      readonly keyLabel: string;
      readonly mechanism: Pkcs11Mechanism;
    }
  | { readonly kind: "close" };

export interface HelperRequest {
  readonly id: number;
  /** Which Pkcs11Client of the node asks: each has its own session in the helper. */
  readonly client: number;
  readonly config: Pkcs11Config;
  /**
   * The node's environment at the call: a module reads its configuration from variables (such as
   * SOFTHSM2_CONF) when it initializes, and a pinEnv PIN is read at login, as they were when the
   * calls ran in the node's own process.
   */
  readonly environment: Readonly<Record<string, string>>;
  readonly call: HelperCall;
}

export type HelperAnswer =
  | { readonly id: number; readonly ok: true; readonly value: Uint8Array | null }
  | { readonly id: number; readonly ok: false; readonly code: SealErrorCode; readonly message: string };
