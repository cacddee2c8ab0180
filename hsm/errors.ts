// Errors of the seals, each with a stable code for the server's error table. A message names what
// failed and how to fix it (which share, which token, which key label); it never carries a share,
// a PIN, a key or any bytes derived from them.

export type SealErrorCode =
  /** A malformed argument or configuration (a count out of range, an unknown mechanism). */
  | "INVALID_ARGUMENT"
  /** The seal holds no root key: unseal it first. */
  | "SEALED"
  /** A share's checksum fails: a typo, caught before it is used. */
  | "SHARE_MISTYPED"
  /** A well-formed share that is not one of the expected shares (another set, or altered). */
  | "SHARE_MISMATCH"
  /** The same share was entered twice in one attempt. */
  | "SHARE_DUPLICATE"
  /** An attempt's nonce does not match the attempt in progress (or none is in progress). */
  | "NONCE_MISMATCH"
  /** The seal record (replicated state) is malformed or does not fit this operation. */
  | "SEAL_RECORD_INVALID"
  /** What the seal unwrapped is not this cluster's root key. */
  | "ROOT_KEY_MISMATCH"
  /** The PKCS#11 library, slot or token cannot be reached now; retrying may succeed. */
  | "HSM_UNAVAILABLE"
  /** The token refused the PIN (or it is locked); retrying would risk locking it. */
  | "HSM_PIN_INCORRECT"
  /** No key (or more than one) carries the configured label on the token. */
  | "HSM_KEY_NOT_FOUND"
  | "HSM_KEY_AMBIGUOUS"
  /** The token does not offer the configured mechanism for this key. */
  | "HSM_MECHANISM_UNSUPPORTED"
  /** The HSM key could not decrypt the stored root key: another key, or the blob was altered. */
  | "HSM_UNWRAP_FAILED"
  /** Any other failure of the PKCS#11 module. */
  | "HSM_ERROR";

export class SealError extends Error {
  override readonly name = "SealError";
  constructor(
    readonly code: SealErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
