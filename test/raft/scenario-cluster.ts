// A deterministic, synchronous cluster of Raft cores for scenario tests, in the manner of
// etcd-io/raft's test network: messages queue until a test delivers them, links can be cut, nodes
// crash (keeping only what a Ready persisted) and restart. Each node follows the Ready contract.

import {
  bootstrapState,
  type Entry,
  emptyState,
  type HardState,
  type LogOffset,
  type Message,
  type NodeId,
  type PersistentState,
  type PersistentStateWithData,
  type RaftConfigInput,
  RaftCore,
  type ReadState,
  SeededRandom,
  type Snapshot,
  type StableEntryReader,
  type StableSnapshotReader,
} from "../../raft/core/index.js";
import { readSnapshotChunkOf, SnapshotCollector } from "../../raft/node/index.js";
import { readEntriesOf } from "../../raft/node/memory-log-store.js";

interface Disk {
  hardState: HardState;
  snapshot: Snapshot | null;
  offset: LogOffset;
  entries: Entry[];
}

export interface ScenarioNode {
  readonly id: NodeId;
  core: RaftCore | null;
  disk: Disk;
  /** Normal entries with data, in the order this node applied them (text). */
  applied: string[];
  appliedIndex: number;
  readStates: ReadState[];
  snapshotsInstalled: number;
  /** Chunks of a snapshot the core read back from the disk to send. */
  snapshotChunksRead: number;
  /** With `receiveSnapshots`: what the core handed its snapshot receiver, and the receiver. */
  snapshotChunksReceived: number;
  readonly receiver: SnapshotCollector;
}

/**
 * The core reads entries it let go of, and the chunks of the snapshot it sends, back from the
 * node's disk (what Readys persisted); the snapshot reads are counted.
 */
function diskReader(node: ScenarioNode): StableEntryReader & StableSnapshotReader {
  return {
    readEntries: (low, high, bytesMax) =>
      readEntriesOf(node.disk.offset, node.disk.entries, low, high, bytesMax),
    readSnapshotChunk: (meta, offset, length) => {
      node.snapshotChunksRead++;
      return readSnapshotChunkOf(
        [node.disk.snapshot, node.receiver.received],
        meta,
        offset,
        length,
        `${node.id}'s disk`,
      );
    },
  };
}

export type ConfigOverrides = Partial<Omit<RaftConfigInput, "id" | "random">>;

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** The scenario application's state is the list of applied values (an empty snapshot: none). */
function appliedFromSnapshot(snapshot: Snapshot): string[] {
  return snapshot.data.length === 0 ? [] : (JSON.parse(decoder.decode(snapshot.data)) as string[]);
}

export function text(value: string): Uint8Array {
  return encoder.encode(value);
}

export class ScenarioCluster {
  readonly nodes = new Map<NodeId, ScenarioNode>();
  /** Every message sent, in order (tests count and inspect them). */
  readonly sent: Message[] = [];
  private queue: Message[] = [];
  private readonly cut = new Set<string>();
  private seed = 1;
  /** Called on each message before delivery; return false to drop it. */
  filter: (message: Message) => boolean = () => true;
  /** Called for each message delivered (not dropped), e.g. to write a transcript. */
  onDeliver: (message: Message) => void = () => {};
  /** What every core's clock reads (ms): only read leases use it; tests move it. */
  clockMs = 0;

  /** A cluster of `voters` voters (n1..nV) and `learners` learners, bootstrapped, no leader yet. */
  static create(
    voters: number,
    options: {
      learners?: number;
      config?: ConfigOverrides;
      receiveSnapshots?: boolean;
      /** Every core leads with this read lease (setReadLease), on `clockMs`. */
      readLeaseMs?: number;
    } = {},
  ): ScenarioCluster {
    const cluster = new ScenarioCluster(
      options.config ?? {},
      options.receiveSnapshots ?? false,
      options.readLeaseMs ?? 0,
    );
    const voterIds = Array.from({ length: voters }, (_, i) => `n${i + 1}`);
    const learnerIds = Array.from({ length: options.learners ?? 0 }, (_, i) => `n${voters + i + 1}`);
    const state = bootstrapState({ voters: voterIds, learners: learnerIds });
    for (const id of [...voterIds, ...learnerIds]) cluster.addNode(id, state);
    cluster.stabilize();
    return cluster;
  }

  /**
   * `receiveSnapshots`: each core hands the chunks of a snapshot it receives to a receiver (as a
   * node's log store takes them into a file) rather than collecting them itself.
   */
  constructor(
    private readonly config: ConfigOverrides,
    private readonly receiveSnapshots = false,
    private readonly readLeaseMs = 0,
  ) {}

  /** Adds a node with the given persisted state (emptyState() for a node that will join). */
  addNode(id: NodeId, state: PersistentStateWithData = emptyState()): ScenarioNode {
    const node: ScenarioNode = {
      id,
      core: null,
      disk: {
        hardState: state.hardState,
        snapshot: state.snapshot,
        offset: state.offset,
        entries: [...state.entries],
      },
      applied: [],
      appliedIndex: 0,
      readStates: [],
      snapshotsInstalled: 0,
      snapshotChunksRead: 0,
      snapshotChunksReceived: 0,
      receiver: new SnapshotCollector(`${id}'s disk`),
    };
    this.nodes.set(id, node);
    this.restart(id);
    return node;
  }

  node(id: NodeId): ScenarioNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  core(id: NodeId): RaftCore {
    const core = this.node(id).core;
    if (core === null) throw new Error(`${id} is down`);
    return core;
  }

  // --- faults ---------------------------------------------------------------------------------

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  cutLink(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
  }

  /** Splits the cluster: no messages between the groups. */
  partition(...groups: NodeId[][]): void {
    for (const [i, a] of groups.entries()) {
      for (const [j, b] of groups.entries()) {
        if (i === j) continue;
        for (const from of a) for (const to of b) this.cut.add(`${from}>${to}`);
      }
    }
  }

  heal(): void {
    this.cut.clear();
  }

  crash(id: NodeId): void {
    const node = this.node(id);
    node.core = null;
    node.receiver.clear();
    this.queue = this.queue.filter((message) => message.to !== id);
  }

  /** Starts (or restarts) a node from its disk alone. */
  restart(id: NodeId): void {
    const node = this.node(id);
    const state: PersistentState = {
      hardState: node.disk.hardState,
      snapshot: node.disk.snapshot,
      offset: node.disk.offset,
      entries: [...node.disk.entries],
    };
    node.core = new RaftCore(
      {
        electionTicks: 10,
        heartbeatTicks: 1,
        clock: () => this.clockMs,
        ...this.config,
        id,
        random: new SeededRandom(this.seed++),
      },
      state,
      {
        stableEntries: diskReader(node),
        stableSnapshots: diskReader(node),
        snapshotReceiver: this.receiveSnapshots
          ? {
              receiveSnapshotChunk: (meta, totalBytes, offset, chunk) => {
                node.snapshotChunksReceived++;
                node.receiver.receiveSnapshotChunk(meta, totalBytes, offset, chunk);
              },
            }
          : undefined,
      },
    );
    node.core.setReadLease(this.readLeaseMs);
    // The application restores its state from the snapshot; Raft hands out what follows it.
    node.applied =
      node.disk.snapshot === null ? [] : (JSON.parse(decoder.decode(node.disk.snapshot.data)) as string[]);
    node.appliedIndex = node.disk.snapshot?.meta.index ?? 0;
    node.readStates = [];
    this.process(id);
  }

  // --- driving ----------------------------------------------------------------------------------

  tick(id: NodeId, ticks = 1): void {
    for (let i = 0; i < ticks; i++) {
      this.node(id).core?.tick();
      this.process(id);
    }
  }

  tickAll(ticks = 1): void {
    for (let i = 0; i < ticks; i++) for (const id of this.nodes.keys()) this.tick(id);
  }

  campaign(id: NodeId): void {
    this.core(id).campaign();
    this.process(id);
  }

  propose(id: NodeId, value: string): { index: number; term: number } {
    const position = this.core(id).propose(text(value));
    this.process(id);
    return position;
  }

  readIndex(id: NodeId, context: string): void {
    this.core(id).readIndex(context);
    this.process(id);
  }

  /** Delivers queued messages (and those they cause) until none are left. Returns how many were delivered. */
  stabilize(maxMessages = 100_000): number {
    for (const id of this.nodes.keys()) this.process(id);
    let delivered = 0;
    while (this.queue.length > 0) {
      if (++delivered > maxMessages) throw new Error("the cluster did not stabilize");
      const message = this.queue.shift() as Message;
      this.deliver(message);
    }
    return delivered;
  }

  /** Lets time pass: every node ticks once, then all messages are delivered; `rounds` times. */
  settle(rounds = 5): void {
    for (let i = 0; i < rounds; i++) {
      this.tickAll();
      this.stabilize();
    }
  }

  /** Delivers only the messages queued now, not those they cause. */
  deliverQueued(): number {
    const batch = this.queue;
    this.queue = [];
    for (const message of batch) this.deliver(message);
    return batch.length;
  }

  /**
   * Delivers the queued messages `which` selects, in their order, and leaves the others queued
   * (what the delivered ones cause is queued behind them, not delivered): to order a race.
   */
  deliverWhere(which: (message: Message) => boolean): number {
    const chosen = this.queue.filter(which);
    this.queue = this.queue.filter((message) => !which(message));
    for (const message of chosen) this.deliver(message);
    return chosen.length;
  }

  /** Drops every queued message (lost in the network). */
  dropQueued(): Message[] {
    const dropped = this.queue;
    this.queue = [];
    return dropped;
  }

  queued(): readonly Message[] {
    return this.queue;
  }

  /** Elects `id` by campaigning and delivering everything. */
  elect(id: NodeId): void {
    this.campaign(id);
    this.stabilize();
    if (this.core(id).softState().role !== "leader") throw new Error(`${id} did not win the election`);
  }

  leaders(): NodeId[] {
    return [...this.nodes.values()]
      .filter((node) => node.core?.softState().role === "leader")
      .map((node) => node.id);
  }

  private deliver(message: Message): void {
    if (this.cut.has(`${message.from}>${message.to}`) || !this.filter(message)) return;
    const node = this.nodes.get(message.to);
    if (node?.core == null) return;
    this.onDeliver(message);
    node.core.step(message);
    this.process(message.to);
  }

  /** The Ready loop of one node: persist, send, apply, advance. */
  process(id: NodeId): void {
    const node = this.node(id);
    let core = node.core;
    while (core?.hasReady()) {
      const ready = core.ready();
      if (ready.snapshot !== null) {
        // Without its data: the receiver holds it whole.
        node.disk.snapshot = "data" in ready.snapshot ? ready.snapshot : node.receiver.take(ready.snapshot);
        node.disk.offset = { index: ready.snapshot.meta.index, term: ready.snapshot.meta.term };
        node.disk.entries = [];
        node.appliedIndex = ready.snapshot.meta.index;
        node.applied = appliedFromSnapshot(node.disk.snapshot);
        node.snapshotsInstalled++;
      }
      const first = ready.entries[0];
      if (first !== undefined) {
        node.disk.entries.length = Math.max(0, first.index - node.disk.offset.index - 1);
        node.disk.entries.push(...ready.entries);
      }
      if (ready.hardState !== null) node.disk.hardState = ready.hardState;
      for (const message of ready.messages) {
        this.sent.push(message);
        this.queue.push(message);
      }
      for (const entry of ready.committedEntries) {
        if (entry.index <= node.appliedIndex) continue;
        node.appliedIndex = entry.index;
        if (entry.type === "normal" && entry.data.length > 0) node.applied.push(decoder.decode(entry.data));
      }
      node.readStates.push(...ready.readStates);
      core.advance();
      core = node.core;
    }
  }

  /** Takes a snapshot on `id` at its applied index (the data is the list of applied values) and compacts its log. */
  snapshot(id: NodeId, retainEntries = 0): Snapshot {
    const node = this.node(id);
    const core = this.core(id);
    const meta = core.snapshotMetaAtApplied();
    const snapshot: Snapshot = { meta, data: text(JSON.stringify(node.applied)) };
    node.disk.snapshot = snapshot;
    // As the log stores do: the stored commit index is raised to the snapshot's.
    node.disk.hardState = {
      ...node.disk.hardState,
      commit: Math.max(node.disk.hardState.commit, meta.index),
    };
    const offset = core.compact(snapshot, meta.index - retainEntries);
    node.disk.entries = node.disk.entries.slice(offset.index - node.disk.offset.index);
    node.disk.offset = offset;
    return snapshot;
  }
}
