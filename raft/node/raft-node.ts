// The driver: runs the pure Raft core against a real clock, a LogStore and a Transport. It is the
// one place that owns the Ready contract (persist, then send, then apply, then advance), applies
// committed entries to the application's state machine, and settles proposals and reads with
// their outcome. It must never send a message before the state it depends on is durable, and never
// apply an entry twice in one run.

import { randomInt } from "node:crypto";
import {
  bootstrapState,
  type Entry,
  type Membership,
  type MembershipChange,
  type Message,
  type NodeId,
  type RaftConfigInput,
  RaftCore,
  RaftInvariantError,
  type RaftStatus,
  type ReadState,
  SeededRandom,
  type Snapshot,
  type SnapshotMeta,
  type SoftState,
  type StoredSnapshot,
} from "../core/index.js";
import { type LogStore, LogStoreError, readStoredSnapshot } from "./log-store.js";
import type { Transport } from "./transport.js";

/** The application replicated by Raft. Apply must be deterministic: same entries, same state. */
export interface StateMachine<Result> {
  /** Applies one committed entry (config entries are passed too, with type "config"). */
  apply(entry: Entry): Promise<Result> | Result;
  /** The state at the last applied index. */
  snapshot(): Promise<Uint8Array> | Uint8Array;
  /**
   * Optional, for a large state: captures the state at the last applied index (quickly: the node
   * waits for it) and answers a function that reads the capture out later, a part at a time,
   * while entries go on being applied. The node's Ready loop then never waits for a whole snapshot
   * to be built, and the log store writes the parts as they come: no node holds the whole state.
   */
  captureSnapshot?(): Promise<() => AsyncIterable<Uint8Array>>;
  /** Replaces the state with a snapshot's (the leader's, or the node's own after a crash). */
  restore(snapshot: SnapshotToRestore): Promise<void> | void;
  /** The last index applied durably (0 for a state machine that lives in memory only). */
  appliedIndex(): number;
}

/**
 * A snapshot for a state machine to restore: its meta, and its bytes from the start, a part at a
 * time, as often as `read` is called (a large one comes from the log store's file, never whole in
 * memory; a state machine that checks it through before changing anything reads it twice).
 */
export interface SnapshotToRestore {
  readonly meta: SnapshotMeta;
  readonly totalBytes: number;
  read(): AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

export type RaftNodeErrorCode = "PROPOSAL_DROPPED" | "TIMEOUT" | "STOPPED" | "LEADER_CHANGED" | "REMOVED";

/** A failure of the driver rather than the core: the outcome of a proposal or read it concerns. */
export class RaftNodeError extends Error {
  override readonly name = "RaftNodeError";
  constructor(
    readonly code: RaftNodeErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export interface RaftNodeOptions<Result> {
  readonly id: NodeId;
  readonly logStore: LogStore;
  readonly transport: Transport;
  readonly stateMachine: StateMachine<Result>;
  /** Core settings (election and heartbeat ticks, limits); `random` defaults to a randomly seeded PRNG. */
  readonly raft?: Omit<RaftConfigInput, "id" | "random"> & Partial<Pick<RaftConfigInput, "random">>;
  /** The initial members when the store is empty and this node founds a new cluster. */
  readonly bootstrap?: Membership;
  /** Milliseconds per logical tick. */
  readonly tickMs?: number;
  /** A proposal or read not settled within this many milliseconds (checked each tick) fails with TIMEOUT (outcome unknown). */
  readonly requestTimeoutMs?: number;
  /** Take a snapshot and compact the log once this many entries were applied since the last snapshot. */
  readonly snapshotEveryEntries?: number;
  /**
   * A snapshot also waits until the entries applied since the last one add up to this many times
   * that snapshot's size, so that rewriting a large state costs at most 1/ratio of what writing
   * the log does (a snapshot is the whole state, read out and written again). Whatever their size,
   * at most 10 × snapshotEveryEntries entries pass between two snapshots. Default 0: the entry
   * count alone decides.
   */
  readonly snapshotLogToStateRatio?: number;
  /**
   * The ratio puts a snapshot off only while the entries' data applied since the last one is
   * under this many bytes: a restart reads the log since the snapshot back and checks it, and
   * applies again what the state machine lost. Default: no bound but the entry count's.
   */
  readonly snapshotLogBytesMax?: number;
  /** Entries kept behind a snapshot so slightly lagging followers catch up without one. */
  readonly retainEntries?: number;
  /**
   * While this leader sends a snapshot to a follower, it takes no new one (and so compacts
   * nothing) until it has applied this many entries past the one being sent: the follower then
   * finds the entries after it in the log once it has installed it, and the transfer is not
   * restarted by a newer snapshot. A follower that takes longer (down, or far too slow) no longer
   * holds the log back. Default: 10 × snapshotEveryEntries.
   */
  readonly snapshotTransferHoldEntries?: number;
  /** Called when this node's role, leader or term changes. */
  readonly onSoftState?: (state: SoftState) => void;
  /** Called once when this node applies its own removal from the membership. */
  readonly onRemoved?: () => void;
  /**
   * Called once if the node stops on a fatal error (a broken invariant, a failed write to disk),
   * with the peer its farewell went to (a leader's TimeoutNow, RaftCore.farewell), or null: what a
   * process that ends here waits to have left.
   */
  readonly onFatal?: (error: Error, farewellTo: NodeId | null) => void;
  /**
   * Voters a fatal stop's farewell passes over while another is left (the server's: sealed, out of
   * reach: they would not campaign on it, and the cluster would wait out an election timeout).
   */
  readonly farewellPassesOver?: (id: NodeId) => boolean;
  /**
   * Test-only: called at each failpoint of a Ready's handling (the chaos harness's crash points and
   * disk stalls); it may kill the process or return a promise to wait on. Absent in production.
   */
  readonly failpoint?: (point: RaftFailpoint) => Promise<void> | undefined;
}

/** One waiter answering several reads with one outcome; it waits as long as the last of them may. */
function sharedWaiter(waiters: readonly Waiter<number>[]): Waiter<number> {
  let deadline = Number.NEGATIVE_INFINITY;
  for (const waiter of waiters) if (waiter.deadline > deadline) deadline = waiter.deadline;
  return {
    resolve: (index) => {
      for (const waiter of waiters) waiter.resolve(index);
    },
    reject: (error) => {
      for (const waiter of waiters) waiter.reject(error);
    },
    deadline,
  };
}

/** Where in handling a Ready a test can crash or stall the node (see `failpoint`). */
export const raftFailpoints = [
  /** Entries or hard state about to be written to the log store: a crash loses them (never acknowledged). */
  "before-persist",
  /** Written and synced, nothing sent yet: a crash after the write, before the acknowledgement. */
  "after-persist",
  /** Committed entries about to be applied to the state machine. */
  "before-apply",
  /** Committed entries applied, the Ready not yet advanced. */
  "after-apply",
  /** A leader's snapshot written to the log store, the state machine not yet restored from it. */
  "during-snapshot-install",
] as const;
export type RaftFailpoint = (typeof raftFailpoints)[number];

export interface Proposed<Result> {
  readonly index: number;
  readonly result: Result;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
  /** performance.now() after which it fails with TIMEOUT; checked on every tick (no timer per request). */
  deadline: number;
}

const defaults = {
  tickMs: 100,
  requestTimeoutMs: 10_000,
  snapshotEveryEntries: 10_000,
  retainEntries: 1_000,
} as const;

export class RaftNode<Result> {
  readonly id: NodeId;
  private readonly core: RaftCore;
  private readonly options: RaftNodeOptions<Result>;
  private readonly tickTimer: NodeJS.Timeout;
  private readonly tickMs: number;
  /** performance.now() at the last tick handed to the core. */
  private lastTickAt = Number.NEGATIVE_INFINITY;
  private readonly proposals = new Map<number, { term: number; waiter: Waiter<Proposed<Result>> }>();
  /** Reads asked of the core, by context: one waiter may stand for several reads (askForReads). */
  private readonly reads = new Map<string, Waiter<number>>();
  /** Reads not asked for yet: the next request for a read index serves all of them. */
  private readsUnasked: Waiter<number>[] = [];
  /** Reads confirmed at an index the state machine has not applied yet, in arrival order. */
  private readsAwaitingApply: { readState: ReadState; waiter: Waiter<number> }[] = [];
  private readSequence = 0;
  private applied: number;
  private snapshotIndex: number;
  /** Bytes of entry data applied since this node started (and, at start, since the snapshot). */
  private appliedBytes: number;
  /** appliedBytes at the latest snapshot: what was applied after it is the difference. */
  private appliedBytesAtSnapshot = 0;
  /** The latest snapshot's size (saved, installed or loaded at start); 0 before the first. */
  private snapshotBytes: number;
  /** appliedBytes when the snapshot being built or waiting to be saved was captured. */
  private builtAppliedBytes = 0;
  private processing = false;
  private processAgain = false;
  private stopped = false;
  private softState: SoftState;
  /** Whether this node was removed from the cluster (and its calls are refused with REMOVED). */
  private removed = false;
  /** A snapshot being read out of the state machine, off the Ready loop (captureSnapshot). */
  private building: Promise<void> | null = null;
  /** One built and waiting for the loop to save it and compact the log. */
  private built: StoredSnapshot | null = null;

  private constructor(
    options: RaftNodeOptions<Result>,
    core: RaftCore,
    applied: number,
    snapshot: { readonly index: number; readonly bytes: number; readonly bytesAppliedSince: number },
  ) {
    this.options = options;
    this.id = options.id;
    this.core = core;
    this.applied = applied;
    this.snapshotIndex = snapshot.index;
    this.snapshotBytes = snapshot.bytes;
    this.appliedBytes = snapshot.bytesAppliedSince;
    this.softState = core.softState();
    options.transport.listen((message) => this.receive(message));
    // The tick timer keeps the process alive until stop(): a caller awaiting a proposal must not
    // see the process exit under it because nothing else was scheduled.
    this.tickMs = options.tickMs ?? defaults.tickMs;
    this.tickTimer = setInterval(() => this.tick(), this.tickMs);
  }

  /** Loads the node's state from its log store (bootstrapping a new cluster if asked) and starts it. */
  static async start<Result>(options: RaftNodeOptions<Result>): Promise<RaftNode<Result>> {
    // What the state machine applied before this start stays on disk: only the entries after it
    // are loaded with their data (a log may hold up to raft.snapshotLogBytesMax of them).
    let state = await options.logStore.load({ dataFrom: options.stateMachine.appliedIndex() + 1 });
    const notLoaded = state.notLoaded ?? { terms: [], dataBytes: [] };
    const empty =
      state.hardState.term === 0 &&
      state.snapshot === null &&
      state.entries.length === 0 &&
      notLoaded.terms.length === 0;
    if (empty && options.bootstrap !== undefined) {
      state = bootstrapState(options.bootstrap);
      await options.logStore.append(state.entries, state.hardState);
    }
    const snapshotIndex = state.snapshot?.meta.index ?? 0;
    let applied = options.stateMachine.appliedIndex();
    if (state.snapshot !== null && applied < snapshotIndex) {
      await options.stateMachine.restore(toRestore(state.snapshot, options.logStore));
      applied = snapshotIndex;
    }
    const random = options.raft?.random ?? new SeededRandom(randomInt(0, 2 ** 32 - 1));
    // The monotonic clock a read lease is measured on (RaftCore.setReadLease).
    const clock = options.raft?.clock ?? (() => performance.now());
    const core = new RaftCore({ ...options.raft, id: options.id, random, clock }, state, {
      applied,
      stableEntries: options.logStore,
      stableSnapshots: options.logStore,
      // A snapshot from the leader goes to the store's file as it arrives, never whole in memory.
      snapshotReceiver: options.logStore,
    });
    // The entries applied since the snapshot count toward the next one across a restart.
    let bytesAppliedSince = 0;
    const since = (index: number) => index > snapshotIndex && index <= applied;
    notLoaded.dataBytes.forEach((bytes, i) => {
      if (since(state.offset.index + 1 + i)) bytesAppliedSince += bytes;
    });
    for (const entry of state.entries) {
      if (since(entry.index)) bytesAppliedSince += entry.data.length;
    }
    const node = new RaftNode(options, core, applied, {
      index: snapshotIndex,
      bytes: state.snapshot === null ? 0 : snapshotSize(state.snapshot),
      bytesAppliedSince,
    });
    // A node that applied its own removal before it stopped (its log or snapshot says so) knows it
    // at once; one removed while it was down learns it from the first member it contacts.
    node.noticeMembership();
    node.schedule();
    return node;
  }

  /** Proposes `data`; resolves once it is applied here with the state machine's result. */
  propose(data: Uint8Array): Promise<Proposed<Result>> {
    this.assertRunning();
    this.assertMember();
    const position = this.core.propose(data);
    const promise = this.trackProposal(position.index, position.term);
    this.schedule();
    return promise;
  }

  /** Proposes a membership change; resolves once it is applied here. */
  proposeMembershipChange(change: MembershipChange): Promise<Proposed<Result>> {
    this.assertRunning();
    const position = this.core.proposeMembershipChange(change);
    const promise = this.trackProposal(position.index, position.term);
    this.schedule();
    return promise;
  }

  /**
   * A linearizable read barrier: resolves with an index once this node has applied everything
   * committed before the call, as confirmed by a quorum. Read the state machine after it resolves.
   */
  readIndex(): Promise<number> {
    this.assertRunning();
    this.assertMember();
    const promise = new Promise<number>((resolve, reject) => {
      this.readsUnasked.push({ resolve, reject, deadline: this.deadline() });
    });
    this.schedule();
    return promise;
  }

  /**
   * Asks the core for one read index for every read that came since the last ask, before each
   * Ready is taken. Each of them arrived before the request was made, so the index it is answered
   * with (the leader's commit index when it took the request, confirmed) covers every write
   * acknowledged before any of them: etcd's linearizable read loop shares its requests the same
   * way. A follower sends the leader one message per batch of reads, not one per read, and gets
   * one answer.
   */
  private askForReads(): void {
    if (this.readsUnasked.length === 0) return;
    const group = this.readsUnasked;
    this.readsUnasked = [];
    const waiter = group.length === 1 ? (group[0] as Waiter<number>) : sharedWaiter(group);
    const context = `${this.id}:${++this.readSequence}`;
    try {
      this.core.readIndex(context);
    } catch (error) {
      // No leader known, or the leader's queue of reads full: every read of the batch hears it.
      waiter.reject(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    this.reads.set(context, waiter);
  }

  transferLeadership(target: NodeId): void {
    this.assertRunning();
    this.core.transferLeadership(target);
    this.schedule();
  }

  /** Starts an election now (tests and operators' "campaign" command). */
  campaign(): void {
    this.assertRunning();
    this.core.campaign();
    this.schedule();
  }

  /**
   * Lets this node, while it leads, answer linearizable reads without a heartbeat round for
   * `durationMs` after a quorum acknowledged one (RaftCore.setReadLease; readLeaseMsFor gives a
   * sound duration); 0 turns it off.
   */
  setReadLease(durationMs: number): void {
    this.core.setReadLease(durationMs);
  }

  /** Whether this node may stand for election (see RaftCore.setCampaignAllowed). */
  setCampaignAllowed(allowed: boolean): void {
    this.core.setCampaignAllowed(allowed);
  }

  /** Everything worth observing, copied (progress, sorted membership): for status calls, not per request. */
  status(): RaftStatus {
    return this.core.status();
  }

  /**
   * Role, leader and term as the core has them now, without status()'s copies: what routing a
   * request needs, asked several times per call (a node's whole status was 3% of what a call
   * allocated).
   */
  leadership(): SoftState {
    return this.core.softState();
  }

  isStopped(): boolean {
    return this.stopped;
  }

  /** Whether this node applied its own removal from the cluster: it serves nothing that needs one. */
  isRemoved(): boolean {
    return this.removed;
  }

  /** Stops ticking and receiving; pending proposals and reads fail with STOPPED. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.tickTimer);
    this.failAll(new RaftNodeError("STOPPED", "the node stopped"));
    await this.options.transport.close();
    // Let an in-flight persist, and a snapshot being read out, finish before the stores close.
    while (this.processing) await new Promise((resolve) => setImmediate(resolve));
    await this.building;
    await this.options.logStore.close();
  }

  // ---------------------------------------------------------------------------------------------

  private tick(): void {
    if (this.stopped) return;
    // A timer may fire a little early by the monotonic clock (libuv's loop time is cached and
    // whole milliseconds): such a tick is skipped, so that ticks never come closer than
    // tickMs - 1 apart. A follower counts its election timeout in ticks and withholds its vote
    // meanwhile, which a leader's read lease relies on (readLeaseMsFor); late ticks are safe.
    const now = performance.now();
    if (now - this.lastTickAt < this.tickMs - 1) return;
    this.lastTickAt = now;
    try {
      this.core.tick();
    } catch (error) {
      this.fatalIfBroken(error);
    }
    this.expireRequests();
    this.schedule();
  }

  /** Fails proposals and reads past their deadline: their outcome is unknown, the caller decides. */
  private expireRequests(): void {
    const now = performance.now();
    for (const [index, proposal] of this.proposals) {
      if (proposal.waiter.deadline > now) continue;
      this.proposals.delete(index);
      proposal.waiter.reject(
        new RaftNodeError("TIMEOUT", `proposal at ${index} not applied in time; it may still commit`),
      );
    }
    for (const [context, waiter] of this.reads) {
      if (waiter.deadline > now) continue;
      this.reads.delete(context);
      waiter.reject(new RaftNodeError("TIMEOUT", "read not confirmed in time (no quorum reachable?)"));
    }
    if (this.readsUnasked.some((waiter) => waiter.deadline <= now)) {
      const unasked = this.readsUnasked;
      this.readsUnasked = unasked.filter((waiter) => waiter.deadline > now);
      for (const waiter of unasked) {
        if (waiter.deadline <= now) waiter.reject(new RaftNodeError("TIMEOUT", "read not asked for in time"));
      }
    }
    if (this.readsAwaitingApply.some((read) => read.waiter.deadline <= now)) {
      const waiting: typeof this.readsAwaitingApply = [];
      for (const read of this.readsAwaitingApply) {
        if (read.waiter.deadline > now) waiting.push(read);
        else read.waiter.reject(new RaftNodeError("TIMEOUT", "read not applied in time"));
      }
      this.readsAwaitingApply = waiting;
    }
  }

  private receive(message: Message): void {
    if (this.stopped) return;
    try {
      this.core.step(message);
    } catch (error) {
      this.fatalIfBroken(error);
    }
    // A member's "removed" answer changes no state the Ready loop hands out.
    if (message.type === "removed") this.noticeMembership();
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.processing) {
      this.processAgain = true;
      return;
    }
    this.processing = true;
    // Start at the end of the event loop's turn, not inside the caller nor at the next microtask:
    // every proposal, read and message of this turn then goes out in one Ready - one append per
    // follower and one fsync. The calls of one turn reach propose() through promise chains of
    // different lengths (authorization, audit), and a Ready taken at the first microtask held only
    // the first few: the rest waited for its fsync and made a second Ready. Measured with the
    // audit's writes batched the same way: 7-12% more writes per second at 64 clients
    // (docs/performance.md).
    setImmediate(() => void this.processReadies());
  }

  /** The single loop that handles Readys; `processing` keeps a second one from starting. */
  private async processReadies(): Promise<void> {
    try {
      do {
        this.processAgain = false;
        for (;;) {
          if (this.stopped) break;
          this.askForReads();
          if (!this.core.hasReady()) break;
          await this.handleReady();
        }
        // A snapshot built off the loop is saved between Readys, as one taken in the loop was.
        if (!this.stopped && this.built !== null) await this.saveBuiltSnapshot();
      } while (this.processAgain && !this.stopped);
    } catch (error) {
      this.fatal(error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.processing = false;
    }
  }

  private async handleReady(): Promise<void> {
    const ready = this.core.ready();
    const store = this.options.logStore;
    // 1. Persist. Nothing below may happen before these writes are durable, but a leader's sends.
    const failpoint = this.options.failpoint;
    if (ready.snapshot !== null) {
      await store.installSnapshot(ready.snapshot);
      if (failpoint !== undefined) await failpoint("during-snapshot-install");
      await this.options.stateMachine.restore(toRestore(ready.snapshot, store));
      this.applied = ready.snapshot.meta.index;
      this.snapshotIndex = ready.snapshot.meta.index;
      this.snapshotBytes = snapshotSize(ready.snapshot);
      this.appliedBytesAtSnapshot = this.appliedBytes;
      // A snapshot of our own being built is older than the leader's: it is never saved.
      this.built = null;
    }
    // A leader's appends go out before its own write, so that the followers' writes overlap it
    // (Ready.sendBeforePersist): 6-9% more writes per second at one client (docs/performance.md).
    if (ready.sendBeforePersist) this.options.transport.send(ready.messages);
    if (ready.entries.length > 0 || ready.hardState !== null) {
      if (failpoint !== undefined) await failpoint("before-persist");
      await store.append(ready.entries, ready.hardState);
      if (failpoint !== undefined) await failpoint("after-persist");
    }
    if (this.stopped) return;
    // 2. Send (a follower's answers only now: they promise what was just persisted).
    if (!ready.sendBeforePersist) this.options.transport.send(ready.messages);
    // 3. Apply.
    if (failpoint !== undefined && ready.committedEntries.length > 0) await failpoint("before-apply");
    for (const entry of ready.committedEntries) {
      if (entry.index <= this.applied) continue;
      // Await only a state machine that is asynchronous: an await per entry costs a promise.
      const applying = this.options.stateMachine.apply(entry);
      const result = applying instanceof Promise ? await applying : applying;
      this.applied = entry.index;
      this.appliedBytes += entry.data.length;
      this.settleProposal(entry, result);
    }
    if (failpoint !== undefined && ready.committedEntries.length > 0) await failpoint("after-apply");
    for (const readState of ready.readStates) {
      const waiter = this.reads.get(readState.context);
      if (waiter === undefined) continue;
      this.reads.delete(readState.context);
      this.readsAwaitingApply.push({ readState, waiter });
    }
    // 4. Advance.
    this.core.advance();
    // Removal comes with a config entry or a snapshot, or as a member's answer (a received message).
    if (this.core.isRemoved() !== this.removed) this.noticeMembership();
    this.settleReads();
    this.noticeSoftState(ready.softState);
    this.noticeSoftState(this.core.softState());
    // One snapshot at a time: none while one is read out or waits to be saved.
    if (
      this.building === null &&
      this.built === null &&
      this.snapshotDue() &&
      !this.holdsSnapshotForTransfer()
    ) {
      await this.takeSnapshot();
    }
  }

  private snapshotEveryEntries(): number {
    return this.options.snapshotEveryEntries ?? defaults.snapshotEveryEntries;
  }

  /**
   * Whether enough was applied since the latest snapshot for the next (snapshotEveryEntries and
   * snapshotLogToStateRatio). A snapshot rewrites the whole state: taken every N entries, a state
   * as large as N entries' data would double what the disk writes.
   */
  private snapshotDue(): boolean {
    const every = this.snapshotEveryEntries();
    const entries = this.applied - this.snapshotIndex;
    if (entries < every) return false;
    if (entries >= 10 * every) return true;
    const bytes = this.appliedBytes - this.appliedBytesAtSnapshot;
    if (bytes >= (this.options.snapshotLogBytesMax ?? Number.POSITIVE_INFINITY)) return true;
    return bytes >= (this.options.snapshotLogToStateRatio ?? 0) * this.snapshotBytes;
  }

  /**
   * A snapshot in transfer to a follower holds the next one back, within its bound (see
   * snapshotTransferHoldEntries). Found in chaos runs: with a 5 MB state and a snapshot every 200
   * entries, a learner's transfers restarted with each newer snapshot and it never caught up.
   */
  private holdsSnapshotForTransfer(): boolean {
    const sending = this.core.snapshotInTransfer();
    if (sending === null) return false;
    const holdEntries = this.options.snapshotTransferHoldEntries ?? 10 * this.snapshotEveryEntries();
    return this.applied - sending < holdEntries;
  }

  private settleProposal(entry: Entry, result: Result): void {
    const proposal = this.proposals.get(entry.index);
    if (proposal === undefined) return;
    this.proposals.delete(entry.index);
    if (proposal.term === entry.term) {
      proposal.waiter.resolve({ index: entry.index, result });
    } else {
      // Another leader's entry took this index: ours was never committed and never will be.
      proposal.waiter.reject(
        new RaftNodeError("PROPOSAL_DROPPED", "the proposal was discarded by a leader change; retry"),
      );
    }
  }

  private settleReads(): void {
    if (this.readsAwaitingApply.length === 0) return;
    const waiting: typeof this.readsAwaitingApply = [];
    for (const read of this.readsAwaitingApply) {
      if (read.readState.index <= this.applied) {
        read.waiter.resolve(read.readState.index);
      } else {
        waiting.push(read);
      }
    }
    this.readsAwaitingApply = waiting;
  }

  /**
   * Snapshots the state at the applied index. A state machine that can capture (a large one)
   * is read out off the loop - the loop goes on sending heartbeats and applying entries - and
   * the loop saves the result and compacts when it is ready; a small one is read here.
   */
  private async takeSnapshot(): Promise<void> {
    const meta = this.core.snapshotMetaAtApplied();
    if (meta.index !== this.applied) return;
    const machine = this.options.stateMachine;
    if (machine.captureSnapshot === undefined) {
      await this.saveAndCompact({ meta, data: await machine.snapshot() }, this.appliedBytes);
      return;
    }
    const read = await machine.captureSnapshot();
    this.builtAppliedBytes = this.appliedBytes;
    // Written beside the loop as it is read out: saving it in the loop then only records it.
    this.building = this.options.logStore.stageSnapshot(meta, read()).then(
      (snapshot) => {
        this.building = null;
        if (this.stopped) return;
        this.built = snapshot;
        this.schedule();
      },
      (error: unknown) => {
        this.building = null;
        this.fatal(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }

  /**
   * Saves the snapshot built off the loop, unless one the leader sent has overtaken it, or a
   * transfer to a follower began while it was read out: saved, it would restart that transfer
   * (bench:catch-up, 72 MiB: 89 chunks sent for 73). It is dropped (its file goes with the next
   * save) and taken again once the transfer is done.
   */
  private async saveBuiltSnapshot(): Promise<void> {
    const snapshot = this.built;
    this.built = null;
    if (snapshot === null || snapshot.meta.index <= this.snapshotIndex) return;
    if (this.holdsSnapshotForTransfer()) return;
    await this.saveAndCompact(snapshot, this.builtAppliedBytes);
  }

  /** `appliedBytesAt`: appliedBytes when the snapshot was captured (at its index). */
  private async saveAndCompact(snapshot: Snapshot | StoredSnapshot, appliedBytesAt: number): Promise<void> {
    await this.options.logStore.saveSnapshot(snapshot);
    this.snapshotIndex = snapshot.meta.index;
    this.snapshotBytes = snapshotSize(snapshot);
    this.appliedBytesAtSnapshot = appliedBytesAt;
    const offset = this.core.compact(
      snapshot,
      snapshot.meta.index - (this.options.retainEntries ?? defaults.retainEntries),
    );
    // The last chunk of a leader's snapshot may have come in while this one was saved: the core
    // then starts its log after the leader's, which the store has not installed yet (the next
    // Ready does, and compacts). Compacted that far now, the store would have no snapshot under
    // its log: refused, and the node stopped (a chaos run, membership-under-faults).
    if (offset.index <= snapshot.meta.index) await this.options.logStore.compact(offset);
  }

  /**
   * A node removed from the cluster is told nothing more by it: its pending reads and proposals
   * would wait out their deadlines. They fail now, and so does every later one, so that clients
   * go to a member at once. (Removal is for good: ids are never reused.)
   */
  private noticeMembership(): void {
    if (this.removed || !this.core.isRemoved()) return;
    this.removed = true;
    const removed = this.removedError();
    for (const waiter of this.reads.values()) waiter.reject(removed);
    this.reads.clear();
    for (const waiter of this.readsUnasked) waiter.reject(removed);
    this.readsUnasked = [];
    for (const { waiter } of this.proposals.values()) waiter.reject(removed);
    this.proposals.clear();
    this.options.onRemoved?.();
  }

  private assertMember(): void {
    if (this.removed) throw this.removedError();
  }

  private removedError(): RaftNodeError {
    return new RaftNodeError("REMOVED", `${this.id} was removed from the cluster; ask another member`);
  }

  private trackProposal(index: number, term: number): Promise<Proposed<Result>> {
    return new Promise<Proposed<Result>>((resolve, reject) => {
      this.proposals.set(index, { term, waiter: { resolve, reject, deadline: this.deadline() } });
    });
  }

  private noticeSoftState(state: SoftState): void {
    const previous = this.softState;
    if (previous.role === state.role && previous.leader === state.leader && previous.term === state.term)
      return;
    this.softState = state;
    // A read index asked of the old leader (or by this node as the old leader) is never answered
    // now: refuse those reads at once, so their callers ask the new leader instead of waiting out
    // their deadline. Reads already confirmed (awaiting apply) are unaffected.
    if (previous.leader !== state.leader || previous.term !== state.term) {
      const dropped = new RaftNodeError(
        "PROPOSAL_DROPPED",
        "the read was not confirmed before a leader change; retry",
      );
      for (const waiter of this.reads.values()) waiter.reject(dropped);
      this.reads.clear();
    }
    // A leader that lost its role (cut off, or deposed) cannot tell whether its pending proposals
    // will commit - the new leader decides - so their callers are answered now, as outcome
    // unknown, rather than at their deadline (etcd answers "leader changed" the same way).
    if (previous.role === "leader" && state.role !== "leader") {
      const changed = new RaftNodeError(
        "LEADER_CHANGED",
        "this node lost the leadership before the write committed; it may or may not commit",
      );
      for (const { waiter } of this.proposals.values()) waiter.reject(changed);
      this.proposals.clear();
    }
    this.options.onSoftState?.(state);
  }

  /**
   * A broken invariant, or a log store that cannot read back an entry the core let go of (the
   * core reads them while it steps: a follower lagging), stops the node as a failed write does.
   */
  private fatalIfBroken(error: unknown): void {
    if (error instanceof RaftInvariantError || error instanceof LogStoreError) this.fatal(error);
    else throw error;
  }

  private fatal(error: Error): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.tickTimer);
    // A leader's last message: a voter campaigns now, not an election timeout from now (a full
    // disk on the leader cost the cluster a whole election timeout without a leader).
    const farewell = this.core.farewell(this.options.farewellPassesOver);
    if (farewell !== null) this.options.transport.send([farewell]);
    this.failAll(new RaftNodeError("STOPPED", `the node stopped: ${error.message}`, { cause: error }));
    this.options.onFatal?.(error, farewell?.to ?? null);
  }

  private failAll(error: RaftNodeError): void {
    for (const { waiter } of this.proposals.values()) waiter.reject(error);
    this.proposals.clear();
    for (const waiter of this.reads.values()) waiter.reject(error);
    this.reads.clear();
    for (const waiter of this.readsUnasked) waiter.reject(error);
    this.readsUnasked = [];
    for (const { waiter } of this.readsAwaitingApply) waiter.reject(error);
    this.readsAwaitingApply = [];
  }

  private assertRunning(): void {
    if (this.stopped) throw new RaftNodeError("STOPPED", "the node is stopped");
  }

  private deadline(): number {
    return performance.now() + (this.options.requestTimeoutMs ?? defaults.requestTimeoutMs);
  }
}

/** A snapshot with its data hands the data; a stored one is read back from the log store's file. */
function toRestore(snapshot: Snapshot | StoredSnapshot, store: LogStore): SnapshotToRestore {
  if ("data" in snapshot)
    return { meta: snapshot.meta, totalBytes: snapshot.data.length, read: () => [snapshot.data] };
  return { ...snapshot, read: () => readStoredSnapshot(store, snapshot) };
}

/** A snapshot's size in bytes, whether it carries its data or is stored. */
export function snapshotSize(snapshot: Snapshot | StoredSnapshot): number {
  return "data" in snapshot ? snapshot.data.length : snapshot.totalBytes;
}
