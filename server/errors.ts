// The one table from every error of the layers below (state machine, barrier, seals, Raft, the
// node itself) to a gRPC status, with a stable machine-readable reason in the trailers
// (`strongroom-reason`) and, when a leader is known, where to go (`strongroom-leader`). Handlers
// throw; only the service adapter calls toServiceError. A message never carries a value, a share
// or a key: the layers below guarantee it for theirs, and the node's own messages name paths only.

import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { SealError, type SealErrorCode } from "../hsm/errors.js";
import { NotLeaderError, RaftError, type RaftErrorCode } from "../raft/core/index.js";
import { RaftNodeError, type RaftNodeErrorCode } from "../raft/node/index.js";
import { BarrierError, type BarrierErrorCode } from "../storage/barrier/index.js";
import { StateError, type StateErrorCode } from "../storage/state/index.js";

export type NodeErrorCode =
  | "INVALID_ARGUMENT"
  | "NOT_INITIALIZED"
  | "ALREADY_INITIALIZED"
  | "SEALED"
  | "LEADER_SEALED"
  | "NO_LEADER"
  | "DEADLINE_EXCEEDED"
  | "UNAUTHENTICATED"
  | "FORWARD_FAILED"
  | "RESOURCE_EXHAUSTED"
  | "HISTORY_COMPACTED"
  /** Watch from a revision this cluster has not reached (another cluster's). */
  | "REVISION_AHEAD"
  | "AUDIT_UNAVAILABLE"
  /** The request entry was refused after the call was forwarded: the leader may have done it. */
  | "AUDIT_FAILED_AFTER_FORWARD"
  /** The call was done, but no sink took its response entry: its answer is withheld. */
  | "AUDIT_FAILED_AFTER_ACT"
  | "PERMISSION_DENIED"
  | "TOKEN_INVALID"
  | "RATE_LIMITED"
  | "NOT_FOUND"
  | "ACCESS_UNAVAILABLE"
  /** The PKI engine has no CA yet (Pki.CreateCa makes one). */
  | "NO_CA"
  /** Pki.CreateCa when the cluster has a CA already. */
  | "CA_EXISTS"
  /** A lease that cannot be renewed (a certificate: issue a new one). */
  | "NOT_RENEWABLE"
  /** The caller's identity was disabled by an emergency revocation. */
  | "IDENTITY_DISABLED"
  /** This node was removed from the cluster: another member serves the call. */
  | "REMOVED"
  /** This node is shutting down: another member serves the call. */
  | "STOPPING"
  /** This node is replacing its state with a snapshot (it was far behind): a watch moves elsewhere. */
  | "STATE_REPLACED"
  /** A feature that a member of the cluster does not understand yet (an older version): upgrade it. */
  | "UPGRADE_PENDING"
  /** TransferLeader to a member that is sealed: it would not take the leadership. */
  | "MEMBER_SEALED"
  /**
   * TransferLeader or PromoteLearner to a member the leader has not heard answer for an election
   * timeout (or, for a promotion, has not heard from at all).
   */
  | "MEMBER_UNREACHABLE"
  /** PromoteLearner to a learner that has not caught up with the leader's log yet. */
  | "LEARNER_BEHIND"
  /** A change of the voters after which too few voters would answer the leader to make a quorum. */
  | "QUORUM_AT_RISK"
  | "INTERNAL";

export class NodeError extends Error {
  override readonly name = "NodeError";
  constructor(
    readonly code: NodeErrorCode,
    message: string,
    options?: ErrorOptions & {
      leaderHint?: string | null;
      retryAfterMs?: number;
      /** Why, for the audit trail only (it may name policies): never sent to the client. */
      auditDetail?: string;
    },
  ) {
    super(message, options);
    this.leaderHint = options?.leaderHint ?? null;
    this.retryAfterMs = options?.retryAfterMs ?? null;
    this.auditDetail = options?.auditDetail ?? null;
  }
  readonly leaderHint: string | null;
  readonly retryAfterMs: number | null;
  readonly auditDetail: string | null;
}

/** An error the leader answered a forwarded request with, passed on to the client as it was. */
export class ForwardedError extends Error {
  override readonly name = "ForwardedError";
  constructor(
    readonly grpcCode: status,
    readonly reason: string,
    message: string,
    readonly leaderHint: string | null,
  ) {
    super(message);
  }
}

/** Trailer keys; documented in docs/api.md. */
export const reasonTrailer = "strongroom-reason";
export const leaderTrailer = "strongroom-leader";
/** With RATE_LIMITED: how long to wait before trying again, in milliseconds. */
export const retryAfterTrailer = "strongroom-retry-after-ms";

const nodeStatuses: Record<NodeErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  NOT_INITIALIZED: status.FAILED_PRECONDITION,
  ALREADY_INITIALIZED: status.FAILED_PRECONDITION,
  SEALED: status.FAILED_PRECONDITION,
  LEADER_SEALED: status.UNAVAILABLE,
  NO_LEADER: status.UNAVAILABLE,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  FORWARD_FAILED: status.UNAVAILABLE,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  HISTORY_COMPACTED: status.OUT_OF_RANGE,
  REVISION_AHEAD: status.OUT_OF_RANGE,
  AUDIT_UNAVAILABLE: status.UNAVAILABLE,
  AUDIT_FAILED_AFTER_FORWARD: status.UNAVAILABLE,
  AUDIT_FAILED_AFTER_ACT: status.UNAVAILABLE,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  TOKEN_INVALID: status.UNAUTHENTICATED,
  RATE_LIMITED: status.RESOURCE_EXHAUSTED,
  NOT_FOUND: status.NOT_FOUND,
  ACCESS_UNAVAILABLE: status.UNAVAILABLE,
  REMOVED: status.UNAVAILABLE,
  STOPPING: status.UNAVAILABLE,
  STATE_REPLACED: status.UNAVAILABLE,
  UPGRADE_PENDING: status.FAILED_PRECONDITION,
  MEMBER_SEALED: status.FAILED_PRECONDITION,
  MEMBER_UNREACHABLE: status.FAILED_PRECONDITION,
  LEARNER_BEHIND: status.FAILED_PRECONDITION,
  QUORUM_AT_RISK: status.FAILED_PRECONDITION,
  NO_CA: status.FAILED_PRECONDITION,
  CA_EXISTS: status.FAILED_PRECONDITION,
  NOT_RENEWABLE: status.FAILED_PRECONDITION,
  IDENTITY_DISABLED: status.PERMISSION_DENIED,
  INTERNAL: status.INTERNAL,
};

const stateStatuses: Record<StateErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  VALUE_TOO_LARGE: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  CAS_MISMATCH: status.ABORTED,
  CAS_REQUIRED: status.FAILED_PRECONDITION,
  NOT_ROTATING: status.FAILED_PRECONDITION,
  EXPIRED: status.NOT_FOUND,
  REQUEST_ID_REUSED: status.ALREADY_EXISTS,
  MALFORMED_COMMAND: status.INTERNAL,
  STORAGE_CORRUPT: status.INTERNAL,
};

const sealStatuses: Record<SealErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  SEALED: status.FAILED_PRECONDITION,
  SHARE_MISTYPED: status.INVALID_ARGUMENT,
  SHARE_MISMATCH: status.INVALID_ARGUMENT,
  SHARE_DUPLICATE: status.INVALID_ARGUMENT,
  NONCE_MISMATCH: status.FAILED_PRECONDITION,
  SEAL_RECORD_INVALID: status.INTERNAL,
  ROOT_KEY_MISMATCH: status.FAILED_PRECONDITION,
  HSM_UNAVAILABLE: status.UNAVAILABLE,
  HSM_PIN_INCORRECT: status.FAILED_PRECONDITION,
  HSM_KEY_NOT_FOUND: status.FAILED_PRECONDITION,
  HSM_KEY_AMBIGUOUS: status.FAILED_PRECONDITION,
  HSM_MECHANISM_UNSUPPORTED: status.FAILED_PRECONDITION,
  HSM_UNWRAP_FAILED: status.FAILED_PRECONDITION,
  HSM_ERROR: status.INTERNAL,
};

const barrierStatuses: Record<BarrierErrorCode, status> = {
  SEALED: status.FAILED_PRECONDITION,
  UNKNOWN_KEY_TERM: status.INTERNAL,
  INTEGRITY: status.INTERNAL,
  CIPHERTEXT_FORMAT: status.INTERNAL,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
};

const raftStatuses: Record<RaftErrorCode, status> = {
  NOT_LEADER: status.UNAVAILABLE,
  TRANSFER_IN_PROGRESS: status.UNAVAILABLE,
  PROPOSAL_TOO_LARGE: status.RESOURCE_EXHAUSTED,
  UNCOMMITTED_BYTES_EXCEEDED: status.RESOURCE_EXHAUSTED,
  MEMBERSHIP_CHANGE_PENDING: status.FAILED_PRECONDITION,
  INVALID_MEMBERSHIP_CHANGE: status.INVALID_ARGUMENT,
  READ_QUEUE_FULL: status.RESOURCE_EXHAUSTED,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  INVALID_CONFIG: status.INTERNAL,
};

const raftNodeStatuses: Record<RaftNodeErrorCode, status> = {
  PROPOSAL_DROPPED: status.UNAVAILABLE,
  // The outcome is unknown: the write may still commit. Clients must not assume it failed.
  TIMEOUT: status.DEADLINE_EXCEEDED,
  STOPPED: status.UNAVAILABLE,
  // Like TIMEOUT, the outcome is unknown.
  LEADER_CHANGED: status.UNAVAILABLE,
  // Nothing was proposed or read: another member can serve the call.
  REMOVED: status.UNAVAILABLE,
};

export interface MappedError {
  readonly code: status;
  /** Stable and machine-readable, e.g. SEALED, CAS_MISMATCH, NOT_LEADER. */
  readonly reason: string;
  readonly message: string;
  readonly leaderHint: string | null;
}

/** Maps any error to its status and reason; an unknown error is INTERNAL with a generic message. */
export function mapError(error: unknown): MappedError {
  const mapped = (
    code: status,
    reason: string,
    message: string,
    leaderHint: string | null = null,
  ): MappedError => ({
    code,
    reason,
    message,
    leaderHint,
  });
  if (error instanceof NodeError)
    return mapped(nodeStatuses[error.code], error.code, error.message, error.leaderHint);
  if (error instanceof ForwardedError)
    return mapped(error.grpcCode, error.reason, error.message, error.leaderHint);
  if (error instanceof StateError) return mapped(stateStatuses[error.code], error.code, error.message);
  if (error instanceof SealError) return mapped(sealStatuses[error.code], error.code, error.message);
  if (error instanceof BarrierError)
    return mapped(barrierStatuses[error.code], `BARRIER_${error.code}`, error.message);
  if (error instanceof NotLeaderError)
    return mapped(status.UNAVAILABLE, "NOT_LEADER", error.message, error.leaderHint);
  if (error instanceof RaftError) return mapped(raftStatuses[error.code], error.code, error.message);
  if (error instanceof RaftNodeError) return mapped(raftNodeStatuses[error.code], error.code, error.message);
  // Unknown errors may carry anything in their message: never pass it to the client.
  return mapped(status.INTERNAL, "INTERNAL", "internal error (see the node's log)");
}

/** The error a gRPC handler answers with: status, message and the reason and leader trailers. */
export function toServiceError(error: unknown): Partial<ServiceError> {
  const { code, reason, message, leaderHint } = mapError(error);
  const metadata = new Metadata();
  metadata.set(reasonTrailer, reason);
  if (leaderHint !== null) metadata.set(leaderTrailer, leaderHint);
  if (error instanceof NodeError && error.retryAfterMs !== null)
    metadata.set(retryAfterTrailer, String(error.retryAfterMs));
  return { code, details: message, metadata };
}
