// Handing leadership over before this node stops leading on purpose (shutdown, an operator's
// seal): to the voter whose log is furthest along, so the cluster has a leader again at once
// instead of after an election timeout. Only to a voter that can take it. And telling a
// leadership change from a failure.

import { type NodeId, NotLeaderError, RaftError, type RaftStatus } from "../raft/core/index.js";
import { type RaftNode, RaftNodeError } from "../raft/node/index.js";

/**
 * Whether a member cannot take the leadership now: it said it declines it (sealed:
 * MessageBatch.declines_leadership), or it left this node's requests unanswered for an election
 * timeout (down, cut off: PeerContact.outOfReach).
 */
export type CannotLead = (member: NodeId) => boolean;

/**
 * The voters a leader may hand the leadership to, furthest along first: every other voter but
 * those that cannot take it. A sealed voter does not campaign, not even on TimeoutNow, one out
 * of reach does not hear it, and a leader that sent TimeoutNow has no read lease until it has
 * abandoned it (RaftCore, one to two election timeouts later): such an offer costs the lease that
 * long, holds proposals for an election timeout, and a leader stopping would wait for a hand-over
 * that would not come.
 */
export function leadershipCandidates(status: RaftStatus, cannotLead: CannotLead): NodeId[] {
  const matchOf = (id: NodeId) => status.progress.get(id)?.match ?? 0;
  return status.membership.voters
    .filter((id) => id !== status.id && !cannotLead(id))
    .sort((a, b) => matchOf(b) - matchOf(a));
}

/** How long a hand-over may wait, and the cluster's election timeout (ticks × tick). */
export interface HandOverTiming {
  readonly waitMs: number;
  readonly electionTimeoutMs: number;
}

/**
 * If this node leads, transfers leadership to the voter furthest along that can take it, and
 * waits up to `waitMs` until another member leads (this node heard from it). Stepping down is not
 * enough: it steps down on the target's vote request, and its vote, written to disk first, may
 * not have left yet, which a stop that closes the transport next would lose (with one voter down,
 * the target then had no quorum). With no candidate, it keeps leading.
 *
 * It does not wait for what cannot come, which cost the whole wait (2 s of a stop) when the
 * cluster stopped at once: a transfer the leader abandoned (an election timeout in its term
 * without the target campaigning: it went down after this node last counted it in reach) passes
 * to the next candidate, and once none is left it keeps leading; a step-down in its own term
 * (CheckQuorum: no majority answers) ends the wait; and an election it voted in that has no
 * leader two election timeouts (the longest randomized one) after this node saw it begin has
 * lost its candidate, and its vote has long left. Every wait is on the monotonic clock.
 */
export async function handOverLeadership(
  raft: RaftNode<unknown>,
  cannotLead: CannotLead,
  timing: HandOverTiming,
): Promise<void> {
  // Stopped on a fatal error, it still says it leads; it sent its farewell as it stopped.
  if (raft.isStopped()) return;
  const status = raft.status();
  if (status.role !== "leader") return;
  // The monotonic clock: a wall clock stepped back (NTP, an operator) would stretch the wait by
  // the step, and the stop that waits here with it.
  const deadline = performance.now() + timing.waitMs;
  const offered = new Set<NodeId>();
  for (;;) {
    const now = raft.status();
    if (now.role !== "leader" || now.term !== status.term) return;
    const target = leadershipCandidates(now, cannotLead).find((id) => !offered.has(id));
    if (target === undefined) return;
    offered.add(target);
    raft.transferLeadership(target);
    const outcome = await transferOutcome(raft, status, deadline, 2 * timing.electionTimeoutMs);
    if (outcome !== "abandoned") return;
  }
}

/**
 * Polls a transfer the leader `self` began in its term until another member leads ("led by
 * another"), the wait runs out, it stepped down in that term ("stepped down": no quorum), a later
 * term's election had no leader for `electionWaitMs` ("election failed"), or it leads on with no
 * transfer under way ("abandoned").
 */
async function transferOutcome(
  raft: RaftNode<unknown>,
  self: { readonly id: NodeId; readonly term: number },
  deadline: number,
  electionWaitMs: number,
): Promise<"led by another" | "deadline" | "stepped down" | "election failed" | "abandoned"> {
  let laterTermSeenAt: number | null = null;
  for (;;) {
    const { leader, role, term } = raft.leadership();
    if (leader !== null && leader !== self.id) return "led by another";
    const now = performance.now();
    if (now >= deadline) return "deadline";
    if (term === self.term) {
      if (role !== "leader") return "stepped down";
      if (raft.status().leadTransferee === null) return "abandoned";
    } else {
      laterTermSeenAt ??= now;
      if (now - laterTermSeenAt >= electionWaitMs) return "election failed";
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Whether `error` says only that leadership moved while a proposal or read was on its way: this
 * node no longer leads, dropped it in a change, lost the lead before it committed, or holds
 * proposals during a transfer. The cluster goes on under its next leader; a leader's own task
 * that failed so is not a fault to warn of.
 */
export function lostLeadership(error: unknown): boolean {
  if (error instanceof NotLeaderError) return true;
  if (error instanceof RaftError) return error.code === "TRANSFER_IN_PROGRESS";
  if (error instanceof RaftNodeError)
    return error.code === "PROPOSAL_DROPPED" || error.code === "LEADER_CHANGED";
  return false;
}

/**
 * How a leader's periodic task logs a failure: at info when the leadership moved under it (the
 * next leader does the work), at warn otherwise. `what` names the task: "a rotation".
 */
export function leaderTaskFailure(what: string, error: unknown): { level: "info" | "warn"; message: string } {
  return lostLeadership(error)
    ? { level: "info", message: `${what} stopped: the leadership moved` }
    : { level: "warn", message: `${what} failed; retrying` };
}
