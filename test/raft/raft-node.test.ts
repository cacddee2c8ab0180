// The driver on a real clock: RaftNode instances over MemoryLogStores and an in-process network,
// proposing, reading, failing over, restarting from their stores and catching up by snapshot.

import { afterEach, describe, expect, it } from "vitest";
import type { Entry, Message, NodeId } from "../../raft/core/index.js";
import {
  collectParts,
  InProcessNetwork,
  LogStoreError,
  MemoryLogStore,
  RaftNode,
  type RaftNodeError,
  type RaftNodeOptions,
  type SnapshotToRestore,
  type StateMachine,
  snapshotSize,
  type Transport,
} from "../../raft/node/index.js";
import { snapshotData } from "../support/snapshot-data.js";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A list of applied values, kept in memory (so it restarts empty and is rebuilt from the log). */
class ListMachine implements StateMachine<number> {
  values: string[] = [];
  private applied = 0;
  apply(entry: Entry): number {
    this.applied = entry.index;
    if (entry.type === "normal" && entry.data.length > 0) this.values.push(decoder.decode(entry.data));
    return this.values.length;
  }
  snapshot(): Uint8Array {
    return encoder.encode(JSON.stringify(this.values));
  }
  async restore(snapshot: SnapshotToRestore): Promise<void> {
    this.values = JSON.parse(decoder.decode(await collectParts(snapshot.read()))) as string[];
    this.applied = snapshot.meta.index;
  }
  appliedIndex(): number {
    return this.applied;
  }
}

/**
 * A ListMachine that snapshots the way a large state does: it captures its values at once, and
 * the snapshot is read out (in two parts, the second after the gate opens) only while the test
 * keeps the gate open. The gate starts shut, and can be shut again.
 */
class CapturingMachine extends ListMachine {
  captures = 0;
  /** Read-outs the node took to their end. */
  readOutsDone = 0;
  private openGate: () => void = () => {};
  private gate = new Promise<void>((resolve) => {
    this.openGate = resolve;
  });
  open(): void {
    this.openGate();
  }
  shut(): void {
    this.gate = new Promise((resolve) => {
      this.openGate = resolve;
    });
  }
  async captureSnapshot(): Promise<() => AsyncIterable<Uint8Array>> {
    this.captures++;
    const captured = [...this.values];
    const gate = this.gate;
    const done = () => {
      this.readOutsDone++;
    };
    return async function* () {
      const encoded = encoder.encode(JSON.stringify(captured));
      yield encoded.subarray(0, 1);
      await gate;
      yield encoded.subarray(1);
      done();
    };
  }
}

/** A store that fails its next append once armed: the disk filled up or went away. */
class FailingStore extends MemoryLogStore {
  armed = false;
  override async append(...args: Parameters<MemoryLogStore["append"]>): Promise<void> {
    if (this.armed) throw new Error("disk full");
    return super.append(...args);
  }
}

interface Member {
  node: RaftNode<number>;
  store: MemoryLogStore;
  machine: ListMachine;
}

const running: RaftNode<number>[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((node) => node.stop()));
});

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

type ClusterOptions = Pick<
  RaftNodeOptions<number>,
  | "snapshotEveryEntries"
  | "snapshotLogToStateRatio"
  | "snapshotLogBytesMax"
  | "retainEntries"
  | "snapshotTransferHoldEntries"
  | "raft"
  | "onFatal"
>;

/** A MemoryLogStore that keeps the index and size of every snapshot saved into it. */
class SnapshotRecordingStore extends MemoryLogStore {
  readonly saved: { index: number; bytes: number }[] = [];
  override async saveSnapshot(snapshot: Parameters<MemoryLogStore["saveSnapshot"]>[0]): Promise<void> {
    this.saved.push({
      index: snapshot.meta.index,
      bytes: snapshotSize(snapshot),
    });
    await super.saveSnapshot(snapshot);
  }
}

/**
 * A node's transport whose snapshot chunks take `delayMs` each to arrive, one after another and
 * in order, as on a stream (a large snapshot on a slow link); every other message goes as on the
 * network. One timer at a time: a timer per chunk, each due `delayMs` after the one before, let a
 * loaded machine fire a later chunk's first (timers are due by the loop's cached clock), and a
 * follower whose loop is held cannot ask for the lost chunk again.
 */
/** Chunks go one per `delayMs`, none while `held()`; `resume` sends on after a hold. */
function slowSnapshotChunks(
  transport: Transport,
  delayMs: number,
  sent: Message[],
  held: () => boolean,
): { transport: Transport; resume: () => void } {
  const queue: Message[] = [];
  let timer: NodeJS.Timeout | null = null;
  const sendNext = (): void => {
    timer = null;
    if (held()) return;
    const chunk = queue.shift();
    if (chunk !== undefined) transport.send([chunk]);
    if (queue.length > 0) timer = setTimeout(sendNext, delayMs);
  };
  const resume = () => {
    if (timer === null && queue.length > 0) timer = setTimeout(sendNext, delayMs);
  };
  return {
    transport: {
      ...transport,
      send: (messages) => {
        const others = messages.filter((message) => message.type !== "snapshotChunk");
        transport.send(others);
        for (const chunk of messages.filter((message) => message.type === "snapshotChunk")) {
          sent.push(chunk);
          queue.push(chunk);
        }
        resume();
      },
    },
    resume,
  };
}

class TestCluster {
  readonly network = new InProcessNetwork();
  readonly members = new Map<string, Member>();
  /** Milliseconds each snapshot chunk a node sends takes to arrive (0: as fast as the rest). */
  snapshotChunkDelayMs = 0;
  /** The snapshot chunks sent, while snapshotChunkDelayMs is set. */
  readonly snapshotChunksSent: Message[] = [];
  /** While set, snapshot chunks (with snapshotChunkDelayMs) are queued, not sent. */
  private chunksHeld = false;
  private readonly chunkResumes: (() => void)[] = [];
  constructor(private readonly options: ClusterOptions = {}) {}

  holdSnapshotChunks(): void {
    this.chunksHeld = true;
  }

  releaseSnapshotChunks(): void {
    this.chunksHeld = false;
    for (const resume of this.chunkResumes) resume();
  }

  private slowChunks(id: string): Transport {
    const slow = slowSnapshotChunks(
      this.network.connect(id),
      this.snapshotChunkDelayMs,
      this.snapshotChunksSent,
      () => this.chunksHeld,
    );
    this.chunkResumes.push(slow.resume);
    return slow.transport;
  }

  async start(
    id: string,
    bootstrap: string[] | null,
    store = new MemoryLogStore(),
    machine = new ListMachine(),
  ): Promise<Member> {
    store.reopen();
    const node = await RaftNode.start<number>({
      id,
      logStore: store,
      transport: this.snapshotChunkDelayMs === 0 ? this.network.connect(id) : this.slowChunks(id),
      stateMachine: machine,
      tickMs: 10,
      requestTimeoutMs: 2000,
      ...(bootstrap === null ? {} : { bootstrap: { voters: bootstrap, learners: [] } }),
      ...this.options,
    });
    running.push(node);
    const member = { node, store, machine };
    this.members.set(id, member);
    return member;
  }

  static async create(size: number, options: ClusterOptions = {}): Promise<TestCluster> {
    const cluster = new TestCluster(options);
    const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
    for (const id of ids) await cluster.start(id, ids);
    return cluster;
  }

  member(id: string): Member {
    const member = this.members.get(id);
    if (member === undefined) throw new Error(`no member ${id}`);
    return member;
  }

  async leader(except: string[] = []): Promise<Member> {
    let found: Member | undefined;
    await waitFor("a leader", () => {
      found = [...this.members.values()].find(
        (m) => !m.node.isStopped() && !except.includes(m.node.id) && m.node.status().role === "leader",
      );
      return found !== undefined;
    });
    return found as Member;
  }
}

const bytes = (text: string) => encoder.encode(text);

/**
 * Three nodes whose snapshot chunks take `delayMs` each to arrive, sent 64 bytes at a time, one in
 * flight; each node's state machine from `machine()`. The leader, and a follower stopped (it
 * comes back by a snapshot once the leader has compacted past it).
 */
async function slowSnapshotCluster(
  options: ClusterOptions,
  delayMs: number,
  machine: () => ListMachine = () => new ListMachine(),
): Promise<{ cluster: TestCluster; leader: Member; follower: Member }> {
  const cluster = new TestCluster({
    ...options,
    raft: { snapshotChunkBytes: 64, snapshotChunksInflightMax: 1, ...options.raft },
  });
  cluster.snapshotChunkDelayMs = delayMs;
  const ids = ["n1", "n2", "n3"];
  for (const id of ids) await cluster.start(id, ids, new MemoryLogStore(), machine());
  const leader = await cluster.leader();
  const follower = [...cluster.members.values()].find((m) => m !== leader) as Member;
  await follower.node.stop();
  return { cluster, leader, follower };
}

describe("RaftNode", () => {
  it("elects a leader, and a proposal resolves once applied, then reaches every node", async () => {
    const cluster = await TestCluster.create(3);
    const leader = await cluster.leader();
    const proposed = await leader.node.propose(bytes("hello"));
    expect(proposed.result).toBe(1);
    await waitFor("replication", () =>
      [...cluster.members.values()].every((m) => m.machine.values.join() === "hello"),
    );
  });

  it("reads made in one turn share one read index: a follower asks its leader once, and a later read asks again", async () => {
    const cluster = await TestCluster.create(3);
    const leader = await cluster.leader();
    const first = await leader.node.propose(bytes("x"));
    const follower = [...cluster.members.values()].find((m) => m !== leader) as Member;
    await waitFor("the follower to apply", () => follower.machine.values.length === 1);
    const asked: string[] = [];
    cluster.network.observe = (message) => {
      if (message.type === "readIndex" || message.type === "readIndexResponse") asked.push(message.type);
    };
    const indexes = await Promise.all(Array.from({ length: 20 }, () => follower.node.readIndex()));
    expect(new Set(indexes).size).toBe(1);
    expect(indexes[0]).toBeGreaterThanOrEqual(first.index);
    expect(asked).toEqual(["readIndex", "readIndexResponse"]);
    // A write acknowledged before the next read: that read's own request sees it.
    const second = await leader.node.propose(bytes("y"));
    expect(await follower.node.readIndex()).toBeGreaterThanOrEqual(second.index);
    expect(asked).toEqual(["readIndex", "readIndexResponse", "readIndex", "readIndexResponse"]);
  });

  it("a leader's append leaves before its own write is done, and its followers' writes alone do not answer the proposal", async () => {
    // A store whose writes can be held: the leader's, while the test looks at its followers.
    class HeldStore extends MemoryLogStore {
      private held: Promise<void> | null = null;
      private release: () => void = () => {};
      writesStarted = 0;
      hold(): void {
        this.held = new Promise((resolve) => {
          this.release = resolve;
        });
      }
      letGo(): void {
        this.held = null;
        this.release();
      }
      override async append(...args: Parameters<MemoryLogStore["append"]>): Promise<void> {
        this.writesStarted++;
        if (this.held !== null) await this.held;
        return super.append(...args);
      }
    }
    const cluster = new TestCluster();
    const ids = ["n1", "n2", "n3"];
    for (const id of ids) await cluster.start(id, ids, new HeldStore());
    const leader = await cluster.leader();
    await leader.node.propose(bytes("before"));
    const store = leader.store as HeldStore;
    store.hold();
    const writesBefore = store.writesStarted;
    let answered = false;
    const proposal = leader.node.propose(bytes("held")).then((position) => {
      answered = true;
      return position;
    });
    const followers = ids.filter((id) => id !== leader.node.id).map((id) => cluster.member(id));
    const holds = async (member: Member) =>
      (await member.store.load()).entries.some((entry) => decoder.decode(entry.data) === "held");
    // Both followers wrote the entry while the leader's own write of it has not finished.
    const deadline = Date.now() + 5000;
    while (!(await holds(followers[0] as Member)) || !(await holds(followers[1] as Member))) {
      if (Date.now() > deadline) throw new Error("the followers never wrote the entry");
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(store.writesStarted).toBeGreaterThan(writesBefore);
    expect(await holds(leader)).toBe(false);
    // Committed on a quorum of followers, but the leader applies only after its own write.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(answered).toBe(false);
    store.letGo();
    const position = await proposal;
    expect(position.result).toBe(2);
    expect(await holds(leader)).toBe(true);
  });

  it("proposals made in one turn of the event loop go out in one append, however many awaits led to each", async () => {
    const cluster = await TestCluster.create(3);
    const leader = await cluster.leader();
    await leader.node.propose(bytes("first"));
    // Let the leader's loop go idle (the commit of "first" reaching the followers, and back).
    await new Promise((resolve) => setTimeout(resolve, 50));
    const appended: number[] = [];
    const append = leader.store.append.bind(leader.store);
    leader.store.append = (entries, hardState) => {
      if (entries.length > 0) appended.push(entries.length);
      return append(entries, hardState);
    };
    // The i-th caller proposes after i awaits, as calls do after their authorization and audit.
    const proposed = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        for (let hop = 0; hop < i; hop++) await Promise.resolve();
        return leader.node.propose(bytes(`v${i}`));
      }),
    );
    expect(proposed.map((p) => p.result)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(appended).toEqual([10]);
  });

  it("a follower refuses a proposal with NOT_LEADER naming the leader", async () => {
    const cluster = await TestCluster.create(3);
    const leader = await cluster.leader();
    await leader.node.propose(bytes("x"));
    const follower = [...cluster.members.values()].find((m) => m !== leader) as Member;
    await waitFor("the follower to know the leader", () => follower.node.status().leader === leader.node.id);
    expect(() => follower.node.propose(bytes("y"))).toThrowError(
      expect.objectContaining({ code: "NOT_LEADER", leaderHint: leader.node.id }),
    );
  });

  it("a read after a write, on any node, sees the write (linearizable ReadIndex)", async () => {
    const cluster = await TestCluster.create(3);
    const leader = await cluster.leader();
    for (const member of cluster.members.values()) {
      await waitFor("a known leader", () => member.node.status().leader !== null);
    }
    for (let i = 0; i < 5; i++) {
      await leader.node.propose(bytes(`w${i}`));
      for (const member of cluster.members.values()) {
        await member.node.readIndex();
        expect(member.machine.values.at(-1)).toBe(`w${i}`);
      }
    }
  });

  it("fails over when the leader is cut off, keeps taking writes, and the old leader rejoins as a follower", async () => {
    const cluster = await TestCluster.create(3);
    const old = await cluster.leader();
    await old.node.propose(bytes("before"));
    cluster.network.isolate(old.node.id);
    const stranded = old.node.propose(bytes("stranded")).then(
      () => "applied",
      (error: RaftNodeError) => error.code,
    );
    const next = await cluster.leader([old.node.id]);
    await next.node.propose(bytes("after"));
    cluster.network.heal();
    await waitFor(
      "the old leader to follow",
      () => old.node.status().role === "follower" && old.node.status().leader === next.node.id,
    );
    // Never "applied": answered when the cut-off leader stepped down (outcome unknown), or dropped.
    expect(await stranded).toMatch(/LEADER_CHANGED|PROPOSAL_DROPPED|TIMEOUT/);
    // leadership(), the cheap view a request's routing asks, says what status() says, on every node.
    for (const member of cluster.members.values()) {
      const { role, leader, term } = member.node.status();
      expect(member.node.leadership()).toEqual({ role, leader, term });
    }
    expect(next.node.leadership()).toMatchObject({ role: "leader", leader: next.node.id });
    expect(old.node.leadership()).toMatchObject({ role: "follower", leader: next.node.id });
    await waitFor("the old leader to catch up", () => old.machine.values.join() === "before,after");
  });

  it("a cut-off leader fails its pending read and proposal when it steps down, not at its next campaign", async () => {
    const cluster = await TestCluster.create(3);
    const old = await cluster.leader();
    await old.node.propose(bytes("before"));
    cluster.network.isolate(old.node.id);
    // The role the node has when each is refused: "follower" right after CheckQuorum's step-down;
    // "preCandidate" an election timeout later, when the node first had something to send.
    const roleWhenRefused = (pending: Promise<unknown>) =>
      pending.then(
        () => "answered",
        (error: RaftNodeError) => `${error.code} while ${old.node.leadership().role}`,
      );
    const read = roleWhenRefused(old.node.readIndex());
    const proposal = roleWhenRefused(old.node.propose(bytes("stranded")));
    expect(await read).toBe("PROPOSAL_DROPPED while follower");
    expect(await proposal).toBe("LEADER_CHANGED while follower");
    cluster.network.heal();
  });

  it("a node restarted on its log store replays its log and catches up", async () => {
    const cluster = await TestCluster.create(3);
    const leader = await cluster.leader();
    for (let i = 0; i < 5; i++) await leader.node.propose(bytes(`v${i}`));
    const follower = [...cluster.members.values()].find((m) => m !== leader) as Member;
    await waitFor("replication", () => follower.machine.values.length === 5);
    await follower.node.stop();
    await leader.node.propose(bytes("while-down"));
    const restarted = await cluster.start(follower.node.id, null, follower.store);
    await waitFor(
      "the restarted node to catch up",
      () => restarted.machine.values.join() === "v0,v1,v2,v3,v4,while-down",
    );
  });

  it("a cluster restarted with state machines ahead of the commit index stored applies nothing twice", async () => {
    const cluster = await TestCluster.create(3);
    const leader = await cluster.leader();
    for (let i = 0; i < 5; i++) await leader.node.propose(bytes(`v${i}`));
    const members = [...cluster.members.values()];
    await waitFor("replication", () => members.every((m) => m.machine.values.length === 5));
    // A new commit index alone is not written: the last one learned is only in memory, so every
    // store holds an older one than its state machine has applied.
    for (const member of members) {
      expect((await member.store.load()).hardState.commit).toBeLessThan(member.machine.appliedIndex());
    }
    await Promise.all(members.map((m) => m.node.stop()));
    // Each restarts on its store with its state machine as it was (a durable one keeps what it applied).
    const restarted: Member[] = [];
    for (const member of members) {
      const again = await cluster.start(member.node.id, null, member.store, member.machine);
      // It starts from the commit its state machine reached, not the older one stored.
      expect(again.node.status().commit).toBe(member.machine.appliedIndex());
      restarted.push(again);
    }
    await (await cluster.leader()).node.propose(bytes("after"));
    await waitFor("the write after the restart everywhere", () =>
      restarted.every((m) => m.machine.values.length === 6),
    );
    for (const member of restarted) expect(member.machine.values.join()).toBe("v0,v1,v2,v3,v4,after");
  });

  it("compacts its log into snapshots, and a node that was down catches up by InstallSnapshot", async () => {
    const cluster = await TestCluster.create(3, { snapshotEveryEntries: 5, retainEntries: 0 });
    const leader = await cluster.leader();
    const follower = [...cluster.members.values()].find((m) => m !== leader) as Member;
    await follower.node.stop();
    for (let i = 0; i < 20; i++) await leader.node.propose(bytes(`v${i}`));
    expect(leader.node.status().firstIndex).toBeGreaterThan(10);
    const restarted = await cluster.start(follower.node.id, null, follower.store, new ListMachine());
    await waitFor("catch-up", () => restarted.machine.values.length === 20);
    expect((await restarted.store.load()).snapshot?.meta.index).toBeGreaterThan(10);
  });

  it("with snapshotLogToStateRatio, waits for the entries since a snapshot to add up to its size (across a restart), and for at most 10 × snapshotEveryEntries entries", async () => {
    const cluster = new TestCluster({
      snapshotEveryEntries: 5,
      snapshotLogToStateRatio: 1,
      retainEntries: 0,
    });
    const store = new SnapshotRecordingStore();
    const machine = new ListMachine();
    let member = await cluster.start("n1", ["n1"], store, machine);
    await cluster.leader();
    // Index 1 is the founding config entry, 2 the leader's first entry; values follow from 3.
    const write = async (value: string, times = 1) => {
      for (let i = 0; i < times; i++) await member.node.propose(bytes(value));
    };
    // The first snapshot waits for the entry count alone (there is no snapshot to measure).
    await write("a", 3);
    // Entries 6-10: 1,000 bytes and more since the snapshot at 5 (three values, 13 bytes).
    await write("b".repeat(1000));
    await write("a", 4);
    // Entries 11-30: 20 × 30 bytes, short of the ~1,040-byte snapshot at 10, however many entries.
    await write("c".repeat(30), 20);
    expect(store.saved.map((saved) => saved.index)).toEqual([5, 10]);
    // Restarted with the same (persistent) machine: the 600 bytes applied before still count.
    await member.node.stop();
    member = await cluster.start("n1", null, store, machine);
    await cluster.leader();
    // Entry 31 is the new term's first; 32 brings the bytes since 10 past that snapshot's size.
    const [, second] = store.saved;
    expect(second?.bytes).toBeGreaterThan(600);
    expect(second?.bytes).toBeLessThan(1100);
    await write("d".repeat(500));
    await waitFor("the snapshot at 32", () => store.saved.length === 3);
    // Entries 33-82: 50 small ones, far short of the snapshot's size, but 10 × 5 entries.
    await write("a", 49);
    expect(store.saved.map((saved) => saved.index)).toEqual([5, 10, 32]);
    await write("a");
    await waitFor("the snapshot at 82", () => store.saved.length === 4);
    expect(store.saved.map((saved) => saved.index)).toEqual([5, 10, 32, 82]);
    expect(machine.values.length).toBe(3 + 1 + 4 + 20 + 1 + 50);
  });

  it("with snapshotLogBytesMax, the ratio puts a snapshot off only until the entries since the last one hold that many bytes", async () => {
    const cluster = new TestCluster({
      snapshotEveryEntries: 5,
      snapshotLogToStateRatio: 1000,
      snapshotLogBytesMax: 500,
      retainEntries: 0,
    });
    const store = new SnapshotRecordingStore();
    const member = await cluster.start("n1", ["n1"], store, new ListMachine());
    await cluster.leader();
    const write = async (value: string, times = 1) => {
      for (let i = 0; i < times; i++) await member.node.propose(bytes(value));
    };
    // Values from index 3; the first snapshot waits for the count alone.
    await write("a", 3);
    // Entries 6-10: 5 × 100 bytes, the bound, far short of 1,000 times the snapshot's size.
    await write("b".repeat(100), 5);
    await waitFor("the snapshot at 10", () => store.saved.length === 2);
    // Entries 11-20: 10 bytes in all; 21 brings them to 510.
    await write("a", 10);
    expect(store.saved.map((saved) => saved.index)).toEqual([5, 10]);
    await write("c".repeat(500));
    await waitFor("the snapshot at 21", () => store.saved.length === 3);
    expect(store.saved.map((saved) => saved.index)).toEqual([5, 10, 21]);
  });

  it("a follower catches up while the leader snapshots faster than a snapshot takes to send: the leader takes no new one meanwhile", async () => {
    // A snapshot every 20 entries, about every 200 ms under the load below, and one that takes
    // about a second to send (60 chunks of 64 bytes, 15 ms each): a newer snapshot would restart
    // the transfer, and the compaction after it would drop the entries after the one sent.
    const { cluster, leader, follower } = await slowSnapshotCluster(
      { snapshotEveryEntries: 20, retainEntries: 5 },
      15,
    );
    const value = (i: number) => `value-${String(i).padStart(4, "0")}-${"x".repeat(16)}`;
    let written = 0;
    for (; written < 120; written++) await leader.node.propose(bytes(value(written)));
    // Written on, one every 10 ms, while the follower comes back; bounded in count and time.
    let writing = true;
    const load = (async () => {
      const until = Date.now() + 8000;
      while (writing && written < 800 && Date.now() < until) {
        await leader.node.propose(bytes(value(written++)));
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    const restarted = await cluster.start(follower.node.id, null, follower.store, new ListMachine());
    try {
      // Caught up: it applies the entries after the snapshot it installed, by replication.
      await waitFor(
        "the follower to catch up",
        () =>
          restarted.machine.values.length >= 120 &&
          leader.machine.values.length - restarted.machine.values.length < 10,
        6000,
      );
    } finally {
      writing = false;
      await load;
    }
    await waitFor("the last writes", () => restarted.machine.values.length === written);
    expect(restarted.machine.values).toEqual(Array.from({ length: written }, (_, i) => value(i)));
  });

  it("a snapshot in transfer to a follower that went away holds the leader's next one back only for snapshotTransferHoldEntries", async () => {
    const { cluster, leader, follower } = await slowSnapshotCluster(
      { snapshotEveryEntries: 10, retainEntries: 0, snapshotTransferHoldEntries: 50 },
      15,
    );
    for (let i = 0; i < 60; i++) await leader.node.propose(bytes(`v${i}`));
    await cluster.start(follower.node.id, null, follower.store, new ListMachine());
    await waitFor(
      "the snapshot transfer",
      () => leader.node.status().progress.get(follower.node.id)?.state === "snapshot",
    );
    // Gone mid-transfer: the leader does not hear that it stopped.
    cluster.network.isolate(follower.node.id);
    const compactedAt = leader.node.status().firstIndex;
    const sending = compactedAt - 1;
    const applied = () => leader.node.status().applied;
    while (applied() < sending + 45) await leader.node.propose(bytes("held"));
    expect(leader.node.status().firstIndex).toBe(compactedAt);
    while (applied() < sending + 65) await leader.node.propose(bytes("let go"));
    await waitFor("a newer snapshot", () => leader.node.status().firstIndex > sending + 50);
  });

  it("a snapshot read out while a transfer began is dropped, not saved: the transfer goes on, not restarted", async () => {
    const opened = () => {
      const machine = new CapturingMachine();
      machine.open();
      return machine;
    };
    // The transfer must still be going when the held read-out ends: its chunks are held until
    // then. (Timed alone, at 10 and at 50 ms a chunk, a loaded machine let the transfer finish
    // first, and the newer snapshot was then saved, rightly, and sent too.) An election timeout of
    // a second: a chunk held that long unanswered would be sent again.
    const { cluster, leader, follower } = await slowSnapshotCluster(
      { snapshotEveryEntries: 20, retainEntries: 0, raft: { electionTicks: 100 } },
      10,
      opened,
    );
    const machine = leader.machine as CapturingMachine;
    for (let i = 0; i < 50; i++) await leader.node.propose(bytes(`v${i}`));
    await waitFor("a snapshot", () => leader.node.status().firstIndex > 40);
    const sending = leader.node.status().firstIndex - 1;
    // The next snapshot is captured and held in its read-out while the follower comes back.
    machine.shut();
    const captures = machine.captures;
    while (machine.captures === captures) await leader.node.propose(bytes("more"));
    cluster.holdSnapshotChunks();
    const restarted = await cluster.start(follower.node.id, null, follower.store, new ListMachine());
    await waitFor(
      "the transfer",
      () => leader.node.status().progress.get(follower.node.id)?.state === "snapshot",
    );
    machine.open();
    await waitFor("the read-out's end", () => machine.readOutsDone > 0);
    // A proposal applied after it: the node's loop has looked at the snapshot built, and dropped it.
    await leader.node.propose(bytes("after the read-out"));
    expect(leader.node.status().firstIndex).toBe(sending + 1);
    cluster.releaseSnapshotChunks();
    await waitFor(
      "the follower to catch up",
      () => restarted.machine.values.length === leader.machine.values.length,
    );
    // One transfer of the snapshot at `sending`, every chunk once, to its end before any other
    // snapshot's chunk. (Once it is done the leader snapshots again and, keeping no entries, may
    // compact entries the follower has not acknowledged yet; a second transfer then is right.)
    const chunks = cluster.snapshotChunksSent.flatMap((m) =>
      m.to === follower.node.id && m.type === "snapshotChunk" ? [m] : [],
    );
    const last = chunks.findIndex((m) => m.offset + m.chunk.length === m.totalBytes);
    expect(last).toBeGreaterThanOrEqual(0);
    expect(new Set(chunks.slice(0, last + 1).map((m) => m.meta.index))).toEqual(new Set([sending]));
    expect(chunks.filter((m) => m.meta.index === sending && m.offset === 0)).toHaveLength(1);
    // And the leader snapshots again once it is done.
    for (let i = 0; i < 25; i++) await leader.node.propose(bytes(`after${i}`));
    await waitFor("a newer snapshot", () => leader.node.status().firstIndex > sending + 1);
  });

  it("a follower whose own snapshot is being saved when the leader's arrives installs the leader's and goes on", async () => {
    // The follower's store holds its snapshot saves until let go (a slow disk under its own).
    class HeldSaveStore extends MemoryLogStore {
      saving = 0;
      private holding = false;
      private letGoNow: () => void = () => {};
      hold(): void {
        this.holding = true;
      }
      letGo(): void {
        this.holding = false;
        this.letGoNow();
      }
      override async saveSnapshot(snapshot: Parameters<MemoryLogStore["saveSnapshot"]>[0]): Promise<void> {
        if (this.holding) {
          this.saving++;
          await new Promise<void>((resolve) => {
            this.letGoNow = resolve;
          });
        }
        await super.saveSnapshot(snapshot);
      }
    }
    // The leader's snapshot goes 64 bytes a chunk, all chunks sent at once, each 5 ms after the last.
    const fatal: string[] = [];
    const cluster = new TestCluster({
      snapshotEveryEntries: 5,
      retainEntries: 0,
      raft: { snapshotChunkBytes: 64, snapshotChunksInflightMax: 10_000 },
      onFatal: (error) => fatal.push(error.message),
    });
    cluster.snapshotChunkDelayMs = 5;
    const ids = ["n1", "n2", "n3"];
    for (const id of ids) {
      const machine = new CapturingMachine();
      machine.open();
      await cluster.start(id, ids, new HeldSaveStore(), machine);
    }
    const leader = await cluster.leader();
    const follower = [...cluster.members.values()].find((m) => m !== leader) as Member;
    const machine = follower.machine as CapturingMachine;
    const store = follower.store as HeldSaveStore;
    const value = (i: number) => `v${i}:${"x".repeat(60)}`;
    for (let i = 0; i < 6; i++) await leader.node.propose(bytes(value(i)));
    // The follower's next snapshot is captured, and read out only once the leader's is on its way.
    machine.shut();
    const captures = machine.captures;
    let proposed = 6;
    while (machine.captures === captures) await leader.node.propose(bytes(value(proposed++)));
    cluster.network.isolate(follower.node.id);
    const total = proposed + 30;
    while (proposed < total) await leader.node.propose(bytes(value(proposed++)));
    const leaderFirst = leader.node.status().firstIndex;
    expect(leaderFirst).toBeGreaterThan(follower.node.status().lastIndex + 1);
    store.hold();
    cluster.network.heal();
    await waitFor(
      "the leader's snapshot to be on its way",
      () => leader.node.status().progress.get(follower.node.id)?.state === "snapshot",
    );
    machine.open();
    await waitFor("the follower's own snapshot to be saving", () => store.saving === 1);
    await waitFor(
      "the follower to take the leader's snapshot meanwhile",
      () => follower.node.status().firstIndex >= leaderFirst,
    );
    store.letGo();
    await waitFor(
      "the follower to catch up, or to stop",
      () => follower.machine.values.length === total || follower.node.isStopped(),
    );
    expect(fatal).toEqual([]);
    expect(follower.machine.values).toEqual(Array.from({ length: total }, (_, i) => value(i)));
    expect(follower.node.isStopped()).toBe(false);
  });

  it("reads a captured snapshot out off the loop: entries commit meanwhile, the saved one is the capture", async () => {
    const cluster = new TestCluster({ snapshotEveryEntries: 5, retainEntries: 0 });
    const machine = new CapturingMachine();
    const solo = await cluster.start("n1", ["n1"], new MemoryLogStore(), machine);
    await cluster.leader();
    for (let i = 0; i < 6; i++) await solo.node.propose(bytes(`v${i}`));
    expect(machine.captures).toBe(1);
    // The gate is shut: the snapshot is not read out, and the node goes on committing.
    for (let i = 6; i < 20; i++) await solo.node.propose(bytes(`v${i}`));
    expect(machine.values).toHaveLength(20);
    expect((await solo.store.load()).snapshot).toBeNull();
    expect(machine.captures).toBe(1);
    machine.open();
    await waitFor("the snapshot to be saved", () => solo.node.status().firstIndex > 1);
    const stored = (await solo.store.load()).snapshot;
    if (stored === null) throw new Error("no snapshot saved");
    // The capture, at the index it was captured at: not the values applied since.
    const captured = JSON.parse(
      decoder.decode((await snapshotData(solo.store, stored)) ?? new Uint8Array()),
    ) as string[];
    expect(captured).toEqual(machine.values.slice(0, captured.length));
    expect(captured.length).toBeGreaterThan(0);
    expect(captured.length).toBeLessThan(20);
    // Restarted from the store: the snapshot plus the entries after it, each once.
    await solo.node.stop();
    const restarted = await cluster.start("n1", null, solo.store, new ListMachine());
    await waitFor("the replay", () => restarted.machine.values.length === 20);
    expect(restarted.machine.values).toEqual(Array.from({ length: 20 }, (_, i) => `v${i}`));
  });

  it("a new node joins as a learner, receives the data, and is promoted to voter", async () => {
    const cluster = await TestCluster.create(3);
    const leader = await cluster.leader();
    await leader.node.propose(bytes("existing"));
    const joiner = await cluster.start("n4", null);
    await leader.node.proposeMembershipChange({ kind: "addLearner", node: "n4" });
    await waitFor("the learner to catch up", () => joiner.machine.values.join() === "existing");
    await leader.node.proposeMembershipChange({ kind: "addVoter", node: "n4" });
    await waitFor("the promotion to reach the new node", () =>
      joiner.node.status().membership.voters.includes("n4"),
    );
    expect(leader.node.status().membership).toEqual({ voters: ["n1", "n2", "n3", "n4"], learners: [] });
  });

  it("a removed node refuses reads and proposals at once with REMOVED", async () => {
    const cluster = await TestCluster.create(3);
    const leader = await cluster.leader();
    const removed = [...cluster.members.values()].find((member) => member !== leader) as Member;
    expect(removed.node.isRemoved()).toBe(false);
    // A new leader takes no membership change before it has applied its term's first entry.
    await leader.node.propose(bytes("before"));
    await leader.node.proposeMembershipChange({ kind: "removeNode", node: removed.node.id });
    await waitFor("the removal to reach the removed node", () => removed.node.isRemoved());
    for (const call of [() => removed.node.readIndex(), () => removed.node.propose(bytes("x"))]) {
      expect(call).toThrowError(
        expect.objectContaining({
          code: "REMOVED",
          message: `${removed.node.id} was removed from the cluster; ask another member`,
        }),
      );
    }
    // The others go on.
    await leader.node.propose(bytes("after"));
    // Restarted on its store with its state machine as it was, it knows at once that it was
    // removed: the others no longer talk to it, so it could not learn it again.
    await removed.node.stop();
    const again = await cluster.start(removed.node.id, null, removed.store, removed.machine);
    expect(again.node.isRemoved()).toBe(true);
    expect(() => again.node.propose(bytes("y"))).toThrowError(expect.objectContaining({ code: "REMOVED" }));
  });

  it("a node removed while it was stopped learns it from the others when it starts again", async () => {
    const cluster = await TestCluster.create(3);
    const leader = await cluster.leader();
    const removed = [...cluster.members.values()].find((member) => member !== leader) as Member;
    await leader.node.propose(bytes("before"));
    await removed.node.stop();
    await leader.node.proposeMembershipChange({ kind: "removeNode", node: removed.node.id });
    await leader.node.propose(bytes("after"));
    const term = leader.node.status().term;
    // Its log does not hold its removal, and no member sends it anything now: it campaigns, and
    // the first member it reaches tells it.
    const again = await cluster.start(removed.node.id, null, removed.store, removed.machine);
    await waitFor("the restarted node to learn it was removed", () => again.node.isRemoved());
    expect(() => again.node.readIndex()).toThrowError(expect.objectContaining({ code: "REMOVED" }));
    expect(() => again.node.propose(bytes("y"))).toThrowError(expect.objectContaining({ code: "REMOVED" }));
    expect(again.node.status().membership.voters).toContain(again.node.id);
    // The members went on undisturbed, under the same leader and term.
    await leader.node.propose(bytes("later"));
    expect(leader.node.status()).toMatchObject({ role: "leader", term });
  });

  it("stopping a node fails its pending proposals with STOPPED, and later calls too", async () => {
    const cluster = await TestCluster.create(3);
    const leader = await cluster.leader();
    cluster.network.isolate(leader.node.id);
    const outcome = leader.node.propose(bytes("never")).then(
      () => "applied",
      (error: RaftNodeError) => error.code,
    );
    await leader.node.stop();
    expect(await outcome).toBe("STOPPED");
    expect(() => leader.node.propose(bytes("late"))).toThrowError(
      expect.objectContaining({ code: "STOPPED" }),
    );
  });

  it("stops on a failed disk write instead of sending what it could not persist, and fails what was pending", async () => {
    const network = new InProcessNetwork();
    const ids = ["n1"];
    const store = new FailingStore();
    let fatal: Error | null = null;
    let farewell: NodeId | null | undefined;
    const node = await RaftNode.start<number>({
      id: "n1",
      logStore: store,
      transport: network.connect("n1"),
      stateMachine: new ListMachine(),
      tickMs: 10,
      bootstrap: { voters: ids, learners: [] },
      onFatal: (error, farewellTo) => {
        fatal = error;
        farewell = farewellTo;
      },
    });
    running.push(node);
    await waitFor("leadership", () => node.status().role === "leader");
    await node.propose(bytes("kept"));
    store.armed = true;
    const outcome = node.propose(bytes("lost")).then(
      () => "applied",
      (error: RaftNodeError) => error.code,
    );
    expect(await outcome).toBe("STOPPED");
    expect(node.isStopped()).toBe(true);
    expect((fatal as Error | null)?.message).toBe("disk full");
    // A lone voter has nobody to hand over to.
    expect(farewell).toBeNull();
    store.armed = false;
    expect((await store.load()).entries.map((entry) => new TextDecoder().decode(entry.data))).not.toContain(
      "lost",
    );
  });

  it("a leader that stops on a failed disk write has the voter furthest along campaign at once, not an election timeout later", async () => {
    // Election timeouts of 300-600 ms (30 ticks of 10 ms): a follower that waited for one would
    // campaign no sooner than 290 ms after the leader's last heartbeat.
    let fatalAt = 0;
    let farewell: NodeId | null = null;
    const cluster = new TestCluster({
      raft: { electionTicks: 30 },
      onFatal: (_error, farewellTo) => {
        fatalAt = performance.now();
        farewell = farewellTo;
      },
    });
    const ids = ["n1", "n2", "n3"];
    for (const id of ids) await cluster.start(id, ids, new FailingStore());
    const leader = await cluster.leader();
    await leader.node.propose(bytes("kept"));
    (leader.store as FailingStore).armed = true;
    const outcome = leader.node.propose(bytes("lost")).then(
      () => "applied",
      (error: RaftNodeError) => error.code,
    );
    expect(await outcome).toBe("STOPPED");
    const next = await cluster.leader([leader.node.id]);
    const tookMs = performance.now() - fatalAt;
    expect(fatalAt).toBeGreaterThan(0);
    expect(tookMs).toBeLessThan(150);
    // The stopping node says whom it told (what its process waits to have sent), and that voter leads.
    expect(farewell).toBe(next.node.id);
    // The new leader has what was committed and takes writes.
    await next.node.propose(bytes("after"));
    const survivors = [...cluster.members.values()].filter((member) => member !== leader);
    await waitFor("the survivors to apply", () =>
      survivors.every((member) => member.machine.values.includes("after")),
    );
    for (const member of survivors) expect(member.machine.values[0]).toBe("kept");
  });

  it("stops when its log store cannot read back an entry a lagging follower needs, as on a failed write", async () => {
    // Stores whose reads fail once armed: the entry is missing or damaged on disk.
    class UnreadableStore extends MemoryLogStore {
      armed = false;
      override readEntries(...args: Parameters<MemoryLogStore["readEntries"]>) {
        if (this.armed) throw new LogStoreError("entry unreadable");
        return super.readEntries(...args);
      }
    }
    const network = new InProcessNetwork();
    const ids = ["n1", "n2", "n3"];
    const fatal = new Map<string, Error>();
    const nodes = new Map<string, { node: RaftNode<number>; store: UnreadableStore }>();
    for (const id of ids) {
      const store = new UnreadableStore();
      const node = await RaftNode.start<number>({
        id,
        logStore: store,
        transport: network.connect(id),
        stateMachine: new ListMachine(),
        tickMs: 10,
        // Nothing kept in memory for a follower that lags: its entries are read back.
        raft: { followerCatchUpBytesMax: 0 },
        bootstrap: { voters: ids, learners: [] },
        onFatal: (error) => fatal.set(id, error),
      });
      running.push(node);
      nodes.set(id, { node, store });
    }
    let leader = "";
    await waitFor("a leader", () => {
      leader = ids.find((id) => nodes.get(id)?.node.status().role === "leader") ?? "";
      return leader !== "";
    });
    const lagging = ids.find((id) => id !== leader) as string;
    network.isolate(lagging);
    const leaderNode = nodes.get(leader)?.node as RaftNode<number>;
    for (let i = 0; i < 5; i++) await leaderNode.propose(bytes(`while ${lagging} was away ${i}`));
    for (const { store } of nodes.values()) store.armed = true;
    network.heal();
    await waitFor("the leader to stop", () => leaderNode.isStopped());
    expect(fatal.get(leader)?.message).toBe("entry unreadable");
    expect(() => leaderNode.propose(bytes("after"))).toThrowError(
      expect.objectContaining({ code: "STOPPED" }),
    );
  });
});
