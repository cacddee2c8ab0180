// The Raft SLIs of a node as Prometheus metrics: term, commit and applied index, leadership and
// leader changes read from the driver at scrape time; the time each Raft log append takes (fsync
// included) and snapshot sizes measured around the log store, which is where the node waits for
// the disk; and the Raft messages sent and received by type, counted around the transport (how
// many heartbeat rounds and ReadIndex requests the reads cost, how many appends the writes).

import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type {
  Entry,
  HardState,
  LogOffset,
  Message,
  PersistentState,
  Snapshot,
  SnapshotMeta,
  StoredSnapshot,
} from "../raft/core/index.js";
import {
  type LogLoadOptions,
  type LogStore,
  type RaftNode,
  snapshotSize,
  type Transport,
} from "../raft/node/index.js";

export class RaftMetrics {
  private readonly leaderChanges: Counter;
  private readonly appendSeconds: Histogram;
  private readonly snapshotBytes: Gauge;
  private readonly messages: Counter<"direction" | "type">;
  /** The counter's children by type, one map per direction, bound once: a message costs a lookup. */
  private readonly messageCounters = {
    sent: new Map<Message["type"], Counter.Internal>(),
    received: new Map<Message["type"], Counter.Internal>(),
  };

  constructor(registry: Registry, raft: () => RaftNode<unknown>) {
    const gauge = (
      name: string,
      help: string,
      read: (status: ReturnType<RaftNode<unknown>["status"]>) => number,
    ) =>
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read(raft().status()));
        },
      });
    gauge("strongroom_raft_term", "The current Raft term.", (status) => status.term);
    gauge(
      "strongroom_raft_commit_index",
      "The highest log index known to be committed.",
      (status) => status.commit,
    );
    gauge(
      "strongroom_raft_applied_index",
      "The highest log index applied to the state machine.",
      (status) => status.applied,
    );
    gauge(
      "strongroom_raft_log_first_index",
      "The first index the Raft log still holds (older entries are compacted into the snapshot); a follower behind it needs a snapshot.",
      (status) => status.firstIndex,
    );
    gauge(
      "strongroom_raft_log_entries_in_memory",
      "Raft log entries whose data the node holds in memory (not yet applied, or not yet acknowledged by every follower); the rest is read back from disk.",
      (status) => status.entriesInMemory,
    );
    gauge(
      "strongroom_raft_log_entry_bytes_in_memory",
      "The data bytes of the Raft log entries the node holds in memory.",
      (status) => status.entryBytesInMemory,
    );
    gauge(
      "strongroom_raft_snapshot_bytes_in_memory",
      "Bytes of the newest Raft snapshot the node holds in memory: one received and not yet on disk; a snapshot on disk is read back a chunk at a time when a follower needs it.",
      (status) => status.snapshotBytesInMemory,
    );
    gauge("strongroom_raft_is_leader", "1 while this node is the leader.", (status) =>
      status.role === "leader" ? 1 : 0,
    );
    new Counter({
      name: "strongroom_raft_lease_reads_total",
      help: "Linearizable reads this node answered from its read lease as leader (raft.leaseReads), its own and its followers', without a heartbeat round; counted since it started.",
      registers: [registry],
      collect() {
        // The core counts them; a scrape copies its count.
        this.reset();
        this.inc(raft().status().readsFromLease);
      },
    });
    this.leaderChanges = new Counter({
      name: "strongroom_raft_leader_changes_total",
      help: "Times this node saw the leader change (including to none).",
      registers: [registry],
    });
    this.appendSeconds = new Histogram({
      name: "strongroom_raft_log_append_seconds",
      help: "Time to persist one Raft Ready's entries and hard state to the log store, fsync included.",
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    });
    this.snapshotBytes = new Gauge({
      name: "strongroom_raft_snapshot_bytes",
      help: "Size of the last snapshot this node saved or installed.",
      registers: [registry],
    });
    this.messages = new Counter({
      name: "strongroom_raft_messages_total",
      help: "Raft messages this node handed to its transport (sent, including those then dropped) or received from it, by type.",
      labelNames: ["direction", "type"],
      registers: [registry],
    });
  }

  private leader: string | null = null;

  /** Called with every soft state change; counts the ones that change the leader. */
  noteLeader(leader: string | null): void {
    if (leader === this.leader) return;
    this.leader = leader;
    this.leaderChanges.inc();
  }

  /** The transport, its messages counted by direction and type. */
  instrumentTransport(transport: Transport): Transport {
    return {
      send: (messages: readonly Message[]) => {
        for (const message of messages) this.countMessage("sent", message.type);
        transport.send(messages);
      },
      listen: (handler: (message: Message) => void) =>
        transport.listen((message: Message) => {
          this.countMessage("received", message.type);
          handler(message);
        }),
      close: () => transport.close(),
    };
  }

  private countMessage(direction: "sent" | "received", type: Message["type"]): void {
    const counters = this.messageCounters[direction];
    let counter = counters.get(type);
    if (counter === undefined) {
      counter = this.messages.labels({ direction, type });
      counters.set(type, counter);
    }
    counter.inc();
  }

  /** The log store, timed. */
  instrument(store: LogStore): LogStore {
    return {
      load: (options?: LogLoadOptions): Promise<PersistentState> => store.load(options),
      readEntries: (low: number, high: number, bytesMax: number): Entry[] =>
        store.readEntries(low, high, bytesMax),
      readSnapshotChunk: (meta: SnapshotMeta, offset: number, length: number): Uint8Array =>
        store.readSnapshotChunk(meta, offset, length),
      append: async (entries: readonly Entry[], hardState: HardState | null) => {
        const stop = this.appendSeconds.startTimer();
        try {
          await store.append(entries, hardState);
        } finally {
          stop();
        }
      },
      receiveSnapshotChunk: (meta: SnapshotMeta, totalBytes: number, offset: number, chunk: Uint8Array) =>
        store.receiveSnapshotChunk(meta, totalBytes, offset, chunk),
      installSnapshot: async (snapshot: Snapshot | StoredSnapshot) => {
        await store.installSnapshot(snapshot);
        this.snapshotBytes.set(snapshotSize(snapshot));
      },
      stageSnapshot: (meta: SnapshotMeta, parts: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) =>
        store.stageSnapshot(meta, parts),
      saveSnapshot: async (snapshot: Snapshot | StoredSnapshot) => {
        await store.saveSnapshot(snapshot);
        this.snapshotBytes.set(snapshotSize(snapshot));
      },
      compact: (offset: LogOffset) => store.compact(offset),
      close: () => store.close(),
    };
  }
}
