// How far along and how healthy a member is, as the leader sees it: what `Cluster.Members` shows
// and what `PromoteLearner` asks of a learner before making it a voter. Vault's autopilot and
// etcd's `member promote` refuse a server that has not caught up for the same reason: a voter far
// behind counts towards the quorum without holding what it has committed, so a failure of one
// more voter could stall every write until it catches up. Pure: the leader's Raft status and what
// its peer contact knows come in as arguments.

import type { RaftStatus } from "../raft/core/index.js";
import { NodeError } from "./errors.js";

/** What the leader knows of a member's contact with it (PeerContact, the peer transport). */
export interface MemberContact {
  /** When a message from it last arrived (performance.now() time), if one did since this node started. */
  readonly lastHeardAt: number | undefined;
  /** It left the leader's requests unanswered for an election timeout. */
  readonly outOfReach: boolean;
  /** It said with its last Raft messages that it is sealed. */
  readonly sealed: boolean;
}

export interface MemberHealth {
  /** The last log index the leader knows it holds. */
  readonly matchIndex: number;
  /** Milliseconds since the leader last heard from it; -1: never. */
  readonly lastContactMs: number;
  readonly unreachable: boolean;
  readonly sealed: boolean;
  /** A learner PromoteLearner would take now (promotionRefusal finds nothing). */
  readonly caughtUp: boolean;
}

type ProgressView = Pick<RaftStatus, "commit" | "progress">;

/** The leader has heard from the member, and the member has not left its requests unanswered. */
export function answersLeader(contact: Pick<MemberContact, "lastHeardAt" | "outOfReach">): boolean {
  return contact.lastHeardAt !== undefined && !contact.outOfReach;
}

/** Another member's health, from the leader's status and contact with it. */
export function memberHealth(
  id: string,
  status: ProgressView,
  contact: MemberContact,
  promoteLagEntriesMax: number,
  now: number,
): MemberHealth {
  return {
    matchIndex: status.progress.get(id)?.match ?? 0,
    // Whole milliseconds (an int64 field): the contact times are performance.now()'s fractions.
    lastContactMs:
      contact.lastHeardAt === undefined ? -1 : Math.max(0, Math.round(now - contact.lastHeardAt)),
    unreachable: contact.outOfReach,
    sealed: contact.sealed,
    caughtUp: promotionRefusal(id, status, contact, promoteLagEntriesMax) === null,
  };
}

/**
 * Why the leader would not promote the learner `id` now, or null. It must have heard from it and
 * had its requests answered within an election timeout, and the learner must be replicating (not
 * probed for where its log ends, nor receiving a snapshot) within `promoteLagEntriesMax` entries
 * of the commit index. Being sealed does not stop a promotion: a sealed voter replicates and votes.
 */
export function promotionRefusal(
  id: string,
  status: ProgressView,
  contact: MemberContact,
  promoteLagEntriesMax: number,
): NodeError | null {
  if (!answersLeader(contact))
    return new NodeError(
      "MEMBER_UNREACHABLE",
      `${id} does not answer this leader (not started, down, or cut off): start it, or see its peer error in cluster members`,
    );
  const progress = status.progress.get(id);
  const behind = Math.max(0, status.commit - (progress?.match ?? 0));
  if (progress?.state === "replicate" && behind <= promoteLagEntriesMax) return null;
  const doing = progress?.state === "snapshot" ? ", receiving a snapshot" : "";
  return new NodeError(
    "LEARNER_BEHIND",
    `${id} is ${behind} entries behind the commit index${doing} (at most ${promoteLagEntriesMax} to promote it): let it catch up, then promote it`,
  );
}

/**
 * Why the leader would refuse a change of the voters, or null: after it, fewer voters would answer
 * the leader than a quorum of the new membership needs, so once the change applied the cluster
 * could commit nothing, its own repair included, until one came back. Removing a voter that
 * answers while another is down, or adding a voter (not started yet) to a cluster with one down,
 * does that; etcd's strict reconfiguration check refuses the same. A learner's changes leave the
 * voters alone, and growing a single voter to two is let through as etcd does (the second is
 * needed at once: add a learner and promote it instead, and nothing stalls).
 */
export function quorumRefusal(
  change: { readonly kind: "addVoter" | "addLearner" | "removeNode"; readonly node: string },
  voters: readonly string[],
  answers: (voter: string) => boolean,
): NodeError | null {
  if (change.kind === "addLearner") return null;
  const after =
    change.kind === "removeNode"
      ? voters.filter((voter) => voter !== change.node)
      : voters.includes(change.node)
        ? voters
        : [...voters, change.node];
  // No voter left, or none changed: the Raft core's own refusal says why.
  if (after.length === 0 || after.length === voters.length) return null;
  if (change.kind === "addVoter" && voters.length === 1) return null;
  const answering = after.filter(answers).length;
  const quorum = Math.floor(after.length / 2) + 1;
  if (answering >= quorum) return null;
  const what = change.kind === "removeNode" ? `removing ${change.node}` : `making ${change.node} a voter`;
  const silent = after.filter((voter) => !answers(voter)).join(", ");
  return new NodeError(
    "QUORUM_AT_RISK",
    `${what} would leave ${answering} of ${after.length} voters answering the leader, fewer than the ${quorum} a quorum needs (not answering: ${silent}): bring them back, or remove the ones that are gone, first`,
  );
}
