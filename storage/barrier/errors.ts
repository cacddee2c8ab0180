// Errors of the barrier, each with a stable code for the server's error table. None of them
// carries key material or plaintext: a message says what failed and where, never with what.

export type BarrierErrorCode =
  | "SEALED"
  | "UNKNOWN_KEY_TERM"
  | "INTEGRITY"
  | "CIPHERTEXT_FORMAT"
  | "INVALID_ARGUMENT";

export class BarrierError extends Error {
  override readonly name = "BarrierError";
  constructor(
    readonly code: BarrierErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
