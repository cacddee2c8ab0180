// Two kinds of failure, as in TIGER_STYLE. A RaftError is an operating error: expected, typed and
// handled by the caller (a proposal on a follower, a full queue). A RaftInvariantError means the
// core's own state broke a rule of the protocol; continuing could spread corruption, so the driver
// must stop the node.

import type { NodeId } from "./types.js";

export type RaftErrorCode =
  | "NOT_LEADER"
  | "TRANSFER_IN_PROGRESS"
  | "PROPOSAL_TOO_LARGE"
  | "UNCOMMITTED_BYTES_EXCEEDED"
  | "MEMBERSHIP_CHANGE_PENDING"
  | "INVALID_MEMBERSHIP_CHANGE"
  | "READ_QUEUE_FULL"
  | "INVALID_ARGUMENT"
  | "INVALID_CONFIG";

export class RaftError extends Error {
  override readonly name: string = "RaftError";
  readonly code: RaftErrorCode;
  constructor(code: RaftErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

export class NotLeaderError extends RaftError {
  override readonly name = "NotLeaderError";
  /** The leader this node knows of, to retry there; null while no leader is known. */
  readonly leaderHint: NodeId | null;
  constructor(leaderHint: NodeId | null) {
    super(
      "NOT_LEADER",
      leaderHint === null ? "not the leader; no leader is known" : `not the leader; try ${leaderHint}`,
    );
    this.leaderHint = leaderHint;
  }
}

export class RaftInvariantError extends Error {
  override readonly name = "RaftInvariantError";
}

/**
 * Guards an invariant; throws RaftInvariantError (the driver must stop the node) when it is broken.
 * On hot paths write `if (!condition) broken(\`...\`)` instead, so the message is only built on failure.
 */
export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new RaftInvariantError(message);
}

export function broken(message: string): never {
  throw new RaftInvariantError(message);
}
