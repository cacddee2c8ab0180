// When this node last heard from each other member (any Raft message), and which members it asked
// something (a message that gets an answer) without an answer since, for three decisions: a stale
// read may be served if the leader was heard from recently enough, a call waiting for a leader
// gives up at once when this node is cut off from a quorum - since no leader it could follow is
// coming, and the client does better elsewhere - and a leader hands its leadership to no member
// out of reach.
//
// Cut off is judged from requests left unanswered, not from silence: a follower hears only from its
// leader, so when the leader goes, every follower falls silent at once, those on the majority side
// too. Judged by silence, they refused their calls as "cut off" for the moment between the leader's
// loss and the first vote request (found in chaos runs: clients sent from node to node, with
// backoff, through the election). A member this node has not asked anything lately is given the
// benefit of the doubt; the one that tries - a leader with its heartbeats, a pre-candidate with its
// vote requests - learns who answers.
//
// Times are the monotonic clock's (performance.now()): with the wall clock, a clock stepped back by
// S (NTP, an operator) left a member that stopped answering "in reach" for up to S more.

import type { Message, NodeId } from "../raft/core/index.js";
import { NodeError } from "./errors.js";

/** The messages that get an answer from the member they go to. */
const answered = new Set<Message["type"]>([
  "preVote",
  "vote",
  "append",
  "heartbeat",
  "snapshotChunk",
  "readIndex",
]);

/** Requests to one member since it last answered: when the first went, and the latest. */
interface Unanswered {
  since: number;
  lastAsked: number;
}

export class PeerContact {
  private readonly lastHeard = new Map<NodeId, number>();
  private readonly unanswered = new Map<NodeId, Unanswered>();
  /**
   * Unanswered requests older than this, with none since, are forgotten: a request lost while the
   * member was down long ago (a vote request at start, say) says nothing of it now. A leader asks
   * every heartbeat and a pre-candidate every election, both well within three election timeouts.
   */
  private readonly forgetAfterMs: number;

  /** `answerWithinMs`: a member that has not answered a request for this long is out of reach. */
  constructor(private readonly answerWithinMs: number) {
    this.forgetAfterMs = 3 * answerWithinMs;
  }

  /** Notes that a message from `peer` arrived now (the transport's listener calls this). */
  heardFrom(peer: NodeId, at = performance.now()): void {
    this.lastHeard.set(peer, at);
    this.unanswered.delete(peer);
  }

  /** Notes the messages this node sends now (the transport's sender calls this). */
  sent(messages: readonly Message[], at = performance.now()): void {
    for (const message of messages) {
      if (!answered.has(message.type)) continue;
      const pending = this.unanswered.get(message.to);
      if (pending === undefined || at - pending.lastAsked > this.forgetAfterMs)
        this.unanswered.set(message.to, { since: at, lastAsked: at });
      else pending.lastAsked = at;
    }
  }

  lastHeardFrom(peer: NodeId): number | undefined {
    return this.lastHeard.get(peer);
  }

  /** Whether `peer` left this node's requests unanswered for `answerWithinMs`, asked lately. */
  outOfReach(peer: NodeId, now = performance.now()): boolean {
    const pending = this.unanswered.get(peer);
    return (
      pending !== undefined &&
      now - pending.since >= this.answerWithinMs &&
      now - pending.lastAsked <= this.forgetAfterMs
    );
  }

  /**
   * Cut off from a quorum: it heard from other members before, and so many of the `voters` left
   * its requests unanswered for `answerWithinMs` (asked lately) that the rest and itself make no
   * quorum - so no leader it could follow can be elected where it can hear it (a minority side of
   * a partition, or alone). A node that has heard from nobody yet (it is starting, or the others
   * are) is not cut off: it waits for a leader.
   */
  cutOff(self: NodeId, voters: readonly NodeId[], now = performance.now()): boolean {
    if (this.lastHeard.size === 0) return false;
    let reachable = voters.includes(self) ? 1 : 0;
    for (const voter of voters) {
      if (voter !== self && !this.outOfReach(voter, now)) reachable += 1;
    }
    return reachable < Math.floor(voters.length / 2) + 1;
  }
}

/** The refusal of a node that hears no other member: the client should ask another node. */
export function cutOffError(): NodeError {
  return new NodeError(
    "NO_LEADER",
    "this node hears from too few members to make a quorum (cut off?): ask another node",
  );
}
