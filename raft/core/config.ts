// Every limit of the core is a named field here, validated once at construction (etcd-io/raft's
// Config.validate), so a bad value fails at start-up with a clear message rather than at 3 a.m.

import { RaftError } from "./errors.js";
import type { RandomSource } from "./random.js";
import type { NodeId } from "./types.js";

/**
 * Deliberately broken rules, for proving that the simulator's checks can fail. Never set outside tests.
 * - commitPreviousTerm: count replicas for an entry of an earlier term (the Figure 8 bug).
 * - readWithoutQuorum: answer ReadIndex without a heartbeat round confirming leadership.
 * - skipPrevCheck: accept appends without the log-matching term check.
 * - votesAfterRestart: a restarted voter votes at once, not after an election timeout (which a
 *   leader's read lease relies on).
 * - honoursAbandonedTransfers: act on, and vote past the promise for, a TimeoutNow its leader
 *   abandoned (a leader leases again once a quorum heard it abandoned).
 * (forget-vote is a driver bug: the simulator's driver does not persist the vote.)
 */
export type InjectedBug =
  | "commitPreviousTerm"
  | "honoursAbandonedTransfers"
  | "readWithoutQuorum"
  | "skipPrevCheck"
  | "votesAfterRestart";

export interface RaftConfig {
  readonly id: NodeId;
  readonly random: RandomSource;
  /** Ticks a follower waits without hearing from a leader before it campaigns; randomized in [n, 2n). */
  readonly electionTicks: number;
  /** Ticks between a leader's heartbeats; must be below electionTicks. */
  readonly heartbeatTicks: number;
  /** Probe for a quorum before raising the term, so a rejoining node cannot disrupt a healthy leader. */
  readonly preVote: boolean;
  /** A leader that has not heard from a quorum for electionTicks steps down. */
  readonly checkQuorum: boolean;
  /** The largest append message (entries' data bytes); at least one entry is always sent. */
  readonly messageBytesMax: number;
  /** Appends in flight to one follower in the replicate state (pipelining). */
  readonly inflightMessagesMax: number;
  /** Entry bytes in flight to one follower. */
  readonly inflightBytesMax: number;
  /**
   * Bytes of persisted, applied entries a leader keeps in memory for followers that have not
   * acknowledged them; beyond it the oldest are let go and read back from the log store when sent.
   */
  readonly followerCatchUpBytesMax: number;
  /** Bytes a leader holds proposed but not yet committed; proposals beyond it are refused. */
  readonly uncommittedBytesMax: number;
  /** The largest single proposal. */
  readonly entryBytesMax: number;
  /** InstallSnapshot chunk size. */
  readonly snapshotChunkBytes: number;
  /** Snapshot chunks in flight to one follower. */
  readonly snapshotChunksInflightMax: number;
  /** The largest snapshot a follower accepts. */
  readonly snapshotBytesMax: number;
  /** ReadIndex requests a leader holds before it refuses more. */
  readonly pendingReadsMax: number;
  /**
   * A monotonic clock in milliseconds, for the leader's read lease only (setReadLease): never
   * slower than real time, and never stepped back. The rest of the core counts ticks.
   */
  readonly clock: (() => number) | null;
  readonly injectedBugs: ReadonlySet<InjectedBug>;
}

export type RaftConfigInput = Pick<RaftConfig, "id" | "random"> & Partial<Omit<RaftConfig, "id" | "random">>;

export const raftConfigDefaults = {
  electionTicks: 10,
  heartbeatTicks: 1,
  preVote: true,
  checkQuorum: true,
  messageBytesMax: 1024 * 1024,
  inflightMessagesMax: 256,
  inflightBytesMax: 32 * 1024 * 1024,
  followerCatchUpBytesMax: 8 * 1024 * 1024,
  uncommittedBytesMax: 64 * 1024 * 1024,
  entryBytesMax: 1024 * 1024,
  snapshotChunkBytes: 1024 * 1024,
  snapshotChunksInflightMax: 4,
  snapshotBytesMax: 1024 * 1024 * 1024,
  pendingReadsMax: 4096,
  clock: null,
} as const;

export function validateRaftConfig(input: RaftConfigInput): RaftConfig {
  const config: RaftConfig = { ...raftConfigDefaults, injectedBugs: new Set(), ...input };
  const fail = (message: string): never => {
    throw new RaftError("INVALID_CONFIG", `raft config: ${message}`);
  };
  if (typeof config.id !== "string" || config.id.length === 0) fail("id must be a non-empty string");
  const positiveIntegers = [
    "electionTicks",
    "heartbeatTicks",
    "messageBytesMax",
    "inflightMessagesMax",
    "inflightBytesMax",
    "uncommittedBytesMax",
    "entryBytesMax",
    "snapshotChunkBytes",
    "snapshotChunksInflightMax",
    "snapshotBytesMax",
    "pendingReadsMax",
  ] as const;
  for (const field of positiveIntegers) {
    const value = config[field];
    if (!Number.isSafeInteger(value) || value <= 0) fail(`${field} must be a positive integer, got ${value}`);
  }
  // Zero is allowed: a leader then reads every entry a follower lacks back from the log store.
  if (!Number.isSafeInteger(config.followerCatchUpBytesMax) || config.followerCatchUpBytesMax < 0) {
    fail(`followerCatchUpBytesMax must be a non-negative integer, got ${config.followerCatchUpBytesMax}`);
  }
  if (config.heartbeatTicks >= config.electionTicks) {
    fail(`heartbeatTicks (${config.heartbeatTicks}) must be below electionTicks (${config.electionTicks})`);
  }
  if (config.entryBytesMax > config.uncommittedBytesMax) {
    fail(
      `entryBytesMax (${config.entryBytesMax}) must not exceed uncommittedBytesMax (${config.uncommittedBytesMax})`,
    );
  }
  return config;
}
