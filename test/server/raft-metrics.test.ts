// The node's log store and transport are wrapped for their metrics (server/raft-metrics.ts). The
// wrappers must hand every operation through: when the store's dropped stageSnapshot, every
// snapshot file of a running node was written inside the Raft loop (no heartbeats meanwhile)
// instead of beside it.

import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, describe, expect, it } from "vitest";
import type { Message, Snapshot } from "../../raft/core/index.js";
import { InProcessNetwork } from "../../raft/node/index.js";
import { RaftMetrics } from "../../server/raft-metrics.js";
import { SegmentLogStore } from "../../storage/raft-log/segment-log-store.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-raft-metrics-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("RaftMetrics.instrumentTransport", () => {
  it("hands every message through both ways and counts them by direction and type", async () => {
    const network = new InProcessNetwork();
    const registry = new Registry();
    const metrics = new RaftMetrics(registry, () => {
      throw new Error("no Raft node in this test");
    });
    const n1 = metrics.instrumentTransport(network.connect("n1"));
    const n2 = network.connect("n2");
    const atN1: Message[] = [];
    const atN2: Message[] = [];
    n1.listen((message) => atN1.push(message));
    n2.listen((message) => atN2.push(message));
    const heartbeat = (readRound: number): Message => ({
      type: "heartbeat",
      from: "n1",
      to: "n2",
      term: 2,
      commit: 5,
      readRound,
      transfersAbandoned: 0,
    });
    n1.send([heartbeat(1), heartbeat(2)]);
    n2.send([
      { type: "heartbeatResponse", from: "n2", to: "n1", term: 2, readRound: 2, transfersAbandoned: 0 },
    ]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(atN2).toEqual([heartbeat(1), heartbeat(2)]);
    expect(atN1).toEqual([
      { type: "heartbeatResponse", from: "n2", to: "n1", term: 2, readRound: 2, transfersAbandoned: 0 },
    ]);
    const counted = await registry.getSingleMetricAsString("strongroom_raft_messages_total");
    expect(counted).toContain('strongroom_raft_messages_total{direction="sent",type="heartbeat"} 2');
    expect(counted).toContain(
      'strongroom_raft_messages_total{direction="received",type="heartbeatResponse"} 1',
    );
    expect(counted).not.toContain('direction="sent",type="heartbeatResponse"');
    await n1.close();
    n1.send([heartbeat(3)]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(atN2).toHaveLength(2);
  });
});

describe("RaftMetrics.instrument", () => {
  it("stages a snapshot file through the wrapper, records it on save without writing it again, and reports its size", async () => {
    const directory = join(root, "staged");
    const store = await SegmentLogStore.open(directory);
    const registry = new Registry();
    const metrics = new RaftMetrics(registry, () => {
      throw new Error("no Raft node in this test");
    });
    const wrapped = metrics.instrument(store);
    const entries = [1, 2, 3].map((index) => ({
      index,
      term: 1,
      type: "normal" as const,
      data: Uint8Array.of(index),
    }));
    await wrapped.append(entries, { term: 1, vote: "n1", commit: 3 });
    const snapshot: Snapshot = {
      meta: { index: 3, term: 1, membership: { voters: ["n1"], learners: [] } },
      data: new Uint8Array(randomBytes(100_000)),
    };

    const stored = await wrapped.stageSnapshot(snapshot.meta, [
      snapshot.data.subarray(0, 40_000),
      snapshot.data.subarray(40_000),
    ]);
    expect(stored).toEqual({ meta: snapshot.meta, totalBytes: 100_000 });
    const file = join(directory, "snapshots", "00000000000000000003-00000000000000000001.snap");
    expect(readdirSync(join(directory, "snapshots"))).toEqual([
      "00000000000000000003-00000000000000000001.snap",
    ]);
    const staged = statSync(file);
    await wrapped.saveSnapshot(stored);
    expect(statSync(file).ino).toBe(staged.ino);
    expect(statSync(file).mtimeMs).toBe(staged.mtimeMs);
    expect(await registry.getSingleMetricAsString("strongroom_raft_snapshot_bytes")).toContain(
      "strongroom_raft_snapshot_bytes 100000",
    );
    // The saved snapshot is read back through the wrapper, a chunk at a time, from the file.
    expect([...wrapped.readSnapshotChunk(snapshot.meta, 99_990, 10)]).toEqual([
      ...snapshot.data.subarray(99_990),
    ]);
    const appends = await registry.getSingleMetricAsString("strongroom_raft_log_append_seconds");
    expect(appends).toContain("strongroom_raft_log_append_seconds_count 1");
    await wrapped.close();

    const reopened = await SegmentLogStore.open(directory);
    expect((await reopened.load()).snapshot?.meta.index).toBe(3);
    await reopened.close();
  });

  it("hands a leader's snapshot through to the store's file as it arrives, and reports its size once installed", async () => {
    const directory = join(root, "received");
    const store = await SegmentLogStore.open(directory);
    const registry = new Registry();
    const metrics = new RaftMetrics(registry, () => {
      throw new Error("no Raft node in this test");
    });
    const wrapped = metrics.instrument(store);
    await wrapped.append([{ index: 1, term: 1, type: "normal", data: Uint8Array.of(1) }], {
      term: 1,
      vote: null,
      commit: 1,
    });
    const sent: Snapshot = {
      meta: { index: 9, term: 2, membership: { voters: ["n1"], learners: [] } },
      data: new Uint8Array(randomBytes(70_000)),
    };
    wrapped.receiveSnapshotChunk(sent.meta, 70_000, 0, sent.data.subarray(0, 50_000));
    wrapped.receiveSnapshotChunk(sent.meta, 70_000, 50_000, sent.data.subarray(50_000));
    // In the store's file already, before the install: read back through the wrapper.
    expect(Buffer.from(wrapped.readSnapshotChunk(sent.meta, 0, 70_000)).equals(Buffer.from(sent.data))).toBe(
      true,
    );
    await wrapped.installSnapshot({ meta: sent.meta, totalBytes: 70_000 });
    expect(readdirSync(join(directory, "snapshots"))).toEqual([
      "00000000000000000009-00000000000000000002.snap",
    ]);
    expect(await registry.getSingleMetricAsString("strongroom_raft_snapshot_bytes")).toContain(
      "strongroom_raft_snapshot_bytes 70000",
    );
    await wrapped.close();
  });
});
