// The SDK's one error type: every failed call rejects with a StrongroomError carrying the gRPC
// status, the server's stable reason (the `strongroom-reason` trailer, e.g. NOT_FOUND,
// PERMISSION_DENIED, CAS_MISMATCH), the leader hint and a retry-after hint, plus whether the call
// may have taken effect (`outcomeUnknown`: a write that timed out may still commit).

import { type ServiceError, status } from "@grpc/grpc-js";
import { describeConnectionFailure } from "./connection-failure.js";

export class StrongroomError extends Error {
  override readonly name = "StrongroomError";
  /**
   * The request id a failed Secrets write was sent with (the caller's, or one the SDK chose), or
   * null. Where `outcomeUnknown`, sending the write again with it, within 5 minutes, applies it
   * at most once (docs/api.md, Request ids).
   */
  requestId: string | null = null;

  constructor(
    message: string,
    /** The gRPC status code. */
    readonly code: status,
    /** The server's reason ("" for a failure below the API: no connection, a cancelled call). */
    readonly reason: string,
    readonly details: {
      readonly leaderHint?: string | null;
      readonly retryAfterMs?: number | null;
      readonly outcomeUnknown?: boolean;
      readonly endpoint?: string;
      readonly attempts?: number;
    } = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  get leaderHint(): string | null {
    return this.details.leaderHint ?? null;
  }

  get retryAfterMs(): number | null {
    return this.details.retryAfterMs ?? null;
  }

  /** True when a write may have been applied although it failed (a timeout after it was sent). */
  get outcomeUnknown(): boolean {
    return this.details.outcomeUnknown ?? false;
  }

  /** The status by name ("NOT_FOUND"), for messages and switches. */
  get statusName(): string {
    return status[this.code] ?? String(this.code);
  }
}

/** The trailers the server answers with (docs/api.md). */
export const reasonTrailer = "strongroom-reason";
export const leaderTrailer = "strongroom-leader";
export const retryAfterTrailer = "strongroom-retry-after-ms";

export function fromServiceError(error: ServiceError, endpoint: string, attempts: number): StrongroomError {
  const first = (key: string) => {
    const value = error.metadata?.get(key)[0];
    return value === undefined ? null : String(value);
  };
  const reason = first(reasonTrailer) ?? "";
  const retryAfter = first(retryAfterTrailer);
  const details = error.details || status[error.code] || "";
  const unencodable = unencodableRequest(error.code, details);
  if (unencodable !== null)
    return new StrongroomError(
      unencodable,
      status.INVALID_ARGUMENT,
      "",
      { endpoint, attempts },
      { cause: error },
    );
  return new StrongroomError(
    `${tooLargeMessage(error.code, details) ?? describeConnectionFailure(details, endpoint)}${reason === "" ? "" : ` (${reason})`}`,
    error.code,
    reason,
    {
      leaderHint: first(leaderTrailer),
      retryAfterMs: retryAfter === null ? null : Number(retryAfter),
      outcomeUnknown:
        (error.code === status.DEADLINE_EXCEEDED && !neverSent(error)) ||
        reason === "TIMEOUT" ||
        reason === "FORWARD_FAILED" ||
        reason === "AUDIT_FAILED_AFTER_FORWARD" ||
        reason === "AUDIT_FAILED_AFTER_ACT" ||
        reason === "LEADER_CHANGED" ||
        (error.code === status.UNAVAILABLE && reason === "" && !neverSent(error)),
      endpoint,
      attempts,
    },
    { cause: error },
  );
}

/**
 * gRPC's refusal of a message past its receiver's limit ("Received message larger than max (N vs
 * M)"), said as what it means: a request larger than a node takes, as a rule (a node answers
 * within the same limit, and a client takes up to 4 MiB).
 */
function tooLargeMessage(code: status, details: string): string | null {
  const match = /^Received message larger than max \((\d+) vs (\d+)\)$/.exec(details);
  if (code !== status.RESOURCE_EXHAUSTED || match === null) return null;
  return `the message is ${match[1]} bytes, more than the ${match[2]} its receiver takes (a node takes requests up to its requests.messageBytesMax, and a secret's value up to 1 MiB)`;
}

/**
 * A request this process could not encode, such as a string given for a bytes field (from
 * JavaScript, or past a cast): grpc-js fails the call INTERNAL with protobuf's own words
 * ("Request message serialization failure: invalid uint32: undefined"). It never left, and the
 * caller's argument is what is wrong.
 */
function unencodableRequest(code: status, details: string): string | null {
  const match = /^Request message serialization failure: (.*)$/s.exec(details);
  if (code !== status.INTERNAL || match === null) return null;
  return `the request could not be encoded (${match[1]}): a field's value has the wrong type (bytes take a Uint8Array or Buffer, integers a whole number within the field's range)`;
}

/** grpc-js's words for a call that had no connection to go out on when its deadline ended. */
const waitingForConnection = /Waiting for LB pick/;

/**
 * A failure before the request left this process: no connection could be made, or the call's
 * deadline ended while it waited for one (grpc-js: "Deadline exceeded after …,Waiting for LB pick").
 */
export function neverSent(error: ServiceError): boolean {
  if ((error.metadata?.get(reasonTrailer).length ?? 0) !== 0) return false;
  const details = error.details ?? "";
  if (error.code === status.DEADLINE_EXCEEDED) return waitingForConnection.test(details);
  return (
    error.code === status.UNAVAILABLE &&
    /No connection established|ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|Failed to connect/.test(details)
  );
}
