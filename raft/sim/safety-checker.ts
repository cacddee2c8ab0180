// The properties of Figure 3 of the Raft paper, checked as the simulation runs: election safety,
// log matching, leader completeness, state machine safety, and a commit index that never goes
// back. A broken property throws SafetyViolation, which stops the seed and names the property.

import { Buffer } from "node:buffer";
import type { Entry, LogOffset, NodeId, RaftCore } from "../core/index.js";

export type SafetyProperty =
  | "election-safety"
  | "log-matching"
  | "leader-completeness"
  | "state-machine-safety"
  | "commit-monotonic"
  | "invariant"
  | "removed-leader"
  | "liveness"
  | "linearizability"
  | "read-lease";

export class SafetyViolation extends Error {
  override readonly name = "SafetyViolation";
  constructor(
    readonly property: SafetyProperty,
    /** What broke, without the property's name. */
    readonly detail: string,
  ) {
    super(`${property}: ${detail}`);
  }
}

interface EntryRecord {
  readonly term: number;
  readonly data: Uint8Array;
}

interface CommittedRecord extends EntryRecord {
  /**
   * The term in which it was committed: the lowest term of any node seen knowing it committed
   * (the committing leader's, since nobody learns a commit before its leader does).
   */
  commitTerm: number;
}

/** What a node has on its (simulated) disk: the log is checked where it is durable. */
export interface DurableLog {
  readonly offset: LogOffset;
  readonly entries: readonly Entry[];
}

export class SafetyChecker {
  private readonly leaders = new Map<number, NodeId>();
  /** (index, term) → the entry's data and the term before it: log matching by induction. */
  private readonly seen = new Map<string, { data: Uint8Array; prevTerm: number }>();
  /** index → the entry committed there, as first learned from any node. */
  private readonly committed: (CommittedRecord | undefined)[] = [];
  private readonly applied: (EntryRecord | undefined)[] = [];
  private readonly persistedCommit = new Map<NodeId, number>();
  /** The highest commit index each node was seen advancing with, across its restarts. */
  private readonly committedSeen = new Map<NodeId, number>();
  private readonly liveCommit = new Map<NodeId, number>();
  committedIndexMax = 0;
  /** Reads answered from a lease and checked (onLeaseRead). */
  leaseReadsChecked = 0;
  /** The leader of the newest term any node was seen leading in. */
  private newestLeader: { readonly id: NodeId; readonly term: number } | null = null;

  onLeader(id: NodeId, term: number, core: RaftCore): void {
    const existing = this.leaders.get(term);
    if (existing !== undefined && existing !== id) {
      throw new SafetyViolation("election-safety", `two leaders in term ${term}: ${existing} and ${id}`);
    }
    this.leaders.set(term, id);
    if (term > (this.newestLeader?.term ?? 0)) this.newestLeader = { id, term };
    // Leader completeness: a new leader holds every entry committed in an earlier term. (A leader
    // of an older term can still be elected late, by votes cast before that commit: it need not.)
    const first = core.status().firstIndex;
    for (let index = first; index <= this.committedIndexMax; index++) {
      const record = this.committed[index];
      if (record === undefined || record.commitTerm >= term) continue;
      const ours = core.entryAt(index);
      if (ours === undefined || ours.term !== record.term || !sameBytes(ours.data, record.data)) {
        throw new SafetyViolation(
          "leader-completeness",
          `${id}, leader of term ${term}, lacks entry ${index} (term ${record.term}) committed in term ${record.commitTerm}; it has ${
            ours === undefined ? "nothing" : `term ${ours.term}`
          }`,
        );
      }
    }
  }

  /**
   * After a leader of `term` answered reads from its read lease. The lease promised that no newer
   * leader had been elected: a quorum acknowledged this leader within it, and each of them
   * withholds its vote for longer. Checked directly, not only through the history (a stale read
   * shows in it only when a newer leader's write to the key it read came first), and twice: no
   * newer leader exists, and none could be elected now, as a quorum of `voters` is `withholding`
   * its vote. The second catches a lease that outlasts the votes it rests on even when no
   * election happened to take place in the gap.
   */
  onLeaseRead(
    id: NodeId,
    term: number,
    reads: number,
    voters: readonly NodeId[],
    withholding: ReadonlySet<NodeId>,
  ): void {
    this.leaseReadsChecked += reads;
    const newest = this.newestLeader;
    if (newest !== null && newest.term > term) {
      throw new SafetyViolation(
        "read-lease",
        `${id} answered a read from its lease of term ${term} after ${newest.id} was elected leader of term ${newest.term}`,
      );
    }
    const free = voters.filter((voter) => !withholding.has(voter));
    if (voters.length - free.length <= voters.length / 2) {
      throw new SafetyViolation(
        "read-lease",
        `${id} answered a read from its lease of term ${term} while ${free.join(", ")} of voters ${voters.join(", ")} could vote for another leader`,
      );
    }
  }

  /** After a node persisted new entries `from`..end and its hard state's commit index. */
  onPersist(id: NodeId, log: DurableLog, fromIndex: number, commit: number): void {
    const termAt = (index: number): number | undefined =>
      index === log.offset.index ? log.offset.term : log.entries[index - log.offset.index - 1]?.term;
    for (
      let index = Math.max(fromIndex, log.offset.index + 1);
      index <= log.offset.index + log.entries.length;
      index++
    ) {
      const entry = log.entries[index - log.offset.index - 1];
      if (entry === undefined) continue;
      const prevTerm = termAt(index - 1);
      if (prevTerm === undefined) continue;
      const key = `${index}/${entry.term}`;
      const known = this.seen.get(key);
      if (known === undefined) {
        this.seen.set(key, { data: entry.data, prevTerm });
      } else if (known.prevTerm !== prevTerm || !sameBytes(known.data, entry.data)) {
        throw new SafetyViolation(
          "log-matching",
          `${id} holds entry ${index} of term ${entry.term} ${
            known.prevTerm !== prevTerm
              ? `after term ${prevTerm}, elsewhere after term ${known.prevTerm}`
              : "with other data than another node"
          }`,
        );
      }
    }
    const previous = this.persistedCommit.get(id) ?? 0;
    if (commit < previous) {
      throw new SafetyViolation("commit-monotonic", `${id} persisted commit ${commit} after ${previous}`);
    }
    this.persistedCommit.set(id, commit);
  }

  /**
   * After a node advanced with commit index `commit` (in memory: the core persists a new commit
   * index only beside other writes) in term `term`. Records the entries of its durable log that
   * this newly commits, and returns their range.
   */
  onCommitted(id: NodeId, log: DurableLog, commit: number, term: number): { from: number; to: number } {
    const previous = this.committedSeen.get(id) ?? 0;
    if (commit <= previous) return { from: previous + 1, to: previous };
    this.committedSeen.set(id, commit);
    for (let index = Math.max(previous + 1, log.offset.index + 1); index <= commit; index++) {
      const entry = log.entries[index - log.offset.index - 1];
      if (entry !== undefined) this.recordCommitted(id, entry, term);
    }
    return { from: previous + 1, to: commit };
  }

  onSnapshotInstalled(id: NodeId, index: number, term: number): void {
    const record = this.committed[index];
    if (record !== undefined && record.term !== term) {
      throw new SafetyViolation(
        "state-machine-safety",
        `${id} installed a snapshot at ${index} of term ${term}; ${record.term} was committed there`,
      );
    }
    const previous = this.persistedCommit.get(id) ?? 0;
    if (index > previous) this.persistedCommit.set(id, index);
  }

  /** The in-memory commit index of a running node never goes back. */
  onLiveCommit(id: NodeId, commit: number): void {
    const previous = this.liveCommit.get(id) ?? 0;
    if (commit < previous)
      throw new SafetyViolation("commit-monotonic", `${id} commit went from ${previous} to ${commit}`);
    this.liveCommit.set(id, commit);
  }

  onRestart(id: NodeId): void {
    this.liveCommit.delete(id);
  }

  /** `term` is the applying node's current term. */
  onApply(id: NodeId, entry: Entry, term: number): void {
    const record = this.applied[entry.index];
    if (record === undefined) {
      this.applied[entry.index] = { term: entry.term, data: entry.data };
    } else if (record.term !== entry.term || !sameBytes(record.data, entry.data)) {
      throw new SafetyViolation(
        "state-machine-safety",
        `${id} applied entry ${entry.index} of term ${entry.term}; another node applied term ${record.term} there`,
      );
    }
    this.recordCommitted(id, entry, term);
  }

  /**
   * The lemma behind leader completeness, checked the moment a leader commits: every node that
   * could still win an election (its durable log is at least as up to date as those of a majority
   * of voters) holds the committed entry. Catching this at commit time finds unsafe commits long
   * before a later leader actually overwrites them.
   */
  onLeaderCommitted(
    id: NodeId,
    voters: readonly NodeId[],
    logs: ReadonlyMap<NodeId, DurableLog>,
    fromIndex: number,
    toIndex: number,
  ): void {
    const tails = new Map<NodeId, { index: number; term: number }>();
    for (const voter of voters) {
      const log = logs.get(voter);
      if (log === undefined) continue;
      const last = log.entries.at(-1);
      tails.set(
        voter,
        last === undefined
          ? { index: log.offset.index, term: log.offset.term }
          : { index: last.index, term: last.term },
      );
    }
    const quorum = Math.floor(voters.length / 2) + 1;
    for (const [candidate, tail] of tails) {
      const supporters = [...tails.values()].filter(
        (other) => tail.term > other.term || (tail.term === other.term && tail.index >= other.index),
      ).length;
      if (supporters < quorum) continue;
      const log = logs.get(candidate);
      if (log === undefined) continue;
      for (let index = Math.max(fromIndex, log.offset.index + 1); index <= toIndex; index++) {
        const record = this.committed[index];
        const ours = log.entries[index - log.offset.index - 1];
        if (record !== undefined && (ours === undefined || ours.term !== record.term)) {
          throw new SafetyViolation(
            "leader-completeness",
            `${id} committed entry ${index} (term ${record.term}), but ${candidate} lacks it and could still be elected ` +
              `(its log ends at ${tail.index}/${tail.term}, at least as up to date as ${supporters} of ${voters.length} voters)`,
          );
        }
      }
    }
  }

  private recordCommitted(id: NodeId, entry: Entry, observerTerm: number): void {
    const record = this.committed[entry.index];
    if (record === undefined) {
      this.committed[entry.index] = { term: entry.term, data: entry.data, commitTerm: observerTerm };
      if (entry.index > this.committedIndexMax) this.committedIndexMax = entry.index;
      return;
    }
    record.commitTerm = Math.min(record.commitTerm, observerTerm);
    if (record.term !== entry.term || !sameBytes(record.data, entry.data)) {
      throw new SafetyViolation(
        "state-machine-safety",
        `${id} committed entry ${entry.index} of term ${entry.term}; term ${record.term} was committed there before`,
      );
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}
