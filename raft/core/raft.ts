// The Raft consensus core: a pure, deterministic state machine in the style of etcd-io/raft. It has
// no timers, sockets, disk, clock or ambient randomness: time is `tick()`, input is `step(message)`,
// `propose(data)`, `readIndex(context)` and friends, and output is a `Ready` that the driver must
// persist before it sends. Given the same inputs and PRNG seed it produces the same outputs, which is
// what lets the simulator replay thousands of faulty schedules. It must never block, await or throw
// anything but a typed RaftError (bad request) or RaftInvariantError (broken protocol state).

import { concatBytes } from "./bytes.js";
import { type InjectedBug, type RaftConfig, type RaftConfigInput, validateRaftConfig } from "./config.js";
import { broken, invariant, NotLeaderError, RaftError } from "./errors.js";
import { RaftLog } from "./log.js";
import {
  decodeMembershipChange,
  encodeMembershipChange,
  MembershipState,
  validateNodeId,
} from "./membership.js";
import { Progress } from "./progress.js";
import type {
  AppendMessage,
  AppendResponseMessage,
  Entry,
  EntryType,
  HardState,
  HeartbeatMessage,
  HeartbeatResponseMessage,
  LogOffset,
  Membership,
  MembershipChange,
  Message,
  NodeId,
  PersistentState,
  PersistentStateWithData,
  PreVoteMessage,
  ReadState,
  Role,
  Snapshot,
  SnapshotChunkMessage,
  SnapshotMeta,
  SnapshotReceiver,
  SnapshotResponseMessage,
  StableEntryReader,
  StableSnapshotReader,
  StoredSnapshot,
  TimeoutNowMessage,
  VoteMessage,
} from "./types.js";

/** Volatile state worth observing (leader changes, role); not persisted. */
export interface SoftState {
  readonly role: Role;
  readonly leader: NodeId | null;
  readonly term: number;
}

/**
 * One batch of work for the driver, handed out by `ready()` and acknowledged by `advance()`.
 * The driver must, in this order:
 *  1. install `snapshot` (if any) into the state machine and the log store, durably;
 *  2. persist `entries` (replacing any stored entries from `entries[0].index` on) and `hardState`
 *     (if not null) atomically and durably (a new commit index alone is not handed out to
 *     persist: it rides along with the next entries, snapshot, term or vote, so every write the
 *     core asks for needs its fsync);
 *  3. only then send `messages` (a vote or an append acknowledgement must never precede its fsync),
 *     unless `sendBeforePersist` says they may go first (a leader's, below);
 *  4. apply `committedEntries` in order, and serve each of `readStates` once it has applied `index`;
 *  5. call `advance()`.
 * The core may be stepped and ticked between `ready()` and `advance()`; it never hands out a
 * second Ready before the first is advanced.
 */
export interface Ready {
  readonly softState: SoftState;
  readonly hardState: HardState | null;
  /** A snapshot received to install: with its data, or stored by the snapshotReceiver. */
  readonly snapshot: Snapshot | StoredSnapshot | null;
  readonly entries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly committedEntries: readonly Entry[];
  readonly readStates: readonly ReadState[];
  /**
   * Whether `messages` may be sent before `entries` and `hardState` are persisted (step 3 before
   * step 2). True on a leader whose term and vote are on disk already: its messages are appends,
   * heartbeats and answers that promise nothing about its own disk, and its own copy of the
   * entries counts towards a commit only once `advance()` says it is persisted, so its followers'
   * writes can overlap its own (the Raft thesis, section 10.2.1; etcd's leader does the same).
   * False on every other node, whose votes and acknowledgements promise what this Ready persists,
   * and with a snapshot to install.
   */
  readonly sendBeforePersist: boolean;
}

/** Where a proposal landed: it succeeded if the entry applied at `index` has this `term`. */
export interface ProposalPosition {
  readonly index: number;
  readonly term: number;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly vote: NodeId | null;
  readonly leader: NodeId | null;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  /** Entries whose data the core holds in memory, and their bytes (the rest is read back from the log store). */
  readonly entriesInMemory: number;
  readonly entryBytesInMemory: number;
  /** Bytes of the newest snapshot's data held in memory: none once persisted, with a snapshot reader. */
  readonly snapshotBytesInMemory: number;
  readonly membership: Membership;
  /** This node was removed from the cluster: its own log says so, or a member told it. */
  readonly removed: boolean;
  readonly leadTransferee: NodeId | null;
  /** Reads answered from the read lease since this node started (see RaftCore.readsFromLease). */
  readonly readsFromLease: number;
  readonly progress: ReadonlyMap<NodeId, { match: number; next: number; state: string }>;
}

export interface RaftStartOptions {
  /**
   * The application's applied index: committed entries above it are handed out again after a
   * restart, and the commit index starts at least there (the stored one may be older).
   */
  readonly applied?: number;
  /**
   * The driver's log store, read back for entries the core let go of (see RaftLog). Without one the
   * core holds every entry until it is compacted.
   */
  readonly stableEntries?: StableEntryReader;
  /**
   * The driver's persisted snapshots, read back a chunk at a time for a follower that needs one.
   * Without it the core keeps its newest snapshot's data in memory.
   */
  readonly stableSnapshots?: StableSnapshotReader;
  /**
   * Where a received snapshot's chunks go as they arrive (it needs stableSnapshots too). Without
   * one the core collects them and hands the snapshot's data in Ready.
   */
  readonly snapshotReceiver?: SnapshotReceiver;
}

/** The newest snapshot a node holds: its data only while no store can give it back (see above). */
interface HeldSnapshot {
  readonly meta: SnapshotMeta;
  readonly totalBytes: number;
  readonly data: Uint8Array | null;
}

interface ReadRound {
  readonly round: number;
  readonly acks: Set<NodeId>;
  readonly reads: { context: string; from: NodeId; index: number }[];
}

interface SnapshotReception {
  readonly meta: SnapshotMeta;
  readonly totalBytes: number;
  readonly term: number;
  readonly chunks: Uint8Array[];
  received: number;
}

const contextLengthMax = 256;
/** Entry data read back at a time when a restart replays the applied membership changes. */
const replaySliceBytes = 4 * 1024 * 1024;
const noMessages: readonly Message[] = Object.freeze([]);
const noReadStates: readonly ReadState[] = Object.freeze([]);

/** The log of a brand-new cluster: one committed membership entry per initial member, identical on every node. */
export function bootstrapState(membership: Membership): PersistentStateWithData {
  const changes: MembershipChange[] = [
    ...membership.voters.map((node) => ({ kind: "addVoter", node }) as const),
    ...membership.learners.map((node) => ({ kind: "addLearner", node }) as const),
  ];
  invariant(membership.voters.length > 0, "a cluster needs at least one voter");
  const entries = changes.map((change, i) => ({
    index: i + 1,
    term: 1,
    type: "config" as const,
    data: encodeMembershipChange(change),
  }));
  return {
    hardState: { term: 1, vote: null, commit: entries.length },
    snapshot: null,
    offset: { index: 0, term: 0 },
    entries,
  };
}

/** The persistent state of a node joining an existing cluster: empty; the leader sends it everything. */
export function emptyState(): PersistentStateWithData {
  return {
    hardState: { term: 0, vote: null, commit: 0 },
    snapshot: null,
    offset: { index: 0, term: 0 },
    entries: [],
  };
}

export class RaftCore {
  readonly id: NodeId;
  private readonly config: RaftConfig;
  private readonly bugs: ReadonlySet<InjectedBug>;

  private term: number;
  private vote: NodeId | null;
  private leader: NodeId | null = null;
  private role: Role = "follower";
  private readonly log: RaftLog;
  private membership: MembershipState;

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /**
   * A candidate that saw a rival of its term it ranks ahead of: the `electionElapsed` at which it
   * stands again if nobody has won by then (see `ranksAhead`); null otherwise.
   */
  private standAgainAt: number | null = null;
  /** See setCampaignAllowed. */
  private campaignAllowed = true;
  /** A member answered "removed": its applied log removed this node (which may not have that entry). */
  private toldRemoved = false;
  /**
   * Ticks since this node last heard from a leader (an append, a heartbeat or a snapshot chunk).
   * Unlike electionElapsed, nothing else resets it: while it is below electionTicks this node
   * votes for no one (except in a transfer the leader began), the promise a leader's read lease
   * stands on. A restarted member starts at 0, as it may have heard from a leader just before.
   */
  private leaderContactElapsed: number;

  private votes = new Map<NodeId, boolean>();
  private progress = new Map<NodeId, Progress>();
  private leadTransferee: NodeId | null = null;
  /** No membership change may be proposed until the entry at this index is applied. */
  private pendingMembershipIndex = 0;
  private uncommittedBytes = 0;
  /** The leader appended entries that are not yet sent; coalesced into one broadcast per Ready. */
  private broadcastPending = false;

  private readRounds: ReadRound[] = [];
  /** Reads that arrived before the leader committed an entry of its own term (section 8). */
  private readsAwaitingCommit: { context: string; from: NodeId }[] = [];
  private nextReadRound = 1;
  private readRoundOpen: ReadRound | null = null;

  /** See setReadLease; 0: every linearizable read waits for a heartbeat round. */
  private readLeaseMs = 0;
  /** While leading with a lease: when each heartbeat round still able to extend it was sent. */
  private roundSentAt = new Map<number, number>();
  /** While leading with a lease: the send time of the newest round each member acknowledged. */
  private leaseAckedAt = new Map<NodeId, number>();
  /**
   * TimeoutNows this leader sent in its term, numbered 1, 2, …: while one is not abandoned its
   * target may be elected at any time, the voters' promise notwithstanding, and no lease holds.
   */
  private transfersSent = 0;
  /** Of those, the ones sent before the last election timeout ended: abandoned at the next. */
  private transfersSentBeforeTimeout = 0;
  /**
   * The leader of this term abandoned its TimeoutNows numbered up to this one (the leader's own
   * count while leading): this node acts on none of them and votes for none of them past its
   * promise, so that a leader whose TimeoutNow was not acted on (its target sealed, paused, down)
   * may lease again. Null: not known, as after a restart (it may have heard more before), and then
   * it acts on no TimeoutNow of this term until a heartbeat tells it.
   */
  private transfersAbandoned: number | null = null;
  /** Reads this node answered from its lease since it started, in any term (see readsFromLease). */
  private leaseReadsAnswered = 0;

  /** The newest snapshot this node holds (sent to followers that fell behind the compacted log). */
  private snapshot: HeldSnapshot | null;
  private readonly snapshotReader: StableSnapshotReader | null;
  /** A snapshot received from the leader, to be installed by the driver through Ready. */
  private pendingSnapshot: Snapshot | StoredSnapshot | null = null;
  private readonly snapshotReceiver: SnapshotReceiver | null;
  private snapshotReception: SnapshotReception | null = null;

  private messages: Message[] = [];
  private readStates: ReadState[] = [];
  /** Handed out again while unchanged, so a Ready costs no new object for it. */
  private lastSoftState: SoftState = { role: "follower", leader: null, term: 0 };
  /** The soft state the last Ready carried: a change from it is a Ready of its own. */
  private readySoftState: SoftState = this.lastSoftState;
  private persistedHardState: HardState;
  private handedOut: {
    readonly lastEntry: { index: number; term: number } | null;
    readonly committedEntries: readonly Entry[];
    readonly snapshot: Snapshot | StoredSnapshot | null;
    readonly hardState: HardState | null;
  } | null = null;

  constructor(configInput: RaftConfigInput, state: PersistentState, options: RaftStartOptions = {}) {
    this.config = validateRaftConfig(configInput);
    this.id = this.config.id;
    this.bugs = this.config.injectedBugs;
    this.term = state.hardState.term;
    this.vote = state.hardState.vote;
    this.persistedHardState = state.hardState;
    this.snapshotReader = options.stableSnapshots ?? null;
    this.snapshotReceiver = options.snapshotReceiver ?? null;
    invariant(
      this.snapshotReceiver === null || this.snapshotReader !== null,
      "a snapshot receiver without a reader: a snapshot received whole could not be read back",
    );
    this.snapshot = state.snapshot === null ? null : this.holdSnapshot(state.snapshot, true);
    const snapshotIndex = state.snapshot?.meta.index ?? 0;
    invariant(state.offset.index <= snapshotIndex, "the log is compacted beyond the snapshot");
    invariant(state.hardState.commit >= snapshotIndex, "a snapshot beyond the commit index");
    // What the application applied was committed when it applied it, though the stored commit
    // index (written only beside other writes) may be older: start from the higher of the two, so
    // the membership is replayed as far as the application went. (Never beyond the log: an
    // application ahead of its log is left to apply nothing until the log catches up.)
    const notLoadedTerms = state.notLoaded?.terms ?? [];
    const lastIndex = state.offset.index + notLoadedTerms.length + state.entries.length;
    const commit = Math.max(state.hardState.commit, Math.min(options.applied ?? 0, lastIndex));
    const applied = Math.min(Math.max(options.applied ?? snapshotIndex, snapshotIndex), commit);
    this.log = new RaftLog(
      state.offset,
      state.entries,
      commit,
      applied,
      options.stableEntries ?? null,
      notLoadedTerms,
    );
    this.membership = new MembershipState(state.snapshot?.meta.membership ?? { voters: [], learners: [] });
    // Membership changes take effect when applied; replay those the application already applied
    // (read back a slice at a time where the store left them on disk).
    for (let index = snapshotIndex + 1; index <= applied; ) {
      const slice = this.log.slice(index, applied + 1, replaySliceBytes);
      for (const entry of slice) {
        if (entry.type === "config") this.membership.apply(decodeMembershipChange(entry.data));
      }
      index += slice.length;
    }
    // Before term 2 no leader was ever elected (bootstrapState writes term 1; an empty joiner has
    // term 0), so a member of a new cluster has promised no one anything.
    this.leaderContactElapsed =
      this.term <= 1 || this.bugs.has("votesAfterRestart") ? this.config.electionTicks : 0;
    this.transfersAbandoned = this.term <= 1 ? 0 : null;
    this.becomeFollower(this.term, null);
    this.releaseEntries();
  }

  // ---------------------------------------------------------------------------------------------
  // Inputs

  /** One logical clock tick. Election and heartbeat timeouts are counted in ticks. */
  tick(): void {
    if (this.leaderContactElapsed < this.config.electionTicks) this.leaderContactElapsed++;
    if (this.role === "leader") this.tickLeader();
    else this.tickElection();
  }

  /** Starts an election now, as if the election timeout had fired. */
  campaign(): void {
    this.hup(null);
  }

  /**
   * Whether this node may stand for election (its timeout, campaign() and a transfer's TimeoutNow).
   * A node that may not still votes, replicates and applies. strongroom disallows it while a node
   * is sealed: a leader that cannot decrypt could not serve or propose.
   */
  setCampaignAllowed(allowed: boolean): void {
    this.campaignAllowed = allowed;
  }

  /**
   * Lets this node, while it leads, answer a linearizable read at once for `durationMs` after a
   * quorum acknowledged a heartbeat (Raft thesis, section 6.4.1): no member that acknowledged it
   * votes for anyone until an election timeout after it heard it (leaderContactElapsed), so no
   * other leader can be elected before then. Sound only while `durationMs` stays below every
   * voter's election timeout (electionTicks times its tick) by the clocks' largest drift over it,
   * and only if every voter runs a core with that rule; 0 turns it off. Needs `config.clock`.
   * The lease ends early when this leader sends TimeoutNow or begins a transfer.
   */
  setReadLease(durationMs: number): void {
    if (!Number.isFinite(durationMs) || durationMs < 0)
      throw new RaftError(
        "INVALID_ARGUMENT",
        `a read lease must be a duration of 0 ms or more, got ${durationMs}`,
      );
    if (durationMs > 0 && this.config.clock === null)
      throw new RaftError("INVALID_CONFIG", "a read lease needs the config's clock");
    // Without CheckQuorum members do not withhold their votes: nothing would hold a lease up.
    if (durationMs > 0 && !this.config.checkQuorum)
      throw new RaftError("INVALID_CONFIG", "a read lease needs checkQuorum");
    this.readLeaseMs = durationMs;
    if (durationMs === 0) {
      this.roundSentAt.clear();
      this.leaseAckedAt.clear();
    }
  }

  /** Proposes application data. Returns where it landed; throws a RaftError when it cannot be taken. */
  propose(data: Uint8Array): ProposalPosition {
    if (!(data instanceof Uint8Array))
      throw new RaftError("INVALID_ARGUMENT", "proposal data must be a Uint8Array");
    return this.appendProposal("normal", data);
  }

  /** Proposes a one-server membership change; only one may be pending at a time. */
  proposeMembershipChange(change: MembershipChange): ProposalPosition {
    validateNodeId(change.node);
    this.checkCanPropose(0);
    if (this.pendingMembershipIndex > this.log.applied) {
      throw new RaftError(
        "MEMBERSHIP_CHANGE_PENDING",
        `a membership change (index ${this.pendingMembershipIndex}) is not applied yet; retry after it is`,
      );
    }
    this.membership.validate(change);
    const position = this.appendProposal("config", encodeMembershipChange(change));
    this.pendingMembershipIndex = position.index;
    return position;
  }

  /**
   * Requests a linearizable read. The core answers with a ReadState carrying `context` once a
   * quorum has confirmed this leadership after the request (on a follower: through the leader).
   */
  readIndex(context: string): void {
    if (typeof context !== "string" || context.length === 0 || context.length > contextLengthMax) {
      throw new RaftError(
        "INVALID_ARGUMENT",
        `a read context must be a string of 1 to ${contextLengthMax} characters`,
      );
    }
    if (this.role === "leader") {
      this.enqueueRead(context, this.id);
    } else if (this.leader !== null) {
      this.send({ type: "readIndex", from: this.id, to: this.leader, term: this.term, context });
    } else {
      throw new NotLeaderError(null);
    }
  }

  /**
   * What a leader that stops for good (its disk write failed) leaves behind: TimeoutNow to the
   * voter whose log is furthest along, so that it campaigns at once rather than an election
   * timeout later. Unlike transferLeadership it does not wait for that voter to catch up, which a
   * leader that can no longer write would never see. The election decides as always: a voter
   * whose log is behind a majority's loses it, and the cluster falls back on the timeout. Voters
   * for which `passOver` says yes (the driver's: sealed, out of reach) are passed over while
   * another voter is left. Null when this node does not lead or has no other voter.
   */
  farewell(passOver: (id: NodeId) => boolean = () => false): TimeoutNowMessage | null {
    if (this.role !== "leader") return null;
    const target = this.furthestVoter(passOver) ?? this.furthestVoter(() => false);
    return target === null ? null : this.timeoutNow(target);
  }

  /** The other voter with the highest match that `skip` does not rule out, or null. */
  private furthestVoter(skip: (id: NodeId) => boolean): NodeId | null {
    let target: NodeId | null = null;
    let furthest = -1;
    for (const [id, progress] of this.progress) {
      if (id === this.id || !this.membership.isVoter(id) || progress.match <= furthest || skip(id)) continue;
      target = id;
      furthest = progress.match;
    }
    return target;
  }

  /** Hands leadership to `target` (section 3.10): stop proposals, bring it up to date, then TimeoutNow. */
  transferLeadership(target: NodeId): void {
    validateNodeId(target);
    if (this.role !== "leader") throw new NotLeaderError(this.leader);
    if (target === this.id) {
      this.leadTransferee = null;
      return;
    }
    if (!this.membership.isVoter(target)) throw new RaftError("INVALID_ARGUMENT", `${target} is not a voter`);
    if (this.leadTransferee === target) return;
    this.leadTransferee = target;
    // The transfer must finish within an election timeout, or it is abandoned (tickLeader).
    this.electionElapsed = 0;
    const progress = this.progress.get(target);
    invariant(progress !== undefined, `no progress for voter ${target}`);
    if (progress.match === this.log.lastIndex()) this.sendTimeoutNow(target);
    else this.sendAppend(target, true);
  }

  /** Handles one message from a peer. */
  step(message: Message): void {
    if (message.to !== this.id || message.from === this.id) return;
    if (message.type === "removed") {
      // Removed while down or cut off, it never got the entry: no member sends it anything now.
      // It stops campaigning and leading, and the driver refuses its calls. Ids are never reused,
      // so the answer cannot be stale.
      this.toldRemoved = true;
      if (this.role !== "follower") this.becomeFollower(this.term, null);
      return;
    }
    if (this.membership.removed.has(message.from)) {
      // Before the term check: a removed node's higher term must not disturb the members.
      this.send({ type: "removed", from: this.id, to: message.from, term: this.term });
      return;
    }
    // Decided before a higher term clears what this node knows of its leader's transfers.
    const forced =
      message.type === "vote" &&
      message.transfer &&
      this.votesForTransfer(message.term - 1, message.transferNumber);
    if (message.term > this.term) {
      if (message.type === "preVote" || message.type === "vote") {
        const inLease =
          this.config.checkQuorum &&
          ((this.leader !== null && this.electionElapsed < this.config.electionTicks) ||
            this.leaderContactElapsed < this.config.electionTicks);
        // A node that still hears from a leader ignores elections (leader stickiness, section 4.2.3).
        if (!forced && inLease) return;
      }
      if (message.type === "preVote" || (message.type === "preVoteResponse" && message.granted)) {
        // Pre-votes never change anyone's term: that is their point.
      } else if (
        message.type === "append" ||
        message.type === "heartbeat" ||
        message.type === "snapshotChunk"
      ) {
        this.becomeFollower(message.term, message.from);
      } else {
        this.becomeFollower(message.term, null);
      }
    } else if (message.term < this.term) {
      if (
        (this.config.checkQuorum || this.config.preVote) &&
        (message.type === "append" || message.type === "heartbeat")
      ) {
        // A stale leader would otherwise never learn that it was replaced (it cannot win pre-votes
        // against us, and we ignore it): tell it our term so it steps down.
        this.send({
          type: "appendResponse",
          from: this.id,
          to: message.from,
          term: this.term,
          success: false,
          index: 0,
          hintIndex: 0,
          hintTerm: 0,
        });
      } else if (message.type === "preVote") {
        this.send({
          type: "preVoteResponse",
          from: this.id,
          to: message.from,
          term: this.term,
          granted: false,
        });
      }
      return;
    }

    if (message.type === "preVote" || message.type === "vote") {
      this.handleVoteRequest(message, forced);
      return;
    }
    switch (this.role) {
      case "leader":
        this.stepLeader(message);
        return;
      case "candidate":
      case "preCandidate":
        this.stepCandidate(message);
        return;
      case "follower":
        this.stepFollower(message);
        return;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Ready / advance

  hasReady(): boolean {
    return (
      this.broadcastPending ||
      this.readRoundOpen !== null ||
      this.messages.length > 0 ||
      this.readStates.length > 0 ||
      this.pendingSnapshot !== null ||
      this.log.lastIndex() > this.log.stableIndex ||
      this.log.committed > this.log.applying ||
      this.termOrVoteChanged() ||
      // A leader's step-down at a tick (CheckQuorum) sends nothing and persists nothing, but its
      // driver must learn it then, not at its campaign an election timeout later: until it does,
      // its pending reads and proposals wait on a leadership it no longer has (found in chaos runs:
      // clients of a cut-off leader waited 300-700 ms past the new leader's election).
      this.softState() !== this.readySoftState
    );
  }

  ready(): Ready {
    invariant(this.handedOut === null, "ready() called again before advance()");
    this.flush();
    const snapshot = this.pendingSnapshot;
    const entries = this.log.unstableEntries();
    const termOrVoteChanged = this.termOrVoteChanged();
    // The commit index rides along with a write made anyway (see termOrVoteChanged).
    const hardState =
      termOrVoteChanged ||
      ((entries.length > 0 || snapshot !== null) && this.persistedHardState.commit !== this.log.committed)
        ? this.hardState()
        : null;
    const committedEntries = this.log.entriesToApply();
    const lastCommitted = committedEntries.at(-1);
    if (lastCommitted !== undefined) this.log.applying = lastCommitted.index;
    const lastEntry = entries.at(-1);
    this.readySoftState = this.softState();
    const ready: Ready = {
      softState: this.readySoftState,
      hardState,
      snapshot,
      entries,
      messages: this.messages.length === 0 ? noMessages : this.messages,
      committedEntries,
      readStates: this.readStates.length === 0 ? noReadStates : this.readStates,
      sendBeforePersist: this.role === "leader" && !termOrVoteChanged && snapshot === null,
    };
    if (this.messages.length > 0) this.messages = [];
    if (this.readStates.length > 0) this.readStates = [];
    this.handedOut = {
      lastEntry: lastEntry === undefined ? null : { index: lastEntry.index, term: lastEntry.term },
      committedEntries,
      snapshot,
      hardState,
    };
    return ready;
  }

  /** The driver finished the last Ready: persisted, sent, applied. */
  advance(): void {
    const done = this.handedOut;
    invariant(done !== null, "advance() without a Ready");
    this.handedOut = null;
    if (done.snapshot !== null) {
      if (this.pendingSnapshot === done.snapshot) this.pendingSnapshot = null;
      // Persisted now: a store that reads it back holds it for us.
      const held = this.snapshot;
      if (
        held !== null &&
        held.meta.index === done.snapshot.meta.index &&
        held.meta.term === done.snapshot.meta.term
      )
        this.snapshot = this.holdSnapshot(done.snapshot, true);
      this.log.applied = Math.max(this.log.applied, done.snapshot.meta.index);
    }
    if (done.lastEntry !== null) this.log.stableTo(done.lastEntry.index, done.lastEntry.term);
    if (done.hardState !== null) this.persistedHardState = done.hardState;
    // Entries that a snapshot received meanwhile already covers must not touch its membership.
    const coveredThrough = this.pendingSnapshot?.meta.index ?? 0;
    for (const entry of done.committedEntries) {
      if (entry.index <= this.log.applied) continue;
      this.log.applied = entry.index;
      if (entry.type === "config" && entry.index > coveredThrough)
        this.applyMembershipChange(decodeMembershipChange(entry.data));
      if (this.role === "leader")
        this.uncommittedBytes = Math.max(0, this.uncommittedBytes - entry.data.length);
    }
    // The leader counts its own log only once it is on disk.
    if (this.role === "leader" && this.maybeCommit()) this.broadcastPending = true;
    this.releaseEntries();
  }

  /**
   * Lets the log drop the data of entries that are persisted and applied and, on a leader, that
   * every follower acknowledged (within followerCatchUpBytesMax). What a follower needs later is
   * read back from the log store. Called at every advance: that is when entries become settled.
   */
  private releaseEntries(): void {
    let wantedFrom = Number.POSITIVE_INFINITY;
    if (this.role === "leader") {
      for (const [id, progress] of this.progress) {
        if (id !== this.id) wantedFrom = Math.min(wantedFrom, progress.match + 1);
      }
    }
    this.log.release(
      Math.min(this.log.applied, this.log.stableIndex),
      wantedFrom,
      this.config.followerCatchUpBytesMax,
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Snapshots and compaction (asked for by the application)

  /** What a snapshot of the application's state at its applied index must record. */
  snapshotMetaAtApplied(): SnapshotMeta {
    const index = this.log.applied;
    const term = this.log.term(index);
    invariant(term !== undefined, `no term for applied index ${index}`);
    return { index, term, membership: this.membership.toMembership() };
  }

  /**
   * The driver has durably saved `snapshot` (taken at the applied index): with its data, or stored
   * without it (then the core reads it back through stableSnapshots). The core keeps it to send to
   * followers and drops log entries through `compactThrough` (at most the snapshot's index).
   * Returns the new compaction point, which the driver applies to its log store.
   */
  compact(snapshot: Snapshot | StoredSnapshot, compactThrough: number): LogOffset {
    invariant(snapshot.meta.index <= this.log.applied, "a snapshot beyond the applied index");
    if (this.snapshot === null || snapshot.meta.index > this.snapshot.meta.index)
      this.snapshot = this.holdSnapshot(snapshot, true);
    return this.log.compact(Math.min(compactThrough, snapshot.meta.index, this.log.stableIndex));
  }

  /**
   * The index of the oldest snapshot this leader is sending to a follower (null: none in transfer).
   * A snapshot taken meanwhile would restart the transfer with itself, and its compaction would
   * drop the entries the follower needs after the one it installs: the driver waits (RaftNode).
   */
  snapshotInTransfer(): number | null {
    let oldest: number | null = null;
    for (const progress of this.progress.values()) {
      const index = progress.state === "snapshot" ? progress.snapshot?.meta.index : undefined;
      if (index !== undefined && (oldest === null || index < oldest)) oldest = index;
    }
    return oldest;
  }

  // ---------------------------------------------------------------------------------------------
  // Observation

  /**
   * Reads this node answered from its read lease since it started, its own and its followers':
   * each one promised that no newer leader had been elected by then (the simulator checks it,
   * after every step: hence a getter, without status()'s copies).
   */
  get readsFromLease(): number {
    return this.leaseReadsAnswered;
  }

  /**
   * Whether this node would now refuse its vote and pre-vote to any candidate but a leader
   * transfer's: with CheckQuorum, it heard from a leader less than an election timeout ago. A read
   * lease rests on a quorum of voters doing so (the simulator checks it at every read answered
   * from one: hence a getter).
   */
  get withholdsVotes(): boolean {
    return this.config.checkQuorum && this.leaderContactElapsed < this.config.electionTicks;
  }

  /**
   * Whether this node would vote, its promise notwithstanding, for a transfer's candidate acting on
   * the TimeoutNow numbered `transferNumber` of the leader of `leaderTerm`: only while it is in
   * that term (a node whose term moved on no longer knows what that leader abandoned, and one
   * behind it heard nothing of it) and has not heard that TimeoutNow abandoned. The simulator
   * checks it with the lease's quorum.
   */
  votesForTransfer(leaderTerm: number, transferNumber: number): boolean {
    return this.term === leaderTerm && this.honoursTransfer(transferNumber);
  }

  /** TimeoutNows this node sent as the leader of its term (see votesForTransfer). */
  get transfersSentThisTerm(): number {
    return this.role === "leader" ? this.transfersSent : 0;
  }

  /** Whether `id` votes in this node's latest configuration (status() copies all of it). */
  hasVoter(id: NodeId): boolean {
    return this.membership.isVoter(id);
  }

  status(): RaftStatus {
    const progress = new Map<NodeId, { match: number; next: number; state: string }>();
    for (const [id, pr] of this.progress)
      progress.set(id, { match: pr.match, next: pr.next, state: pr.state });
    const held = this.log.heldCount();
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader: this.leader,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      firstIndex: this.log.firstIndex(),
      entriesInMemory: held.entries,
      entryBytesInMemory: held.bytes,
      snapshotBytesInMemory: this.snapshot?.data?.length ?? 0,
      membership: this.membership.toMembership(),
      removed: this.isRemoved(),
      leadTransferee: this.leadTransferee,
      readsFromLease: this.leaseReadsAnswered,
      progress,
    };
  }

  softState(): SoftState {
    const last = this.lastSoftState;
    if (last.role === this.role && last.leader === this.leader && last.term === this.term) return last;
    this.lastSoftState = { role: this.role, leader: this.leader, term: this.term };
    return this.lastSoftState;
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  /** The entry at `index` if the in-memory log still holds it (for checks and tests). */
  entryAt(index: number): Entry | undefined {
    return this.log.entry(index);
  }

  termAt(index: number): number | undefined {
    return this.log.term(index);
  }

  // ---------------------------------------------------------------------------------------------
  // Roles

  private reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = null;
      // A new term's leader has abandoned nothing yet, and this node has heard from none.
      this.transfersAbandoned = 0;
    }
    this.leader = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout =
      this.config.electionTicks + this.config.random.nextInt(this.config.electionTicks);
    this.standAgainAt = null;
    this.leadTransferee = null;
    this.votes = new Map();
    this.progress = new Map();
    this.readRounds = [];
    this.readsAwaitingCommit = [];
    this.readRoundOpen = null;
    this.roundSentAt = new Map();
    this.leaseAckedAt = new Map();
    // A node leads at most once in a term: its TimeoutNows' numbers never repeat in one.
    this.transfersSent = 0;
    this.transfersSentBeforeTimeout = 0;
    this.uncommittedBytes = 0;
    this.broadcastPending = false;
    this.snapshotReception = null;
  }

  private becomeFollower(term: number, leader: NodeId | null): void {
    this.reset(term);
    this.role = "follower";
    this.leader = leader;
  }

  private becomePreCandidate(): void {
    invariant(this.role !== "leader", "a leader cannot become a pre-candidate");
    // A pre-candidate keeps its term and vote: nothing changes unless the pre-vote wins.
    this.role = "preCandidate";
    this.votes = new Map();
    this.leader = null;
  }

  private becomeCandidate(): void {
    invariant(this.role !== "leader", "a leader cannot become a candidate");
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  private becomeLeader(): void {
    invariant(this.role === "candidate", `only a candidate can become leader (was ${this.role})`);
    this.reset(this.term);
    this.role = "leader";
    this.leader = this.id;
    for (const member of this.membership.members()) {
      if (member === this.id) continue;
      this.progress.set(member, this.newProgress());
    }
    // An empty entry of the new term: committing it commits everything before it (section 5.4.2),
    // and ReadIndex waits for it (section 6.4).
    this.log.append({
      index: this.log.lastIndex() + 1,
      term: this.term,
      type: "normal",
      data: new Uint8Array(0),
    });
    this.pendingMembershipIndex = this.log.lastIndex();
    this.broadcastPending = true;
  }

  private newProgress(): Progress {
    return new Progress(
      this.log.lastIndex() + 1,
      this.config.inflightMessagesMax,
      this.config.inflightBytesMax,
    );
  }

  private promotable(): boolean {
    return this.campaignAllowed && this.membership.isVoter(this.id) && !this.toldRemoved;
  }

  /** This node was removed from the cluster: its own applied log says so, or a member told it. */
  isRemoved(): boolean {
    return this.toldRemoved || this.membership.removed.has(this.id);
  }

  // ---------------------------------------------------------------------------------------------
  // Elections

  private tickElection(): void {
    this.electionElapsed++;
    const timedOut =
      this.electionElapsed >= this.randomizedElectionTimeout ||
      (this.standAgainAt !== null && this.electionElapsed >= this.standAgainAt);
    if (this.promotable() && timedOut) {
      this.electionElapsed = 0;
      this.standAgainAt = null;
      this.hup(null);
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.config.electionTicks) {
      this.electionElapsed = 0;
      if (this.config.checkQuorum && !this.quorumActive()) {
        // CheckQuorum: a leader cut off from a majority steps down, so its clients go elsewhere.
        this.becomeFollower(this.term, null);
        return;
      }
      this.leadTransferee = null;
      this.abandonTransfers();
    }
    for (const progress of this.progress.values()) {
      if (progress.snapshot !== null) progress.snapshot.idleTicks++;
    }
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat(0);
    }
  }

  private quorumActive(): boolean {
    const active = new Set<NodeId>([this.id]);
    for (const [id, progress] of this.progress) {
      if (progress.recentActive) active.add(id);
      progress.recentActive = false;
    }
    return this.membership.hasQuorum(active);
  }

  private hasUnappliedMembershipChanges(): boolean {
    for (let index = this.log.applied + 1; index <= this.log.committed; index++) {
      if (this.log.entry(index)?.type === "config") return true;
    }
    return false;
  }

  /** Stands for election; `transferNumber` (non-null) on a leader's TimeoutNow numbered so. */
  private hup(transferNumber: number | null): void {
    if (this.role === "leader" || !this.promotable()) return;
    // Its own vote keeps the promise it makes others (leaderContactElapsed): only a transfer the
    // leader began may skip it.
    if (
      transferNumber === null &&
      this.config.checkQuorum &&
      this.leaderContactElapsed < this.config.electionTicks
    )
      return;
    // A committed but unapplied membership change could mean we count votes with a stale voter set.
    if (this.hasUnappliedMembershipChanges()) return;
    if (this.config.preVote && transferNumber === null) this.startElection("preVote", null);
    else this.startElection("vote", transferNumber);
  }

  private startElection(kind: "preVote" | "vote", transferNumber: number | null): void {
    if (kind === "preVote") this.becomePreCandidate();
    else this.becomeCandidate();
    const electionTerm = kind === "preVote" ? this.term + 1 : this.term;
    this.votes.set(this.id, true);
    if (this.membership.tally(this.votes) === "won") {
      if (kind === "preVote") this.startElection("vote", null);
      else this.becomeLeader();
      return;
    }
    for (const voter of [...this.membership.voters].sort()) {
      if (voter === this.id) continue;
      const base = {
        from: this.id,
        to: voter,
        term: electionTerm,
        lastIndex: this.log.lastIndex(),
        lastTerm: this.log.lastTerm(),
      };
      const request: PreVoteMessage | VoteMessage =
        kind === "preVote"
          ? { ...base, type: "preVote" }
          : { ...base, type: "vote", transfer: transferNumber !== null, transferNumber: transferNumber ?? 0 };
      this.send(request);
    }
  }

  /** `forced`: a transfer's vote request that this node honours (see step). */
  private handleVoteRequest(message: PreVoteMessage | VoteMessage, forced: boolean): void {
    const responseType = message.type === "preVote" ? "preVoteResponse" : "voteResponse";
    // Also in its own term: a stale answer may have raised its term and cleared its leader.
    const withheld =
      !forced && this.config.checkQuorum && this.leaderContactElapsed < this.config.electionTicks;
    const canVote =
      this.vote === message.from ||
      (!withheld &&
        ((this.vote === null && this.leader === null) ||
          (message.type === "preVote" && message.term > this.term)));
    if (canVote && this.log.isUpToDate(message.lastIndex, message.lastTerm)) {
      // A granted response carries the request's term, so the candidate counts it (not ours, which may be lower).
      this.send({ type: responseType, from: this.id, to: message.from, term: message.term, granted: true });
      if (message.type === "vote") {
        this.electionElapsed = 0;
        this.vote = message.from;
      } else if (this.role === "preCandidate" && this.yieldsTo(message)) {
        this.becomeFollower(this.term, null);
      }
    } else {
      this.send({ type: responseType, from: this.id, to: message.from, term: this.term, granted: false });
      if (
        message.type === "vote" &&
        this.role === "candidate" &&
        message.term === this.term &&
        this.ranksAhead(message)
      ) {
        this.standAgainAt = Math.min(
          this.standAgainAt ?? Number.POSITIVE_INFINITY,
          this.electionElapsed + Math.ceil(this.config.electionTicks / 2),
        );
      }
    }
  }

  /**
   * Whether this candidate, refusing a rival's vote request for its own term, ranks ahead of that
   * rival (its log further on, or as far with a greater id: the order `yieldsTo` keeps). Two
   * candidates in one term that each hold their own vote may split the rest, and then nobody leads
   * until a candidate's randomized timeout, 1 to 2 election timeouts, ends the term (seen with five
   * voters, where two may each win a pre-vote quorum before hearing of the other, and with three
   * when one is down). The rival's request shows the race, not its outcome: most such races end
   * within a round trip, one candidate winning and the other losing the count, and a candidate
   * that stood again at once deposed a fresh leader (50 failovers of a loaded 5-node cluster: 6 took
   * two or three terms, against none). So the candidate ahead stands again half an election
   * timeout later if nobody has won by then (a winner's first append makes it a follower), with a
   * pre-vote for the next term that the rival and those who voted in this one grant, as its log is
   * at least as far as anyone's they voted for; the one behind waits out its timeout. Safety is
   * unchanged: this only chooses when to campaign.
   */
  private ranksAhead(rival: VoteMessage): boolean {
    const lastTerm = this.log.lastTerm();
    if (rival.lastTerm !== lastTerm) return lastTerm > rival.lastTerm;
    const lastIndex = this.log.lastIndex();
    if (rival.lastIndex !== lastIndex) return lastIndex > rival.lastIndex;
    return this.id > rival.from;
  }

  /**
   * Whether this pre-candidate stops its own pre-vote for another's that it has just granted: a
   * log further on, or as far with a greater id. Two voters that time out within a pre-vote round
   * trip of each other both pass pre-vote (a pre-vote binds no one), stand in the same term and
   * split the vote: another election timeout before anyone leads (seen in chaos runs under load,
   * docs/chaos.md). With this, one of them stands. Pre-votes change no term or vote, so safety does
   * not depend on it; a pre-candidate that stops times out again if the other does not win. Asked
   * only of a pre-vote just granted, whose log is therefore at least as far as ours.
   */
  private yieldsTo(request: PreVoteMessage): boolean {
    const sameLog = request.lastTerm === this.log.lastTerm() && request.lastIndex === this.log.lastIndex();
    return !sameLog || request.from > this.id;
  }

  private stepCandidate(message: Message): void {
    switch (message.type) {
      case "append":
      case "heartbeat":
      case "snapshotChunk":
        // Someone won this term.
        this.becomeFollower(this.term, message.from);
        this.stepFollower(message);
        return;
      case "preVoteResponse":
      case "voteResponse": {
        const expected = this.role === "preCandidate" ? "preVoteResponse" : "voteResponse";
        if (message.type !== expected) return;
        this.votes.set(message.from, message.granted);
        const outcome = this.membership.tally(this.votes);
        if (outcome === "won") {
          if (this.role === "preCandidate") this.startElection("vote", null);
          else this.becomeLeader();
        } else if (outcome === "lost") {
          this.becomeFollower(this.term, null);
        }
        return;
      }
      default:
        return;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Follower

  private stepFollower(message: Message): void {
    switch (message.type) {
      case "append":
        this.electionElapsed = 0;
        this.leaderContactElapsed = 0;
        this.leader = message.from;
        this.handleAppend(message);
        return;
      case "heartbeat":
        this.electionElapsed = 0;
        this.leaderContactElapsed = 0;
        this.leader = message.from;
        this.handleHeartbeat(message);
        return;
      case "snapshotChunk":
        this.electionElapsed = 0;
        this.leaderContactElapsed = 0;
        this.leader = message.from;
        this.handleSnapshotChunk(message);
        return;
      case "timeoutNow":
        // Leadership transfer: campaign at once, skipping pre-vote and the leader lease. Not on a
        // TimeoutNow the leader abandoned since (late, or sent twice): its lease may rest on us.
        if (this.honoursTransfer(message.transferNumber)) this.hup(message.transferNumber);
        return;
      case "readIndexResponse":
        this.readStates.push({ index: message.index, context: message.context });
        return;
      default:
        return;
    }
  }

  private handleAppend(message: AppendMessage): void {
    if (message.prevIndex < this.log.committed) {
      // Everything up to our commit index must already match (leader completeness). An entry that
      // differs from a committed one means this log is not the cluster's: another cluster's, or a
      // node that founded a cluster of its own instead of joining. Going on would hide it forever.
      for (const entry of message.entries) {
        if (entry.index > this.log.committed) break;
        const ours = this.log.term(entry.index);
        if (ours !== undefined && ours !== entry.term) {
          broken(
            `the leader ${message.from}'s entry ${entry.index} (term ${entry.term}) differs from this node's committed entry ${entry.index} (term ${ours}): this node's log belongs to another cluster`,
          );
        }
      }
      // Tell the leader where we really are.
      this.respondToAppend(message, true, this.log.committed, 0, 0);
      return;
    }
    const prevMatches =
      this.log.matchTerm(message.prevIndex, message.prevTerm) ||
      (this.bugs.has("skipPrevCheck") &&
        message.prevIndex <= this.log.lastIndex() &&
        message.prevIndex >= this.log.offsetIndex());
    if (!prevMatches) {
      // Fast backtracking (etcd's findConflictByTerm): skip every entry whose term is above the
      // leader's prevTerm, so one round trip skips a whole term of divergent entries.
      const hint = this.log.findConflictByTerm(
        Math.min(message.prevIndex, this.log.lastIndex()),
        message.prevTerm,
      );
      this.respondToAppend(message, false, message.prevIndex, hint.index, hint.term);
      return;
    }
    const lastNew = this.log.appendFromLeader(message.prevIndex, message.entries);
    this.log.commitTo(Math.min(message.commit, lastNew));
    // An answer would tell the leader only what the answers to its earlier appends tell it: one
    // answer fewer per follower and commit (a lone write: 2 answers to the leader, not 4).
    if (message.commitOnly && message.entries.length === 0) return;
    this.respondToAppend(message, true, lastNew, 0, 0);
  }

  private respondToAppend(
    message: AppendMessage,
    success: boolean,
    index: number,
    hintIndex: number,
    hintTerm: number,
  ): void {
    this.send({
      type: "appendResponse",
      from: this.id,
      to: message.from,
      term: this.term,
      success,
      index,
      hintIndex,
      hintTerm,
    });
  }

  private handleHeartbeat(message: HeartbeatMessage): void {
    // The leader sends min(our match, its commit), so this never passes what we hold.
    this.log.commitTo(message.commit);
    if (this.transfersAbandoned === null || message.transfersAbandoned > this.transfersAbandoned)
      this.transfersAbandoned = message.transfersAbandoned;
    this.send({
      type: "heartbeatResponse",
      from: this.id,
      to: message.from,
      term: this.term,
      readRound: message.readRound,
      transfersAbandoned: this.transfersAbandoned,
    });
  }

  private handleSnapshotChunk(message: SnapshotChunkMessage): void {
    const respond = (nextOffset: number, installed: boolean): void =>
      this.send({
        type: "snapshotResponse",
        from: this.id,
        to: message.from,
        term: this.term,
        snapshotIndex: message.meta.index,
        snapshotTerm: message.meta.term,
        nextOffset,
        installed,
      });
    if (
      message.meta.index <= this.log.committed ||
      this.log.matchTerm(message.meta.index, message.meta.term)
    ) {
      // We already hold everything the snapshot covers.
      this.snapshotReception = null;
      this.log.commitTo(Math.min(message.meta.index, this.log.lastIndex()));
      respond(message.totalBytes, true);
      return;
    }
    if (message.offset === 0) {
      if (message.totalBytes > this.config.snapshotBytesMax) return; // Refused: over our limit.
      this.snapshotReception = {
        meta: message.meta,
        totalBytes: message.totalBytes,
        term: this.term,
        chunks: [],
        received: 0,
      };
    }
    const reception = this.snapshotReception;
    if (
      reception === null ||
      reception.meta.index !== message.meta.index ||
      reception.meta.term !== message.meta.term ||
      reception.term !== this.term
    ) {
      respond(0, false);
      return;
    }
    if (
      message.offset !== reception.received ||
      reception.received + message.chunk.length > reception.totalBytes
    ) {
      // A lost or reordered chunk (or one past the end): say where to resume.
      respond(reception.received, false);
      return;
    }
    if (this.snapshotReceiver === null) reception.chunks.push(message.chunk);
    else
      this.snapshotReceiver.receiveSnapshotChunk(
        reception.meta,
        reception.totalBytes,
        reception.received,
        message.chunk,
      );
    reception.received += message.chunk.length;
    if (reception.received < reception.totalBytes) {
      respond(reception.received, false);
      return;
    }
    this.snapshotReception = null;
    this.restoreSnapshot(
      this.snapshotReceiver === null
        ? { meta: reception.meta, data: concatBytes(reception.chunks, reception.totalBytes) }
        : { meta: reception.meta, totalBytes: reception.totalBytes },
    );
    respond(reception.totalBytes, true);
  }

  private restoreSnapshot(snapshot: Snapshot | StoredSnapshot): void {
    this.log.restore({ index: snapshot.meta.index, term: snapshot.meta.term });
    this.membership = new MembershipState(snapshot.meta.membership);
    this.snapshot = this.holdSnapshot(snapshot, false);
    this.pendingSnapshot = snapshot;
  }

  // ---------------------------------------------------------------------------------------------
  // Leader

  private stepLeader(message: Message): void {
    switch (message.type) {
      case "appendResponse":
        this.handleAppendResponse(message);
        return;
      case "heartbeatResponse":
        this.handleHeartbeatResponse(message);
        return;
      case "snapshotResponse":
        this.handleSnapshotResponse(message);
        return;
      case "readIndex":
        if (!this.membership.isMember(message.from)) return;
        if (this.readQueueLength() >= this.config.pendingReadsMax) return; // The follower's read times out.
        this.enqueueRead(message.context, message.from);
        return;
      case "append":
      case "heartbeat":
      case "snapshotChunk":
        invariant(false, `two leaders in term ${this.term}: ${this.id} and ${message.from}`);
        return;
      default:
        return;
    }
  }

  private checkCanPropose(bytes: number): void {
    if (this.role !== "leader") throw new NotLeaderError(this.leader);
    if (this.leadTransferee !== null) {
      throw new RaftError(
        "TRANSFER_IN_PROGRESS",
        `leadership is being transferred to ${this.leadTransferee}`,
      );
    }
    if (bytes > this.config.entryBytesMax) {
      throw new RaftError(
        "PROPOSAL_TOO_LARGE",
        `proposal of ${bytes} bytes exceeds entryBytesMax (${this.config.entryBytesMax})`,
      );
    }
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > this.config.uncommittedBytesMax) {
      throw new RaftError(
        "UNCOMMITTED_BYTES_EXCEEDED",
        `${this.uncommittedBytes} bytes are proposed but not committed (limit ${this.config.uncommittedBytesMax}); retry later`,
      );
    }
  }

  private appendProposal(type: EntryType, data: Uint8Array): ProposalPosition {
    this.checkCanPropose(data.length);
    const entry: Entry = { index: this.log.lastIndex() + 1, term: this.term, type, data };
    this.log.append(entry);
    this.uncommittedBytes += data.length;
    this.broadcastPending = true;
    return { index: entry.index, term: entry.term };
  }

  private applyMembershipChange(change: MembershipChange): void {
    this.membership.apply(change);
    if (this.role !== "leader") return;
    if (!this.membership.isVoter(this.id)) {
      // Removed (or never a voter): hand over by stepping down; the others elect a leader.
      this.becomeFollower(this.term, null);
      return;
    }
    for (const member of this.membership.members()) {
      if (member === this.id || this.progress.has(member)) continue;
      // A new member needs the log: start probing it now rather than at the next heartbeat.
      this.progress.set(member, this.newProgress());
      this.sendAppend(member, true);
    }
    for (const id of [...this.progress.keys()]) {
      if (!this.membership.isMember(id)) this.progress.delete(id);
    }
    if (this.leadTransferee !== null && !this.membership.isVoter(this.leadTransferee))
      this.leadTransferee = null;
    // The quorum changed: more entries may be committed now.
    if (this.maybeCommit()) this.broadcastPending = true;
  }

  private matchOf(id: NodeId): number {
    if (id === this.id) return this.log.stableIndex;
    return this.progress.get(id)?.match ?? 0;
  }

  /** Commits what a quorum holds, but only by counting replicas of an entry of this term (section 5.4.2). */
  private maybeCommit(): boolean {
    const index = this.membership.committedIndex((id) => this.matchOf(id));
    if (index <= this.log.committed) return false;
    if (this.log.term(index) !== this.term && !this.bugs.has("commitPreviousTerm")) return false;
    this.log.commitTo(index);
    if (this.readsAwaitingCommit.length > 0 && this.log.term(this.log.committed) === this.term) {
      const waiting = this.readsAwaitingCommit;
      this.readsAwaitingCommit = [];
      for (const read of waiting) this.startRead(read.context, read.from);
    }
    return true;
  }

  /** Sends new entries (coalesced proposals) and commit updates to every follower. */
  private flush(): void {
    if (this.role !== "leader") {
      this.broadcastPending = false;
      this.readRoundOpen = null;
      return;
    }
    if (this.broadcastPending) {
      this.broadcastPending = false;
      for (const id of this.progress.keys()) this.sendAppends(id, true, true);
    }
    if (this.readRoundOpen !== null) {
      const round = this.readRoundOpen;
      this.readRoundOpen = null;
      this.broadcastHeartbeat(round.round);
    }
  }

  /**
   * Sends appends to `to` until it is paused or up to date (pipelining in the replicate state).
   * `forCommit`: sent to carry a new commit index, so an empty one needs no answer (`commitOnly`).
   */
  private sendAppends(to: NodeId, sendIfEmpty: boolean, forCommit = false): void {
    let sent = this.sendAppend(to, sendIfEmpty, forCommit);
    while (sent && this.progress.get(to)?.state === "replicate") sent = this.sendAppend(to, false);
  }

  private sendAppend(to: NodeId, sendIfEmpty: boolean, forCommit = false): boolean {
    const progress = this.progress.get(to);
    if (progress === undefined || progress.isPaused()) return false;
    const prevIndex = progress.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) {
      invariant(prevIndex < this.log.firstIndex(), `next ${progress.next} is beyond the log of ${this.id}`);
      return this.startSnapshotTransfer(to, progress);
    }
    const entries =
      progress.next <= this.log.lastIndex()
        ? this.log.slice(progress.next, this.log.lastIndex() + 1, this.config.messageBytesMax)
        : [];
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send({
      type: "append",
      from: this.id,
      to,
      term: this.term,
      prevIndex,
      prevTerm,
      entries,
      commit: this.log.committed,
      // Only in the replicate state: a probe's empty append is how the leader finds the match,
      // and a heartbeat's answer asks for an answered one when appends may have been lost.
      commitOnly: forCommit && entries.length === 0 && progress.state === "replicate",
    });
    const last = entries.at(-1);
    if (progress.state === "replicate" && last !== undefined) {
      let bytes = 0;
      for (const entry of entries) bytes += entry.data.length;
      progress.next = last.index + 1;
      progress.inflights.add(last.index, bytes);
    } else if (progress.state === "probe") {
      progress.probeSent = true;
    }
    return true;
  }

  private handleAppendResponse(message: AppendResponseMessage): void {
    const progress = this.progress.get(message.from);
    if (progress === undefined) return;
    progress.recentActive = true;
    if (!message.success) {
      const probeFrom =
        message.hintTerm > 0
          ? this.log.findConflictByTerm(message.hintIndex, message.hintTerm).index
          : message.hintIndex;
      if (progress.maybeDecreaseTo(message.index, probeFrom)) {
        if (progress.state === "replicate") progress.becomeProbe();
        this.sendAppend(message.from, true);
      }
      return;
    }
    const updated = progress.maybeUpdate(message.index);
    if (progress.state === "replicate") progress.inflights.freeTo(message.index);
    if (updated) {
      if (progress.state === "probe") progress.becomeReplicate();
      else if (
        progress.state === "snapshot" &&
        progress.snapshot !== null &&
        progress.match >= progress.snapshot.meta.index
      ) {
        progress.becomeProbe();
        progress.becomeReplicate();
      }
      if (this.maybeCommit()) this.broadcastPending = true;
      if (message.from === this.leadTransferee && progress.match === this.log.lastIndex()) {
        this.sendTimeoutNow(message.from);
      }
    }
    this.sendAppends(message.from, false);
  }

  private handleHeartbeatResponse(message: HeartbeatResponseMessage): void {
    const progress = this.progress.get(message.from);
    if (progress === undefined) return;
    progress.recentActive = true;
    progress.probeSent = false;
    if (progress.state === "snapshot") {
      this.resumeSnapshotTransfer(message.from, progress);
    } else if (progress.match < this.log.lastIndex()) {
      // Appends may have been lost: free a slot so a (possibly empty) append can find out.
      if (progress.state === "replicate" && progress.inflights.full()) progress.inflights.freeFirst();
      this.sendAppend(message.from, true);
    }
    if (message.readRound > 0) {
      const sentAt = this.roundSentAt.get(message.readRound);
      // Only from a member that knows every TimeoutNow this leader abandoned: it would vote for
      // none of them (an older member, which says 0, holds up no lease once one was abandoned).
      if (
        sentAt !== undefined &&
        sentAt > (this.leaseAckedAt.get(message.from) ?? Number.NEGATIVE_INFINITY) &&
        message.transfersAbandoned >= (this.transfersAbandoned ?? 0)
      )
        this.leaseAckedAt.set(message.from, sentAt);
      this.acknowledgeReadRound(message.readRound, message.from);
    }
  }

  private broadcastHeartbeat(givenRound: number): void {
    let readRound = givenRound;
    const clock = this.config.clock;
    if (this.readLeaseMs > 0 && clock !== null) {
      // With a lease every heartbeat is a round, whose acknowledgements extend it. A periodic
      // one confirms the read rounds before it too: it was sent after they were registered.
      if (readRound === 0) readRound = this.nextReadRound++;
      const now = clock();
      this.roundSentAt.set(readRound, now);
      for (const [round, sentAt] of this.roundSentAt) {
        if (sentAt > now - this.readLeaseMs) break;
        this.roundSentAt.delete(round);
      }
    }
    for (const [id, progress] of this.progress) {
      const commit = Math.min(progress.match, this.log.committed);
      this.send({
        type: "heartbeat",
        from: this.id,
        to: id,
        term: this.term,
        commit,
        readRound,
        transfersAbandoned: this.transfersAbandoned ?? 0,
      });
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send(this.timeoutNow(to));
  }

  /** The next TimeoutNow of this term, to `to`; no lease holds until it is abandoned. */
  private timeoutNow(to: NodeId): TimeoutNowMessage {
    this.transfersSent++;
    return { type: "timeoutNow", from: this.id, to, term: this.term, transferNumber: this.transfersSent };
  }

  /**
   * At the end of each election timeout this leader keeps leading: the TimeoutNows it sent before
   * the previous one ended are abandoned (at least one election timeout old; a target that acted
   * on one would have been elected by now, or its campaign failed). Its heartbeats say so from now
   * on, and only the answers of members that heard it extend its lease again.
   */
  private abandonTransfers(): void {
    const abandoned = this.transfersSentBeforeTimeout;
    this.transfersSentBeforeTimeout = this.transfersSent;
    if (abandoned <= (this.transfersAbandoned ?? 0)) return;
    this.transfersAbandoned = abandoned;
    this.leaseAckedAt.clear();
  }

  /**
   * Whether this node acts on (or votes past its promise for) the TimeoutNow numbered
   * `transferNumber` of its term's leader: not once it heard that leader abandon it, nor while it
   * does not know what was abandoned. 0 is an older leader's, which abandons nothing.
   */
  private honoursTransfer(transferNumber: number): boolean {
    if (this.bugs.has("honoursAbandonedTransfers")) return true;
    const abandoned = this.transfersAbandoned;
    return abandoned !== null && (abandoned === 0 || transferNumber > abandoned);
  }

  // ---------------------------------------------------------------------------------------------
  // InstallSnapshot, chunked and resumable

  private startSnapshotTransfer(to: NodeId, progress: Progress): boolean {
    const snapshot = this.snapshot;
    invariant(snapshot !== null, `the log of ${this.id} is compacted but it holds no snapshot`);
    progress.becomeSnapshot({
      meta: snapshot.meta,
      totalBytes: snapshot.totalBytes,
      sentOffset: 0,
      chunkOwed: true,
      ackedOffset: 0,
      idleTicks: 0,
    });
    this.sendSnapshotChunks(to, progress);
    return true;
  }

  private sendSnapshotChunks(to: NodeId, progress: Progress): void {
    const transfer = progress.snapshot;
    const snapshot = this.snapshot;
    if (transfer === null || snapshot === null) return;
    if (snapshot.meta.index !== transfer.meta.index) {
      // A newer snapshot replaced the one in transfer: start over with it.
      this.startSnapshotTransfer(to, progress);
      return;
    }
    const windowBytes = this.config.snapshotChunkBytes * this.config.snapshotChunksInflightMax;
    while (transfer.sentOffset < transfer.totalBytes || transfer.chunkOwed) {
      if (transfer.sentOffset - transfer.ackedOffset >= windowBytes) return;
      const end = Math.min(transfer.totalBytes, transfer.sentOffset + this.config.snapshotChunkBytes);
      this.send({
        type: "snapshotChunk",
        from: this.id,
        to,
        term: this.term,
        meta: transfer.meta,
        totalBytes: transfer.totalBytes,
        offset: transfer.sentOffset,
        chunk: this.snapshotChunk(snapshot, transfer.sentOffset, end),
      });
      transfer.sentOffset = end;
      transfer.chunkOwed = false;
    }
  }

  /**
   * Keeps `snapshot`, without its data once `persisted` where the store can give it back. One
   * without data (saved from parts, or received through the snapshotReceiver) the store reads back.
   */
  private holdSnapshot(snapshot: Snapshot | StoredSnapshot, persisted: boolean): HeldSnapshot {
    if (!("data" in snapshot)) {
      invariant(
        this.snapshotReader !== null,
        `the snapshot at ${snapshot.meta.index} came without its data and no store can read it`,
      );
      return { meta: snapshot.meta, totalBytes: snapshot.totalBytes, data: null };
    }
    return {
      meta: snapshot.meta,
      totalBytes: snapshot.data.length,
      data: persisted && this.snapshotReader !== null ? null : snapshot.data,
    };
  }

  /** Bytes [offset, end) of the held snapshot, from memory or read back from the store. */
  private snapshotChunk(snapshot: HeldSnapshot, offset: number, end: number): Uint8Array {
    if (snapshot.data !== null) return snapshot.data.subarray(offset, end);
    if (end === offset) return new Uint8Array(0);
    invariant(this.snapshotReader !== null, "a snapshot without its data and no store to read it from");
    const chunk = this.snapshotReader.readSnapshotChunk(snapshot.meta, offset, end - offset);
    invariant(
      chunk.length === end - offset,
      `the log store answered ${chunk.length} bytes of the snapshot at ${snapshot.meta.index} for ${end - offset} from ${offset}`,
    );
    return chunk;
  }

  /**
   * On a heartbeat answer (the follower is there): if it confirmed nothing more of the snapshot for
   * an election timeout, its chunks in flight were lost; resend from where it is. Not sooner: a
   * chunk can take longer than a heartbeat to arrive and be written, and resending at every
   * heartbeat (as this did) queued copies of the window behind the chunks still on their way,
   * which slowed the transfer further - on a slow link it never finished.
   */
  private resumeSnapshotTransfer(to: NodeId, progress: Progress): void {
    const transfer = progress.snapshot;
    if (transfer === null || transfer.idleTicks < this.config.electionTicks) return;
    transfer.idleTicks = 0;
    transfer.sentOffset = transfer.ackedOffset;
    transfer.chunkOwed = true;
    this.sendSnapshotChunks(to, progress);
  }

  private handleSnapshotResponse(message: SnapshotResponseMessage): void {
    const progress = this.progress.get(message.from);
    if (progress === undefined) return;
    progress.recentActive = true;
    const transfer = progress.snapshot;
    if (message.installed) {
      // The follower holds the log through the snapshot's index (persisted before it answered).
      progress.maybeUpdate(message.snapshotIndex);
      if (progress.state === "snapshot") {
        progress.becomeProbe();
        this.sendAppend(message.from, true);
      }
      if (this.maybeCommit()) this.broadcastPending = true;
      return;
    }
    if (
      progress.state !== "snapshot" ||
      transfer === null ||
      transfer.meta.index !== message.snapshotIndex ||
      transfer.meta.term !== message.snapshotTerm
    ) {
      return;
    }
    if (message.nextOffset < transfer.ackedOffset) {
      // The follower lost its partial copy (restart, new term): start from its offset.
      transfer.sentOffset = message.nextOffset;
    }
    if (message.nextOffset > transfer.ackedOffset) transfer.idleTicks = 0;
    transfer.ackedOffset = message.nextOffset;
    if (transfer.sentOffset < transfer.ackedOffset) transfer.sentOffset = transfer.ackedOffset;
    this.sendSnapshotChunks(message.from, progress);
  }

  // ---------------------------------------------------------------------------------------------
  // ReadIndex (section 6.4)

  private readQueueLength(): number {
    let count = this.readsAwaitingCommit.length;
    for (const round of this.readRounds) count += round.reads.length;
    return count;
  }

  private enqueueRead(context: string, from: NodeId): void {
    if (this.readQueueLength() >= this.config.pendingReadsMax) {
      throw new RaftError("READ_QUEUE_FULL", `${this.config.pendingReadsMax} reads are pending; retry later`);
    }
    if (this.log.term(this.log.committed) !== this.term) {
      // Until an entry of this term commits, our commit index may lag the cluster's.
      this.readsAwaitingCommit.push({ context, from });
      return;
    }
    this.startRead(context, from);
  }

  private startRead(context: string, from: NodeId): void {
    const index = this.log.committed;
    if (
      (this.membership.voters.size === 1 && this.membership.isVoter(this.id)) ||
      this.bugs.has("readWithoutQuorum")
    ) {
      this.answerRead(context, from, index);
      return;
    }
    if (this.leaseHolds()) {
      this.leaseReadsAnswered++;
      this.answerRead(context, from, index);
      return;
    }
    // Reads arriving between two Readys share one heartbeat round.
    if (this.readRoundOpen === null) {
      this.readRoundOpen = { round: this.nextReadRound++, acks: new Set([this.id]), reads: [] };
      this.readRounds.push(this.readRoundOpen);
    }
    this.readRoundOpen.reads.push({ context, from, index });
  }

  /** Whether this leader's read lease covers now: a quorum acknowledged a round sent within it. */
  private leaseHolds(): boolean {
    const clock = this.config.clock;
    if (
      this.readLeaseMs === 0 ||
      clock === null ||
      this.transfersSent > (this.transfersAbandoned ?? 0) ||
      this.leadTransferee !== null
    )
      return false;
    const since = clock() - this.readLeaseMs;
    // Counted in place, not gathered in a set: this runs for every read the lease answers.
    let fresh = 0;
    for (const voter of this.membership.voters)
      if (voter === this.id || (this.leaseAckedAt.get(voter) ?? Number.NEGATIVE_INFINITY) > since) fresh++;
    return fresh >= this.membership.quorum();
  }

  private acknowledgeReadRound(round: number, from: NodeId): void {
    if (!this.membership.isVoter(from)) return;
    // An answer to round r confirms leadership after every earlier round was registered, too.
    for (const pending of this.readRounds) {
      if (pending.round > round) break;
      pending.acks.add(from);
    }
    while (this.readRounds.length > 0) {
      const first = this.readRounds[0];
      if (first === undefined || !this.membership.hasQuorum(first.acks)) break;
      this.readRounds.shift();
      if (first === this.readRoundOpen) this.readRoundOpen = null;
      for (const read of first.reads) this.answerRead(read.context, read.from, read.index);
    }
  }

  private answerRead(context: string, from: NodeId, index: number): void {
    if (from === this.id) this.readStates.push({ index, context });
    else this.send({ type: "readIndexResponse", from: this.id, to: from, term: this.term, context, index });
  }

  // ---------------------------------------------------------------------------------------------

  private send(message: Message): void {
    this.messages.push(message);
  }

  /**
   * Whether the term or the vote changed since the hard state was last persisted: a promise to the
   * cluster, written and synced before any message goes out. A change of the commit index alone is
   * not a reason to write: Raft's commit index is volatile state (a restarted node learns it again
   * from the leader), so it is persisted only beside the entries, snapshot, term or vote of a
   * write made anyway. Written alone it cost every node a LevelDB write between a commit and its apply.
   * A stored snapshot's index counts as committed (the log stores raise the commit to it).
   */
  private termOrVoteChanged(): boolean {
    const persisted = this.persistedHardState;
    return persisted.term !== this.term || persisted.vote !== this.vote;
  }
}
