// When this node last heard from each other member (any Raft message), for two decisions: a stale
// read may be served if the leader was heard from recently enough, and a call waiting for a leader
// gives up at once when this node is cut off - it heard from other members before, and from none
// for a while - since no leader it could reach is coming, and the client does better elsewhere.

import type { NodeId } from "../raft/core/index.js";
import { NodeError } from "./errors.js";

export class PeerContact {
  private readonly lastHeard = new Map<NodeId, number>();

  /** `cutOffAfterMs`: silence from every member for this long means cut off. */
  constructor(private readonly cutOffAfterMs: number) {}

  /** Notes that a message from `peer` arrived now (the transport's listener calls this). */
  heardFrom(peer: NodeId): void {
    this.lastHeard.set(peer, Date.now());
  }

  lastHeardFrom(peer: NodeId): number | undefined {
    return this.lastHeard.get(peer);
  }

  /**
   * Heard from other members before, and from none within `cutOffAfterMs`. A node that has heard
   * from nobody yet (it is starting, or the others are) is not cut off: it waits for a leader.
   */
  cutOff(now = Date.now()): boolean {
    if (this.lastHeard.size === 0) return false;
    for (const heard of this.lastHeard.values()) if (now - heard < this.cutOffAfterMs) return false;
    return true;
  }
}

/** The refusal of a node that hears no other member: the client should ask another node. */
export function cutOffError(): NodeError {
  return new NodeError("NO_LEADER", "this node hears from no other member (cut off?): ask another node");
}
