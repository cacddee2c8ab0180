// Membership: who votes, who only learns, and how a change is encoded in a config entry. Changes go
// one server at a time, so any two consecutive voter sets share a majority; together with "one
// unapplied change at a time" and "no campaign while a committed change is unapplied" that keeps
// two leaders from being elected by disjoint majorities (dissertation section 4.1, etcd's rules).

import { invariant, RaftError } from "./errors.js";
import type { Membership, MembershipChange, NodeId } from "./types.js";

export class MembershipState {
  readonly voters: Set<NodeId>;
  readonly learners: Set<NodeId>;
  /** Removed for good: a removed node's messages are answered "removed", and its id is not reused. */
  readonly removed: Set<NodeId>;

  constructor(membership: Membership) {
    this.voters = new Set(membership.voters);
    this.learners = new Set(membership.learners);
    this.removed = new Set(membership.removed ?? []);
    for (const learner of this.learners) {
      invariant(!this.voters.has(learner), `${learner} is both a voter and a learner`);
    }
  }

  toMembership(): Membership {
    return {
      voters: [...this.voters].sort(),
      learners: [...this.learners].sort(),
      ...(this.removed.size === 0 ? {} : { removed: [...this.removed].sort() }),
    };
  }

  isVoter(id: NodeId): boolean {
    return this.voters.has(id);
  }

  isMember(id: NodeId): boolean {
    return this.voters.has(id) || this.learners.has(id);
  }

  /** Every member, voters first, each group sorted so iteration order is deterministic. */
  members(): NodeId[] {
    return [...[...this.voters].sort(), ...[...this.learners].sort()];
  }

  quorum(): number {
    return Math.floor(this.voters.size / 2) + 1;
  }

  /** Throws INVALID_MEMBERSHIP_CHANGE when `change` cannot apply to this membership. */
  validate(change: MembershipChange): void {
    const fail = (message: string): never => {
      throw new RaftError("INVALID_MEMBERSHIP_CHANGE", message);
    };
    // A removed node may still be running on its old log (removed while it was down): were its id
    // let back in, the two would be one member with two logs.
    if (change.kind !== "removeNode" && this.removed.has(change.node))
      fail(`${change.node} was removed from the cluster; add the new node under a new id`);
    switch (change.kind) {
      case "addVoter":
        if (this.voters.has(change.node)) fail(`${change.node} is already a voter`);
        break;
      case "addLearner":
        if (this.voters.has(change.node))
          fail(`${change.node} is a voter; demoting a voter is not supported`);
        if (this.learners.has(change.node)) fail(`${change.node} is already a learner`);
        break;
      case "removeNode":
        if (!this.isMember(change.node)) fail(`${change.node} is not a member`);
        if (this.voters.has(change.node) && this.voters.size === 1) fail("cannot remove the last voter");
        break;
    }
  }

  apply(change: MembershipChange): void {
    switch (change.kind) {
      case "addVoter":
        this.learners.delete(change.node);
        this.voters.add(change.node);
        break;
      case "addLearner":
        if (!this.voters.has(change.node)) this.learners.add(change.node);
        break;
      case "removeNode":
        this.voters.delete(change.node);
        this.learners.delete(change.node);
        this.removed.add(change.node);
        break;
    }
  }

  /** Reused by committedIndex, which runs on every acknowledgement a leader gets. */
  private readonly matchScratch: number[] = [];

  /** The highest index that a quorum of voters has reached, given each voter's match index. */
  committedIndex(matchOf: (id: NodeId) => number): number {
    // Insertion sort, descending, in a reused array: Array.prototype.sort allocates on every call.
    const matches = this.matchScratch;
    let count = 0;
    for (const voter of this.voters) {
      const match = matchOf(voter);
      let i = count++;
      while (i > 0 && (matches[i - 1] ?? 0) < match) {
        matches[i] = matches[i - 1] ?? 0;
        i--;
      }
      matches[i] = match;
    }
    return count === 0 ? 0 : (matches[this.quorum() - 1] ?? 0);
  }

  /** "won" once a quorum granted, "lost" once a quorum can no longer grant, else "pending". */
  tally(responses: ReadonlyMap<NodeId, boolean>): "won" | "lost" | "pending" {
    let granted = 0;
    let rejected = 0;
    for (const voter of this.voters) {
      const response = responses.get(voter);
      if (response === true) granted++;
      else if (response === false) rejected++;
    }
    const quorum = this.quorum();
    if (granted >= quorum) return "won";
    if (rejected > this.voters.size - quorum) return "lost";
    return "pending";
  }

  hasQuorum(ids: ReadonlySet<NodeId>): boolean {
    let count = 0;
    for (const voter of this.voters) if (ids.has(voter)) count++;
    return count >= this.quorum();
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const changeKinds = new Set(["addVoter", "addLearner", "removeNode"]);

/** Config entries carry the change as UTF-8 JSON: rare, small, and readable in a trace. */
export function encodeMembershipChange(change: MembershipChange): Uint8Array {
  return encoder.encode(JSON.stringify({ kind: change.kind, node: change.node }));
}

export function decodeMembershipChange(data: Uint8Array): MembershipChange {
  const parsed: unknown = JSON.parse(decoder.decode(data));
  invariant(
    typeof parsed === "object" &&
      parsed !== null &&
      "kind" in parsed &&
      "node" in parsed &&
      typeof parsed.kind === "string" &&
      changeKinds.has(parsed.kind) &&
      typeof parsed.node === "string",
    "malformed membership change entry",
  );
  return parsed as MembershipChange;
}

export function validateNodeId(id: unknown): asserts id is NodeId {
  if (typeof id !== "string" || id.length === 0 || id.length > 128) {
    throw new RaftError("INVALID_ARGUMENT", "a node id must be a string of 1 to 128 characters");
  }
}
