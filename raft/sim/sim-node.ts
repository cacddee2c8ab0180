// One simulated node: a Raft core, a disk that keeps only what a Ready persisted, and the key-value
// state machine. It follows the Ready contract exactly (persist, then send, then apply, then
// advance; a leader sends first), so a whole cluster runs deterministically in one thread: at
// once, but for a leader's log write, which may take simulated time while the core goes on being
// stepped. A crash drops the core and everything in memory; a restart rebuilds the core from the
// disk alone. A pause (a stopped process, a long garbage collection) stops its ticks, its Readys
// and its disk's completions; what reaches it meanwhile (messages, client calls) waits, and is
// taken on resuming in an order the seed picks, as a process finds both waiting on its sockets.

import {
  describeMessage,
  type Entry,
  type HardState,
  type LogOffset,
  type Message,
  type NodeId,
  type PersistentState,
  type PersistentStateWithData,
  type RaftConfigInput,
  RaftCore,
  type Ready,
  type Snapshot,
  type SoftState,
} from "../core/index.js";
import { LogStoreError, readSnapshotChunkOf, SnapshotCollector } from "../node/log-store.js";
import { compactedEntriesOf, readEntriesOf } from "../node/memory-log-store.js";
import { KvStateMachine } from "./kv-state-machine.js";
import { type SafetyChecker, SafetyViolation } from "./safety-checker.js";

export interface SimDisk {
  hardState: HardState;
  snapshot: Snapshot | null;
  offset: LogOffset;
  entries: Entry[];
}

/** What a node reports back to the simulator. */
export interface SimNodeHooks {
  readonly checker: SafetyChecker;
  send(message: Message): void;
  /** A proposal's entry was applied (result) or replaced by another entry ("failed"). */
  writeDone(operation: number, result: boolean | null | "failed"): void;
  readDone(operation: number, value: string | null): void;
  /** This node, as leader, answered `reads` reads from its read lease since the last call. */
  leaseReads(id: NodeId, core: RaftCore, reads: number): void;
  roleChanged(id: NodeId, previous: SoftState, current: SoftState, core: RaftCore): void;
  /** A config entry was applied on this node. */
  membershipApplied(id: NodeId, entry: Entry): void;
  /** This node, as leader, persisted a higher commit index. */
  leaderCommitted(id: NodeId, core: RaftCore, from: number, to: number): void;
  /** The node crashed on its own (crashAfterPersists); these operations were waiting on it. */
  crashed(id: NodeId, orphaned: number[]): void;
  trace(line: string): void;
  /** The simulated time. */
  now(): number;
}

export interface SimNodeOptions {
  readonly config: Omit<RaftConfigInput, "id">;
  /** The forget-vote bug: the vote is never written to disk. */
  readonly forgetVote: boolean;
  /** Take a snapshot once this many entries were applied since the last one. */
  readonly snapshotEveryEntries: number;
  /** Entries kept in the log behind a snapshot, for slightly lagging followers. */
  readonly retainEntries: number;
  /**
   * Time units a leader's log write takes after its messages went out (0: at once). Meanwhile the
   * core is stepped and ticked, as RaftNode's is while it awaits its log store: acknowledgements
   * arrive before the leader's own copy is on disk.
   */
  readonly leaderWriteDelay: number;
  /**
   * Time units a node's own snapshot takes to save (0: at once). Meanwhile no Ready is handled, as
   * RaftNode handles none while it awaits its log store, but the core is stepped and ticked: the
   * last chunk of a leader's snapshot may come in.
   */
  readonly snapshotSaveDelay: number;
  /** The leader's read lease in time units (0: none); the config's clock reads the simulated time. */
  readonly readLeaseMs: number;
}

export class SimNode {
  core: RaftCore | null = null;
  disk: SimDisk;
  /**
   * The snapshot being received, a chunk at a time, and one received whole and not yet installed:
   * the SnapshotReceiver's file, in the simulation's memory. Not on the disk: a crash loses them.
   */
  private readonly receiver: SnapshotCollector;
  kv = new KvStateMachine();
  /** Removed from the cluster and shut down for good. */
  decommissioned = false;
  /**
   * Removed from the cluster and left running (its operator forgot it): it may have missed its
   * removal, and must learn it from the members without disturbing them.
   */
  leftRunning = false;
  /**
   * Crash in the last of this many more Readys (0: never), where each leaves a window: a
   * follower's after it is persisted, before its messages go out; a leader's (which sends first)
   * after its messages went out, before it is persisted.
   */
  crashAfterPersists = 0;
  /**
   * Leader crashes in the window after its send: every other one is a failed write rather than a
   * power cut, and the leader says its farewell first (RaftCore.farewell), as RaftNode does when
   * it stops on a failed write. Counted, not drawn, so that no seed's draws move.
   */
  private leaderWindowCrashes = 0;
  /** Paused until this time (null: running). Its clock goes on meanwhile, as a monotonic clock does. */
  pausedUntil: number | null = null;
  /** Messages that reached it while paused, in arrival order. */
  private heldMessages: Message[] = [];
  /** Client calls that reached it while paused, by operation, in arrival order. */
  private heldCalls: { operation: number; call: () => void }[] = [];
  /** Where durableCommit's last look ended: the disk agreed with the core up to here. */
  private durableCommitChecked = 0;
  /** The core's readsFromLease when last looked at: each answer since is checked. */
  private leaseReadsChecked = 0;
  /** The time of the next tick. */
  nextTickAt: number;
  readonly tickInterval: number;
  snapshotsInstalled = 0;

  /** A leader's Ready whose messages went out and whose write is in flight until `doneAt`. */
  private writing: { ready: Ready; doneAt: number } | null = null;
  /** The node's own snapshot, being saved until `doneAt`. */
  private saving: { snapshot: Snapshot; doneAt: number } | null = null;
  private softState: SoftState = { role: "follower", leader: null, term: 0 };
  private readonly proposals = new Map<number, { term: number; operation: number }>();
  private readonly reads = new Map<string, number>();
  private readsReady: { index: number; operation: number; key: string }[] = [];
  private readonly readKeys = new Map<number, string>();

  constructor(
    readonly id: NodeId,
    initial: PersistentStateWithData,
    private readonly options: SimNodeOptions,
    private readonly hooks: SimNodeHooks,
    tickInterval: number,
    firstTickAt: number,
  ) {
    this.receiver = new SnapshotCollector(`${id}'s disk`);
    this.disk = {
      hardState: initial.hardState,
      snapshot: initial.snapshot,
      offset: initial.offset,
      entries: [...initial.entries],
    };
    this.tickInterval = tickInterval;
    this.nextTickAt = firstTickAt;
    this.start();
  }

  isUp(): boolean {
    return this.core !== null;
  }

  isPaused(): boolean {
    return this.pausedUntil !== null;
  }

  /** A message for a paused node: taken when it resumes. */
  hold(message: Message): void {
    this.heldMessages.push(message);
  }

  /** A client's call to a paused node: made when it resumes (or dropped with the operation). */
  holdCall(operation: number, call: () => void): void {
    this.heldCalls.push({ operation, call });
  }

  /**
   * Resumes a paused node. What waited is taken calls first or messages first: a resumed process
   * may serve a client's read before it reads the messages that would tell it another leader was
   * elected meanwhile (a read lease must have ended by then).
   */
  resume(callsFirst: boolean): void {
    this.pausedUntil = null;
    const messages = this.heldMessages;
    const calls = this.heldCalls;
    this.heldMessages = [];
    this.heldCalls = [];
    const takeCalls = () => {
      for (const { call } of calls) if (this.core !== null) call();
    };
    const takeMessages = () => {
      for (const message of messages) {
        this.hooks.trace(`${message.from}→${message.to} ${describeMessage(message)} (held while paused)`);
        this.step(message);
      }
    };
    if (callsFirst) {
      takeCalls();
      takeMessages();
    } else {
      takeMessages();
      takeCalls();
    }
    this.process();
  }

  /** Builds the core from the disk only, as a real process would after a restart. */
  start(): void {
    const state: PersistentState = {
      hardState: this.disk.hardState,
      snapshot: this.disk.snapshot,
      offset: this.disk.offset,
      entries: [...this.disk.entries],
    };
    this.core = new RaftCore({ ...this.options.config, id: this.id }, state, {
      // Entries the core let go of are read back from the disk, which holds what Readys persisted.
      stableEntries: {
        readEntries: (low, high, bytesMax) =>
          readEntriesOf(this.disk.offset, this.disk.entries, low, high, bytesMax),
      },
      // And the snapshot it sends, from the disk (or one received whole, not yet installed): the
      // core keeps no copy once it is persisted.
      stableSnapshots: {
        readSnapshotChunk: (meta, offset, length) =>
          readSnapshotChunkOf(
            [this.disk.snapshot, this.receiver.received],
            meta,
            offset,
            length,
            `${this.id}'s disk`,
          ),
      },
      // A snapshot from the leader goes here as it arrives, as a real node's goes to a file.
      snapshotReceiver: this.receiver,
    });
    this.core.setReadLease(this.options.readLeaseMs);
    this.durableCommitChecked = 0;
    this.leaseReadsChecked = 0;
    this.kv = new KvStateMachine();
    if (this.disk.snapshot !== null) this.kv.restore(this.disk.snapshot.meta.index, this.disk.snapshot.data);
    this.softState = this.core.softState();
    this.hooks.checker.onRestart(this.id);
    this.process();
  }

  /** Returns the operations that were waiting here: their outcome is now unknown. */
  crash(): number[] {
    this.core = null;
    this.pausedUntil = null;
    this.heldMessages = [];
    this.writing = null;
    this.saving = null;
    this.receiver.clear();
    this.crashAfterPersists = 0;
    const orphaned = [
      ...[...this.proposals.values()].map((proposal) => proposal.operation),
      ...this.reads.values(),
      ...this.readsReady.map((read) => read.operation),
      ...this.heldCalls.map((held) => held.operation),
    ];
    this.heldCalls = [];
    this.proposals.clear();
    this.reads.clear();
    this.readsReady = [];
    this.readKeys.clear();
    return orphaned;
  }

  tick(): void {
    this.core?.tick();
    this.process();
  }

  step(message: Message): void {
    this.core?.step(message);
    this.process();
  }

  trackProposal(index: number, term: number, operation: number): void {
    this.proposals.set(index, { term, operation });
  }

  trackRead(context: string, operation: number, key: string): void {
    this.reads.set(context, operation);
    this.readKeys.set(operation, key);
  }

  forget(operation: number): void {
    for (const [index, proposal] of this.proposals)
      if (proposal.operation === operation) this.proposals.delete(index);
    for (const [context, op] of this.reads) if (op === operation) this.reads.delete(context);
    this.readsReady = this.readsReady.filter((r) => r.operation !== operation);
    this.heldCalls = this.heldCalls.filter((held) => held.operation !== operation);
    this.readKeys.delete(operation);
  }

  /** Runs Ready cycles until the core has nothing more to hand out (or a leader's write is in flight). */
  process(): void {
    if (this.pausedUntil !== null) return;
    let core = this.core;
    // Called after every step, tick and client call: reads the core answered from its lease in
    // them are checked against the leaders elected so far and the members' votes now.
    if (core !== null && core.readsFromLease > this.leaseReadsChecked) {
      const reads = core.readsFromLease - this.leaseReadsChecked;
      this.leaseReadsChecked = core.readsFromLease;
      this.hooks.leaseReads(this.id, core, reads);
    }
    while (this.writing === null && this.saving === null && core?.hasReady()) {
      const ready = core.ready();
      this.observeRole(core, ready.softState);
      // A leader's messages go out before its write, as RaftNode sends them (Ready.sendBeforePersist).
      if (ready.sendBeforePersist) {
        for (const message of ready.messages) this.hooks.send(message);
        if (this.options.leaderWriteDelay > 0 && (ready.entries.length > 0 || ready.hardState !== null)) {
          this.writing = { ready, doneAt: this.hooks.now() + this.options.leaderWriteDelay };
          return;
        }
      }
      if (!this.complete(core, ready)) return;
      core = this.core;
    }
  }

  /** Finishes a leader's write whose time has come, then goes on with the next Ready. */
  finishWrite(now: number): void {
    const writing = this.writing;
    const core = this.core;
    if (writing === null || core === null || now < writing.doneAt || this.pausedUntil !== null) return;
    this.writing = null;
    if (this.complete(core, writing.ready)) this.process();
  }

  /** Finishes saving the node's own snapshot whose time has come, then goes on with the next Ready. */
  finishSave(now: number): void {
    const saving = this.saving;
    const core = this.core;
    if (saving === null || core === null || now < saving.doneAt || this.pausedUntil !== null) return;
    this.saving = null;
    this.saveSnapshot(core, saving.snapshot);
    this.process();
  }

  /**
   * The rest of a Ready, its messages already sent if it sends first: persist, send, apply,
   * advance. False if the node crashed in it: a crash counted down to this Ready strikes in the
   * window each order leaves (a leader's after its send, before its persist; any other's after
   * its persist, before its send).
   */
  private complete(core: RaftCore, ready: Ready): boolean {
    if (ready.sendBeforePersist && this.crashAfterPersists > 0 && --this.crashAfterPersists === 0) {
      const farewell = this.leaderWindowCrashes++ % 2 === 1 ? core.farewell() : null;
      this.hooks.trace(
        `${this.id} crashed after sending ${ready.messages.length} messages, before persisting ${ready.entries.length} entries${farewell === null ? "" : ` (a failed write: farewell to ${farewell.to})`}`,
      );
      this.hooks.crashed(this.id, this.crash());
      // After what was in flight was lost with the crash: the node flushes it before it ends.
      if (farewell !== null) this.hooks.send(farewell);
      return false;
    }
    // 1. Persist: snapshot, then entries and hard state.
    if (ready.snapshot !== null) {
      const meta = ready.snapshot.meta;
      // A snapshot from the leader: the receiver holds it whole (the Ready hands it without data).
      const snapshot = "data" in ready.snapshot ? ready.snapshot : this.receiver.take(ready.snapshot);
      this.disk.snapshot = snapshot;
      this.disk.offset = { index: meta.index, term: meta.term };
      this.disk.entries = [];
      this.kv.restore(meta.index, snapshot.data);
      this.hooks.checker.onSnapshotInstalled(this.id, meta.index, meta.term);
      this.snapshotsInstalled++;
      this.hooks.trace(
        `${this.id} installed snapshot at ${meta.index} (term ${meta.term}, ${snapshot.data.length} bytes)`,
      );
    }
    const first = ready.entries[0];
    if (first !== undefined) {
      const keep = first.index - this.disk.offset.index - 1;
      if (keep < this.disk.entries.length) this.disk.entries.length = Math.max(0, keep);
      for (const entry of ready.entries) this.disk.entries.push(entry);
    }
    if (ready.hardState !== null) {
      this.disk.hardState = this.options.forgetVote ? { ...ready.hardState, vote: null } : ready.hardState;
    }
    this.hooks.checker.onPersist(this.id, this.disk, first?.index ?? Infinity, this.disk.hardState.commit);
    if (!ready.sendBeforePersist) {
      if (this.crashAfterPersists > 0 && --this.crashAfterPersists === 0) {
        this.hooks.trace(
          `${this.id} crashed after persisting, before sending ${ready.messages.length} messages`,
        );
        this.hooks.crashed(this.id, this.crash());
        return false;
      }
      // 2. Send.
      for (const message of ready.messages) this.hooks.send(message);
    }

    // 3. Apply.
    for (const entry of ready.committedEntries) {
      if (entry.index <= this.kv.applied) continue;
      this.hooks.checker.onApply(this.id, entry, this.disk.hardState.term);
      let result: boolean | null = null;
      if (entry.type === "normal") result = this.kv.apply(entry.index, entry.data);
      else this.kv.skip(entry.index);
      const proposal = this.proposals.get(entry.index);
      if (proposal !== undefined) {
        this.proposals.delete(entry.index);
        this.hooks.writeDone(proposal.operation, proposal.term === entry.term ? result : "failed");
      }
      if (entry.type === "config") this.hooks.membershipApplied(this.id, entry);
    }
    for (const readState of ready.readStates) {
      const operation = this.reads.get(readState.context);
      if (operation === undefined) continue;
      this.reads.delete(readState.context);
      this.readsReady.push({ index: readState.index, operation, key: this.readKeys.get(operation) ?? "" });
    }

    // 4. Advance.
    core.advance();
    const { commit, term } = core.hardState();
    this.hooks.checker.onLiveCommit(this.id, commit);
    const newlyCommitted = this.hooks.checker.onCommitted(
      this.id,
      this.disk,
      this.durableCommit(core, commit),
      term,
    );
    if (newlyCommitted.from <= newlyCommitted.to && core.softState().role === "leader") {
      this.hooks.leaderCommitted(this.id, core, newlyCommitted.from, newlyCommitted.to);
    }
    this.serveReads();
    this.maybeSnapshot(core);
    this.observeRole(core, core.softState());
    return true;
  }

  /**
   * The commit index as far as the disk holds the core's own entries. A leader's write still in
   * flight when a newer leader's append replaced its entry (a leader resuming from a pause, its
   * clients' calls taken before its messages) lands the replaced entry on the disk after the core
   * took the new one and its commit index; the core does not count the old one stable (stableTo
   * checks the term) and writes the new one in its next Ready. Until then the commit index covers
   * an entry the disk does not hold yet, and the checker must not take the old one as committed.
   */
  private durableCommit(core: RaftCore, commit: number): number {
    const { offset, entries } = this.disk;
    const last = Math.min(commit, offset.index + entries.length);
    for (let index = Math.max(this.durableCommitChecked, offset.index) + 1; index <= last; index++) {
      const coreTerm = core.termAt(index);
      if (coreTerm !== undefined && coreTerm !== entries[index - offset.index - 1]?.term) {
        this.durableCommitChecked = index - 1;
        return index - 1;
      }
    }
    this.durableCommitChecked = Math.max(this.durableCommitChecked, last);
    return commit;
  }

  private serveReads(): void {
    if (this.readsReady.length === 0) return;
    const waiting: typeof this.readsReady = [];
    for (const read of this.readsReady) {
      if (read.index <= this.kv.applied) {
        this.readKeys.delete(read.operation);
        this.hooks.readDone(read.operation, this.kv.get(read.key));
      } else {
        waiting.push(read);
      }
    }
    this.readsReady = waiting;
  }

  private maybeSnapshot(core: RaftCore): void {
    if (this.saving !== null) return; // One at a time, as RaftNode takes them.
    const snapshotIndex = this.disk.snapshot?.meta.index ?? 0;
    if (this.kv.applied - snapshotIndex < this.options.snapshotEveryEntries) return;
    // As RaftNode does (with its default bound): none while a snapshot is sent to a follower.
    const sending = core.snapshotInTransfer();
    if (sending !== null && this.kv.applied - sending < 10 * this.options.snapshotEveryEntries) return;
    const meta = core.snapshotMetaAtApplied();
    if (meta.index !== this.kv.applied) return;
    const snapshot: Snapshot = { meta, data: this.kv.snapshot() };
    if (this.options.snapshotSaveDelay > 0) {
      this.saving = { snapshot, doneAt: this.hooks.now() + this.options.snapshotSaveDelay };
      return;
    }
    this.saveSnapshot(core, snapshot);
  }

  /**
   * Records the snapshot on the disk and compacts as RaftNode does: the disk no further than the
   * snapshot just saved (the core may have taken a leader's meanwhile, which the next Ready
   * installs). Compacted past its snapshot, a log store refuses (checkCompactable) and the node stops.
   */
  private saveSnapshot(core: RaftCore, snapshot: Snapshot): void {
    const { meta } = snapshot;
    this.disk.snapshot = snapshot;
    // As the log stores do: a snapshot holds only committed entries, and the stored commit index
    // (written only beside other writes) may lag it.
    if (this.disk.hardState.commit < meta.index)
      this.disk.hardState = { ...this.disk.hardState, commit: meta.index };
    const offset = core.compact(snapshot, meta.index - this.options.retainEntries);
    if (offset.index <= meta.index) this.compactDisk(offset);
    this.hooks.trace(
      `${this.id} took snapshot at ${meta.index}, log now from ${this.disk.offset.index + 1} (core: ${offset.index + 1})`,
    );
  }

  /** Drops the disk's entries through `offset` as a log store does: never past its snapshot. */
  private compactDisk(offset: LogOffset): void {
    const { disk } = this;
    let kept: Entry[] | null;
    try {
      kept = compactedEntriesOf(disk.offset, disk.entries, disk.snapshot?.meta.index ?? 0, offset);
    } catch (error) {
      if (!(error instanceof LogStoreError)) throw error;
      // A real node stops here (a refused compaction is fatal): as broken as an invariant.
      throw new SafetyViolation("invariant", `${this.id}'s disk refused a compaction: ${error.message}`);
    }
    if (kept === null) return;
    disk.entries = kept;
    disk.offset = offset;
  }

  private observeRole(core: RaftCore, current: SoftState): void {
    const previous = this.softState;
    if (
      previous.role === current.role &&
      previous.leader === current.leader &&
      previous.term === current.term
    )
      return;
    this.softState = current;
    this.hooks.roleChanged(this.id, previous, current, core);
  }
}
