// When a read may be served, by consistency: linearizable reads wait for a ReadIndex round (a
// quorum confirms the leader, and this node - leader or follower - has applied up to the index);
// stale reads are served from local state at once if this node heard from its leader within the
// bound, and fall back to linearizable otherwise. Waiting for a leader happens within the
// request's deadline.

import { Consistency } from "../proto/gen/strongroom/v1/secrets.gen.js";
import { type RaftNode, RaftNodeError } from "../raft/node/index.js";
import { NodeError } from "./errors.js";
import { cutOffError, type PeerContact } from "./peer-contact.js";
import { msLeft, type RequestContext } from "./request.js";

export class ReadBarrier {
  constructor(
    private readonly raft: () => RaftNode<unknown>,
    /** When other members were last heard from (stale reads; a cut-off node gives up at once). */
    private readonly contact: PeerContact,
    /** The test fault "stale-reads": skip the ReadIndex round (server/test-faults.ts). */
    private readonly staleReadsFault = false,
    /** How long a read waits for a leader before NO_LEADER (see ExecutorOptions.leaderWaitMs). */
    private readonly leaderWaitMs = Number.POSITIVE_INFINITY,
  ) {}

  /** Resolves once a read at this consistency may be served from local state; returns the applied index then. */
  async wait(consistency: Consistency, maxStalenessMs: number, context: RequestContext): Promise<number> {
    const raft = this.raft();
    if (this.staleReadsFault) return raft.status().applied;
    if (consistency === Consistency.CONSISTENCY_STALE) {
      const status = raft.status();
      if (status.role === "leader") return status.applied;
      const heard = status.leader === null ? undefined : this.contact.lastHeardFrom(status.leader);
      if (heard !== undefined && performance.now() - heard <= maxStalenessMs) return status.applied;
    }
    const giveUpAt = Math.min(context.answerBy, performance.now() + this.leaderWaitMs);
    for (;;) {
      // A removed node has no leader to ask, now or later: readIndex refuses it with REMOVED.
      if (raft.leadership().leader !== null || raft.isRemoved()) {
        try {
          return await withDeadline(raft.readIndex(), context.answerBy);
        } catch (error) {
          // Asked of a leader that then lost its role: ask the new one, within the deadline.
          if (!(error instanceof RaftNodeError && error.code === "PROPOSAL_DROPPED")) throw error;
        }
      }
      if (this.contact.cutOff(raft.status().id, raft.status().membership.voters)) throw cutOffError();
      if (performance.now() + 20 >= giveUpAt) {
        throw new NodeError(
          "NO_LEADER",
          "no leader to confirm a linearizable read before the deadline (an election?)",
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** `work`, or DEADLINE_EXCEEDED at `answerBy` (a performance.now() time). */
function withDeadline<T>(work: Promise<T>, answerBy: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new NodeError("DEADLINE_EXCEEDED", "the read could not be confirmed before its deadline")),
      msLeft(answerBy),
    );
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
