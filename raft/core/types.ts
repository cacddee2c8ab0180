// The vocabulary of the consensus core: log entries, persistent state, snapshots and the messages
// peers exchange. Plain data only, so a driver can serialize it however its transport likes and a
// simulator can copy, drop, duplicate and reorder it freely. Nothing here may hold a secret in the
// clear: entry data is whatever the application proposes (strongroom proposes ciphertext).

/** A member's stable name, e.g. "n1". */
export type NodeId = string;

/** What the application proposed, or a membership change. A leader's first entry is an empty normal entry. */
export type EntryType = "normal" | "config";

export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** The state Raft must persist before it answers anyone (Figure 2 of the paper, plus the commit index). */
export interface HardState {
  readonly term: number;
  /** The candidate voted for in `term`, or null. */
  readonly vote: NodeId | null;
  readonly commit: number;
}

/** Who may vote (voters) and who only follows the log (learners). */
export interface Membership {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /**
   * The nodes removed so far, which never come back under the same id: a member answers their
   * messages with "removed". Absent when none was (and in snapshots taken before it was kept).
   */
  readonly removed?: readonly NodeId[];
}

/** One membership change: one server at a time (Ongaro's dissertation, section 4.1). */
export type MembershipChange =
  | { readonly kind: "addVoter"; readonly node: NodeId }
  | { readonly kind: "addLearner"; readonly node: NodeId }
  | { readonly kind: "removeNode"; readonly node: NodeId };

export interface SnapshotMeta {
  /** The last log index the snapshot covers. */
  readonly index: number;
  readonly term: number;
  /** The membership in force at `index`. */
  readonly membership: Membership;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** The application's state at `meta.index`, opaque to Raft. */
  readonly data: Uint8Array;
}

/**
 * A snapshot the driver persisted as the application read it out, never whole in memory: its meta
 * and size. The core reads its bytes back through StableSnapshotReader.
 */
export interface StoredSnapshot {
  readonly meta: SnapshotMeta;
  readonly totalBytes: number;
}

/** The last entry a log compaction dropped; the log continues at `index + 1`. */
export interface LogOffset {
  readonly index: number;
  readonly term: number;
}

/** Everything a node had persisted, handed to the core when it starts or restarts. */
export interface PersistentState {
  readonly hardState: HardState;
  /** With its data, or stored where the driver's StableSnapshotReader reads it back. */
  readonly snapshot: Snapshot | StoredSnapshot | null;
  readonly offset: LogOffset;
  /**
   * Entries from `offset.index + 1` that the store left on disk, their data not loaded (a
   * restart need not hold what was applied before it): their terms and data sizes, in order.
   * Only a store that reads entries back (StableEntryReader) leaves any. Absent: none.
   */
  readonly notLoaded?: NotLoadedEntries;
  /** Contiguous entries, with their data, after those not loaded (from `offset.index + 1` when none). */
  readonly entries: readonly Entry[];
}

/** Entries a store left on disk at load (PersistentState.notLoaded). */
export interface NotLoadedEntries {
  readonly terms: readonly number[];
  readonly dataBytes: readonly number[];
}

/** A persistent state whose snapshot, if any, carries its data: a new node's, a simulated disk's. */
export type PersistentStateWithData = PersistentState & { readonly snapshot: Snapshot | null };

/**
 * Entries the driver has persisted, read back synchronously (etcd-io/raft's Storage.Entries). The
 * core keeps in memory only the entries it may still need there (not yet persisted, applied or
 * acknowledged by every follower) and reads older ones through this when a lagging follower needs
 * them. Asked only for entries at or below what the driver acknowledged as persisted and above
 * the last compaction the core handed out.
 */
export interface StableEntryReader {
  /** Entries in [low, high), at most `bytesMax` bytes of data but always at least one. */
  readEntries(low: number, high: number, bytesMax: number): Entry[];
}

/**
 * Snapshots the driver has persisted, read back a chunk at a time to send to a follower. With one,
 * the core keeps a snapshot's data in memory only until the driver persisted it: a node then holds
 * no copy of its whole state. Asked only for the snapshot the core holds: the driver's newest, or
 * the one before it until compact() hands the core the newest.
 */
export interface StableSnapshotReader {
  /** Exactly `length` bytes from `offset` of the persisted snapshot at `meta`. */
  readSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Uint8Array;
}

/**
 * Where a follower's core puts the chunks of a snapshot it receives, as they arrive, instead of
 * holding them: the driver keeps them (in a file), the core hands it the whole as a StoredSnapshot
 * in Ready.snapshot to install, and the driver's StableSnapshotReader reads a snapshot received
 * whole back from its last chunk on (before it is installed: the node may lead by then). No node
 * then holds a received snapshot in memory. Synchronous: the core calls it while it steps.
 */
export interface SnapshotReceiver {
  /**
   * The bytes at `offset` of the snapshot at `meta`, `totalBytes` long, right after those received
   * before; offset 0 starts a reception and drops an unfinished one.
   */
  receiveSnapshotChunk(meta: SnapshotMeta, totalBytes: number, offset: number, chunk: Uint8Array): void;
}

/** A linearizable read confirmed by a quorum: serve it once the state machine applied `index`. */
export interface ReadState {
  readonly index: number;
  readonly context: string;
}

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

export interface PreVoteMessage extends MessageBase {
  readonly type: "preVote";
  readonly lastIndex: number;
  readonly lastTerm: number;
}
export interface VoteMessage extends MessageBase {
  readonly type: "vote";
  readonly lastIndex: number;
  readonly lastTerm: number;
  /**
   * Sent on a leadership transfer: voters grant it even while they still hear from the old leader,
   * unless they heard that leader abandon the TimeoutNow numbered `transferNumber`.
   */
  readonly transfer: boolean;
  /** The TimeoutNow's number (TimeoutNowMessage.transferNumber) on a transfer; 0 otherwise, or from an older sender. */
  readonly transferNumber: number;
}
export interface VoteResponseMessage extends MessageBase {
  readonly type: "preVoteResponse" | "voteResponse";
  readonly granted: boolean;
}
export interface AppendMessage extends MessageBase {
  readonly type: "append";
  readonly prevIndex: number;
  readonly prevTerm: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  /**
   * Sent with no entries only to carry a new commit index to a follower the leader replicates to:
   * a follower that accepts it does not answer (the leader learns its progress from the appends
   * that carried entries, or, were one lost, from its next heartbeat's answer).
   */
  readonly commitOnly: boolean;
}
export interface AppendResponseMessage extends MessageBase {
  readonly type: "appendResponse";
  readonly success: boolean;
  /** On success the follower's last index matching the leader; on rejection the rejected prevIndex. */
  readonly index: number;
  /** Fast backtracking (rejections only): the follower's guess of the last index that could match, and its term. */
  readonly hintIndex: number;
  readonly hintTerm: number;
}
export interface HeartbeatMessage extends MessageBase {
  readonly type: "heartbeat";
  readonly commit: number;
  /** The leader's pending ReadIndex round, echoed back so the leader can count a quorum for it. */
  readonly readRound: number;
  /**
   * The leader abandoned its TimeoutNows numbered up to this one in its term: a member that heard
   * it acts on none of them and votes for none of them past its promise (see RaftCore.setReadLease).
   */
  readonly transfersAbandoned: number;
}
export interface HeartbeatResponseMessage extends MessageBase {
  readonly type: "heartbeatResponse";
  readonly readRound: number;
  /** The member's knowledge of HeartbeatMessage.transfersAbandoned (0 from an older member). */
  readonly transfersAbandoned: number;
}
export interface SnapshotChunkMessage extends MessageBase {
  readonly type: "snapshotChunk";
  readonly meta: SnapshotMeta;
  readonly totalBytes: number;
  readonly offset: number;
  readonly chunk: Uint8Array;
}
export interface SnapshotResponseMessage extends MessageBase {
  readonly type: "snapshotResponse";
  readonly snapshotIndex: number;
  readonly snapshotTerm: number;
  /** The byte offset the follower expects next; equals the total once the snapshot is installed. */
  readonly nextOffset: number;
  readonly installed: boolean;
}
export interface TimeoutNowMessage extends MessageBase {
  readonly type: "timeoutNow";
  /** This leader's TimeoutNows in its term, this one included (1, 2, …); 0 from an older leader. */
  readonly transferNumber: number;
}
export interface ReadIndexMessage extends MessageBase {
  readonly type: "readIndex";
  readonly context: string;
}
export interface ReadIndexResponseMessage extends MessageBase {
  readonly type: "readIndexResponse";
  readonly context: string;
  readonly index: number;
}
/**
 * The answer to any message from a node that the sender's applied log removed: a node removed
 * while it was down or cut off never receives its removal, since members no longer send it
 * anything; this is how it learns.
 */
export interface RemovedMessage extends MessageBase {
  readonly type: "removed";
}

export type Message =
  | PreVoteMessage
  | VoteMessage
  | VoteResponseMessage
  | AppendMessage
  | AppendResponseMessage
  | HeartbeatMessage
  | HeartbeatResponseMessage
  | SnapshotChunkMessage
  | SnapshotResponseMessage
  | TimeoutNowMessage
  | ReadIndexMessage
  | ReadIndexResponseMessage
  | RemovedMessage;

export type MessageType = Message["type"];
