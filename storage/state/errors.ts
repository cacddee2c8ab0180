// Errors of the secret state machine. Each has a stable code that the server maps to a gRPC
// status (INVALID_ARGUMENT, NOT_FOUND, ABORTED for CAS, ...). Messages name paths and limits,
// never a value.

export type StateErrorCode =
  | "INVALID_ARGUMENT"
  | "VALUE_TOO_LARGE"
  | "NOT_FOUND"
  | "CAS_MISMATCH"
  | "CAS_REQUIRED"
  /** A rotation of a secret that has no rotation policy (generator and period). */
  | "NOT_ROTATING"
  /** The secret expired (expires_at), or the version did (delete_version_after). */
  | "EXPIRED"
  /** A request id given again with a different request (applied-requests.ts). */
  | "REQUEST_ID_REUSED"
  | "MALFORMED_COMMAND"
  | "STORAGE_CORRUPT";

export class StateError extends Error {
  override readonly name = "StateError";
  constructor(
    readonly code: StateErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
