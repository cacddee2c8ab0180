// Linearizable reads by ReadIndex (dissertation section 6.4): a read is answered with the commit
// index only after a heartbeat round confirms the leader still leads, and only once the leader
// has committed an entry of its own term; followers read through the leader.

import { describe, expect, it } from "vitest";
import { ScenarioCluster } from "./scenario-cluster.js";

/** Ticks n1 and n2 (n3 is cut off) until one of them leads. */
function electAmong(cluster: ScenarioCluster, ids: string[]): string {
  for (let i = 0; i < 60; i++) {
    const leader = cluster.leaders().find((id) => ids.includes(id));
    if (leader !== undefined) return leader;
    for (const id of ids) cluster.tick(id);
    cluster.stabilize();
  }
  throw new Error(`no leader among ${ids.join(",")}`);
}

describe("ReadIndex", () => {
  it("a read on the leader is confirmed by a heartbeat quorum at the commit index of the call", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    const written = cluster.propose("n1", "x");
    cluster.stabilize();
    cluster.readIndex("n1", "read-1");
    expect(cluster.node("n1").readStates).toEqual([]);
    const heartbeats = cluster.queued().filter((m) => m.type === "heartbeat");
    expect(heartbeats.map((m) => m.to).sort()).toEqual(["n2", "n3"]);
    cluster.stabilize();
    expect(cluster.node("n1").readStates).toEqual([{ index: written.index, context: "read-1" }]);
  });

  it("waits until the new leader has committed an entry of its own term", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.campaign("n1");
    // pre-vote, pre-vote answers, vote, vote answers: n1 is leader, its no-op not yet replicated.
    for (let i = 0; i < 4; i++) cluster.deliverQueued();
    expect(cluster.core("n1").softState().role).toBe("leader");
    const noop = cluster.core("n1").status().lastIndex;
    expect(cluster.core("n1").hardState().commit).toBeLessThan(noop);
    cluster.readIndex("n1", "early");
    expect(cluster.queued().some((m) => m.type === "heartbeat" && m.readRound > 0)).toBe(false);
    cluster.stabilize();
    expect(cluster.node("n1").readStates).toEqual([{ index: noop, context: "early" }]);
  });

  it("a deposed leader in a minority never confirms a read, so it cannot serve stale data", () => {
    const cluster = ScenarioCluster.create(3, { config: { checkQuorum: false } });
    cluster.elect("n3");
    cluster.isolate("n3");
    const leader = electAmong(cluster, ["n1", "n2"]);
    cluster.propose(leader, "new");
    cluster.stabilize();
    cluster.readIndex("n3", "stale?");
    for (let i = 0; i < 5; i++) {
      cluster.tick("n3");
      cluster.stabilize();
    }
    expect(cluster.core("n3").softState().role).toBe("leader");
    expect(cluster.node("n3").readStates).toEqual([]);
  });

  it("with the rule broken (injected bug), the deposed leader answers the read at its stale commit index", () => {
    const cluster = ScenarioCluster.create(3, {
      config: { checkQuorum: false, injectedBugs: new Set(["readWithoutQuorum"]) },
    });
    cluster.elect("n3");
    const staleCommit = cluster.core("n3").hardState().commit;
    cluster.isolate("n3");
    const leader = electAmong(cluster, ["n1", "n2"]);
    const fresh = cluster.propose(leader, "new");
    cluster.stabilize();
    cluster.readIndex("n3", "stale!");
    expect(cluster.node("n3").readStates).toEqual([{ index: staleCommit, context: "stale!" }]);
    expect(staleCommit).toBeLessThan(fresh.index);
  });

  it("a follower's read goes through the leader and is confirmed at the leader's commit index", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    const written = cluster.propose("n1", "x");
    cluster.stabilize();
    cluster.readIndex("n2", "follower-read");
    expect(cluster.queued()).toContainEqual(
      expect.objectContaining({ type: "readIndex", from: "n2", to: "n1", context: "follower-read" }),
    );
    cluster.stabilize();
    expect(cluster.node("n2").readStates).toEqual([{ index: written.index, context: "follower-read" }]);
  });

  it("reads that arrive together share one heartbeat round", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    const core = cluster.core("n1");
    for (let i = 0; i < 10; i++) core.readIndex(`r${i}`);
    cluster.process("n1");
    expect(cluster.queued().filter((m) => m.type === "heartbeat")).toHaveLength(2);
    cluster.stabilize();
    expect(cluster.node("n1").readStates.map((r) => r.context)).toEqual(
      Array.from({ length: 10 }, (_, i) => `r${i}`),
    );
  });

  it("fails with NOT_LEADER when no leader is known", () => {
    const cluster = ScenarioCluster.create(3);
    expect(() => cluster.readIndex("n1", "r")).toThrowError(
      expect.objectContaining({ code: "NOT_LEADER", leaderHint: null }),
    );
  });

  it("bounds pending reads: past pendingReadsMax, READ_QUEUE_FULL", () => {
    const cluster = ScenarioCluster.create(3, { config: { pendingReadsMax: 2 } });
    cluster.elect("n1");
    cluster.isolate("n1");
    cluster.readIndex("n1", "a");
    cluster.readIndex("n1", "b");
    expect(() => cluster.readIndex("n1", "c")).toThrowError(
      expect.objectContaining({ code: "READ_QUEUE_FULL" }),
    );
  });

  it("rejects an empty or oversized read context with INVALID_ARGUMENT", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    expect(() => cluster.readIndex("n1", "")).toThrowError(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    expect(() => cluster.readIndex("n1", "x".repeat(257))).toThrowError(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
  });
});
