// Snapshots and log compaction (paper section 7): the application hands in a snapshot, the log is
// compacted, and a follower behind the compacted log gets InstallSnapshot, in chunks, resumable.

import { describe, expect, it } from "vitest";
import { emptyState, type Message, RaftCore, SeededRandom } from "../../raft/core/index.js";
import { readSnapshotChunkOf, SnapshotCollector } from "../../raft/node/index.js";
import { ScenarioCluster } from "./scenario-cluster.js";

/**
 * Three nodes, n3 cut off while the leader n1 commits 40 values and takes a snapshot, sent in
 * 64-byte chunks once n3 is back; with `receiveSnapshots`, the nodes' cores hand chunks to a
 * SnapshotReceiver.
 */
function behindSnapshotIn64ByteChunks(receiveSnapshots: boolean) {
  const cluster = ScenarioCluster.create(3, {
    config: { snapshotChunkBytes: 64, snapshotChunksInflightMax: 2 },
    receiveSnapshots,
  });
  cluster.elect("n1");
  cluster.isolate("n3");
  const values = Array.from({ length: 40 }, (_, i) => `value-${i}`);
  for (const value of values) cluster.propose("n1", value);
  cluster.settle(2);
  return { cluster, values, snapshot: cluster.snapshot("n1") };
}

describe("snapshots", () => {
  it("a snapshot brings a far-behind follower back after the leader compacted its log", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.isolate("n3");
    const values = Array.from({ length: 50 }, (_, i) => `v${i}`);
    for (const value of values) cluster.propose("n1", value);
    cluster.settle(2);
    const snapshot = cluster.snapshot("n1");
    expect(cluster.core("n1").status().firstIndex).toBe(snapshot.meta.index + 1);
    cluster.heal();
    cluster.settle();
    expect(cluster.node("n3").snapshotsInstalled).toBe(1);
    expect(cluster.node("n3").applied).toEqual(values);
    expect(cluster.core("n3").status()).toMatchObject({
      commit: snapshot.meta.index,
      firstIndex: snapshot.meta.index + 1,
    });
    // And it keeps replicating normally after that.
    cluster.propose("n1", "after");
    cluster.settle();
    expect(cluster.node("n3").applied).toEqual([...values, "after"]);
  });

  it("sends the snapshot in chunks and, after a lost chunk, resumes where the follower is (not from zero)", () => {
    const cluster = ScenarioCluster.create(3, {
      config: { snapshotChunkBytes: 16, snapshotChunksInflightMax: 2 },
    });
    cluster.elect("n1");
    cluster.isolate("n3");
    for (let i = 0; i < 20; i++) cluster.propose("n1", `value-${i}`);
    cluster.settle(2);
    const snapshot = cluster.snapshot("n1");
    const total = snapshot.data.length;
    expect(total).toBeGreaterThan(100);
    let droppedOffset: number | null = null;
    cluster.filter = (message) => {
      if (message.type === "snapshotChunk" && message.offset === 32 && droppedOffset === null) {
        droppedOffset = message.offset;
        return false;
      }
      return true;
    };
    cluster.heal();
    cluster.settle(20);
    const chunks = cluster.sent.filter((m) => m.type === "snapshotChunk" && m.to === "n3");
    expect(droppedOffset).toBe(32);
    expect(cluster.node("n3").snapshotsInstalled).toBe(1);
    expect(chunks.every((m) => m.type === "snapshotChunk" && m.chunk.length <= 16)).toBe(true);
    // Offset 0 went out once: the transfer resumed from the follower's offset after the loss.
    expect(chunks.filter((m) => m.type === "snapshotChunk" && m.offset === 0)).toHaveLength(1);
    expect(cluster.node("n3").applied).toEqual(cluster.node("n1").applied);
  });

  it("on a link slower than heartbeats, each chunk goes once while the follower confirms them; a transfer idle for an election timeout is resent", () => {
    const { cluster, values, snapshot } = behindSnapshotIn64ByteChunks(false);
    const chunks = Math.ceil(snapshot.data.length / 64);
    // Every chunk takes three ticks (three heartbeats) to arrive, one at a time.
    const onTheWay: Message[] = [];
    cluster.filter = (message) => {
      if (message.type !== "snapshotChunk") return true;
      onTheWay.push(message);
      return false;
    };
    cluster.heal();
    expect(cluster.core("n1").snapshotInTransfer()).toBeNull();
    for (let round = 0; round < 10 * chunks && cluster.node("n3").snapshotsInstalled === 0; round++) {
      cluster.settle(3);
      const chunk = onTheWay.shift();
      if (chunk === undefined) continue;
      if (cluster.node("n3").snapshotsInstalled === 0)
        expect(cluster.core("n1").snapshotInTransfer()).toBe(snapshot.meta.index);
      cluster.core("n3").step(chunk);
      cluster.process("n3");
      cluster.stabilize();
    }
    expect(cluster.node("n3").snapshotsInstalled).toBe(1);
    expect(cluster.node("n3").applied).toEqual(values);
    expect(cluster.core("n1").snapshotInTransfer()).toBeNull();
    const sent = cluster.sent.filter((m) => m.type === "snapshotChunk" && m.to === "n3");
    expect(sent).toHaveLength(chunks);

    // A second transfer whose chunks are all lost: nothing more goes out for an election timeout
    // (10 ticks), then the window again from the follower's offset (0).
    cluster.isolate("n2");
    for (const value of ["w", "x", "y", "z"]) cluster.propose("n1", value);
    cluster.settle(2);
    cluster.crash("n2");
    cluster.restart("n2");
    const newer = cluster.snapshot("n1");
    cluster.filter = (message) => message.type !== "snapshotChunk";
    cluster.heal();
    cluster.settle(1);
    const toN2 = () => cluster.sent.filter((m) => m.type === "snapshotChunk" && m.to === "n2");
    expect(toN2().map((m) => (m.type === "snapshotChunk" ? m.offset : -1))).toEqual([0, 64]);
    cluster.settle(8);
    expect(toN2()).toHaveLength(2);
    cluster.settle(2);
    expect(toN2().map((m) => (m.type === "snapshotChunk" ? m.offset : -1))).toEqual([0, 64, 0, 64]);
    expect(cluster.core("n1").snapshotInTransfer()).toBe(newer.meta.index);
  });

  it("a follower refuses a snapshot larger than snapshotBytesMax", () => {
    const cluster = ScenarioCluster.create(3, { config: { snapshotBytesMax: 32 } });
    cluster.elect("n1");
    cluster.isolate("n3");
    for (let i = 0; i < 20; i++) cluster.propose("n1", `value-${i}`);
    cluster.settle(2);
    cluster.snapshot("n1");
    cluster.heal();
    cluster.settle(5);
    expect(cluster.node("n3").snapshotsInstalled).toBe(0);
    expect(cluster.node("n3").applied).toEqual([]);
  });

  it("a node restarts from its snapshot plus the log after it", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    for (let i = 0; i < 10; i++) cluster.propose("n1", `a${i}`);
    cluster.settle(2);
    cluster.snapshot("n2", 3);
    for (let i = 0; i < 5; i++) cluster.propose("n1", `b${i}`);
    cluster.settle(2);
    const before = [...cluster.node("n2").applied];
    cluster.crash("n2");
    cluster.restart("n2");
    cluster.settle(2);
    expect(cluster.node("n2").applied).toEqual(before);
  });

  it("entries retained behind a snapshot let a slightly lagging follower catch up without one", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    for (let i = 0; i < 10; i++) cluster.propose("n1", `a${i}`);
    cluster.settle(2);
    cluster.isolate("n3");
    for (let i = 0; i < 3; i++) cluster.propose("n1", `b${i}`);
    cluster.settle(2);
    cluster.snapshot("n1", 10);
    cluster.heal();
    cluster.settle();
    expect(cluster.node("n3").snapshotsInstalled).toBe(0);
    expect(cluster.node("n3").applied).toEqual(cluster.node("n1").applied);
  });

  it("an empty snapshot (0 bytes of state) goes as one empty chunk and is installed", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.isolate("n3");
    cluster.propose("n1", "a");
    cluster.settle(2);
    const core = cluster.core("n1");
    const meta = core.snapshotMetaAtApplied();
    const empty = { meta, data: new Uint8Array(0) };
    cluster.node("n1").disk.snapshot = empty;
    core.compact(empty, meta.index);
    cluster.heal();
    cluster.settle(3);
    const chunks = cluster.sent.filter((m) => m.type === "snapshotChunk" && m.to === "n3");
    expect(chunks).toHaveLength(1);
    expect(chunks[0]).toMatchObject({ offset: 0, totalBytes: 0 });
    expect(cluster.node("n3").snapshotsInstalled).toBe(1);
    expect(cluster.core("n3").status()).toMatchObject({ commit: meta.index, applied: meta.index });
  });

  it("a node keeps no copy of a snapshot once it is on disk: the leader reads the chunks it sends back from there", () => {
    const { cluster, values, snapshot } = behindSnapshotIn64ByteChunks(false);
    expect(snapshot.data.length).toBeGreaterThan(4 * 64);
    expect(cluster.core("n1").status().snapshotBytesInMemory).toBe(0);
    cluster.heal();
    cluster.settle(10);
    expect(cluster.node("n3").snapshotsInstalled).toBe(1);
    expect(cluster.node("n3").applied).toEqual(values);
    // Every chunk came from the disk, none from memory.
    expect(cluster.node("n1").snapshotChunksRead).toBe(Math.ceil(snapshot.data.length / 64));
    // The follower let go of the snapshot it received once it was installed, and a restart loads none.
    expect(cluster.core("n3").status().snapshotBytesInMemory).toBe(0);
    cluster.crash("n3");
    cluster.restart("n3");
    expect(cluster.core("n3").status().snapshotBytesInMemory).toBe(0);
  });

  it("with a snapshot receiver, a follower hands each chunk on as it arrives, holds none, and gets the snapshot in Ready without its data", () => {
    const { cluster, values, snapshot } = behindSnapshotIn64ByteChunks(true);
    const chunks = Math.ceil(snapshot.data.length / 64);
    // Half the chunks: the reception is under way, and the core holds none of it.
    let delivered = 0;
    cluster.filter = (message) => message.type !== "snapshotChunk" || ++delivered <= chunks / 2;
    cluster.heal();
    cluster.settle(10);
    const follower = cluster.node("n3");
    expect(follower.snapshotChunksReceived).toBe(Math.floor(chunks / 2));
    expect(follower.snapshotsInstalled).toBe(0);
    expect(cluster.core("n3").status().snapshotBytesInMemory).toBe(0);
    // The rest, resumed where it stopped: installed from what the receiver holds.
    cluster.filter = () => true;
    cluster.settle(10);
    expect(follower.snapshotChunksReceived).toBe(chunks);
    expect(follower.snapshotsInstalled).toBe(1);
    expect(follower.applied).toEqual(values);
    expect(follower.disk.snapshot?.data).toEqual(snapshot.data);
    expect(cluster.core("n3").status().snapshotBytesInMemory).toBe(0);

    // One chunk, the whole snapshot: Ready names it (meta and size), the receiver holds the bytes.
    const receiver = new SnapshotCollector("a test receiver");
    const fresh = new RaftCore({ id: "n9", random: new SeededRandom(2) }, emptyState(), {
      stableSnapshots: {
        readSnapshotChunk: (meta, offset, length) =>
          readSnapshotChunkOf([receiver.received], meta, offset, length, "the test receiver"),
      },
      snapshotReceiver: receiver,
    });
    fresh.step({
      type: "snapshotChunk",
      from: "n1",
      to: "n9",
      term: cluster.core("n1").status().term,
      meta: snapshot.meta,
      totalBytes: snapshot.data.length,
      offset: 0,
      chunk: snapshot.data,
    });
    const ready = fresh.ready();
    expect(ready.snapshot).toEqual({ meta: snapshot.meta, totalBytes: snapshot.data.length });
    expect(receiver.received?.data).toEqual(snapshot.data);
    expect(fresh.status().snapshotBytesInMemory).toBe(0);
  });

  it("a core refuses a snapshot receiver without a reader: what it received could not be read back", () => {
    expect(
      () =>
        new RaftCore({ id: "n1", random: new SeededRandom(1) }, emptyState(), {
          snapshotReceiver: new SnapshotCollector("a receiver"),
        }),
    ).toThrow(/a snapshot receiver without a reader/);
  });

  it("without a store to read a snapshot back from, the core keeps its data", () => {
    const data = new TextEncoder().encode("the state at 5");
    const state = {
      hardState: { term: 1, vote: null, commit: 5 },
      snapshot: { meta: { index: 5, term: 1, membership: { voters: ["n1", "n2"], learners: [] } }, data },
      offset: { index: 5, term: 1 },
      entries: [],
    };
    const core = new RaftCore({ id: "n1", random: new SeededRandom(1) }, state);
    expect(core.status().snapshotBytesInMemory).toBe(data.length);
  });
});
