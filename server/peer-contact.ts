// When this node last heard from each other member (any Raft message), for two decisions: a stale
// read may be served if the leader was heard from recently enough, and a call waiting for a leader
// gives up at once when this node is cut off from a quorum - it heard from other members before,
// and lately from too few to make a quorum - since no leader it could follow is coming, and the
// client does better elsewhere.

import type { NodeId } from "../raft/core/index.js";
import { NodeError } from "./errors.js";

export class PeerContact {
  private readonly lastHeard = new Map<NodeId, number>();

  /** `cutOffAfterMs`: silence from every member for this long means cut off. */
  constructor(private readonly cutOffAfterMs: number) {}

  /** Notes that a message from `peer` arrived now (the transport's listener calls this). */
  heardFrom(peer: NodeId, at = Date.now()): void {
    this.lastHeard.set(peer, at);
  }

  lastHeardFrom(peer: NodeId): number | undefined {
    return this.lastHeard.get(peer);
  }

  /**
   * Cut off from a quorum: it heard from other members before, and within `cutOffAfterMs` from
   * too few of the `voters` to make a quorum with itself - so no leader it could follow can be
   * elected where it can hear it (a minority side of a partition, or alone). A node that has heard
   * from nobody yet (it is starting, or the others are) is not cut off: it waits for a leader.
   */
  cutOff(self: NodeId, voters: readonly NodeId[], now = Date.now()): boolean {
    if (this.lastHeard.size === 0) return false;
    let reachable = voters.includes(self) ? 1 : 0;
    for (const voter of voters) {
      if (voter === self) continue;
      const heard = this.lastHeard.get(voter);
      if (heard !== undefined && now - heard < this.cutOffAfterMs) reachable += 1;
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
