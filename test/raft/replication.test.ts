// Log replication (paper section 5.3 and 5.4): commitment only by counting replicas of the current
// term (Figure 8), stale leaders cannot commit, fast backtracking, batching, pipelining, limits.

import { describe, expect, it } from "vitest";
import {
  type InjectedBug,
  type Message,
  NotLeaderError,
  type PersistentState,
  RaftCore,
  type RaftError,
  SeededRandom,
} from "../../raft/core/index.js";
import { ScenarioCluster, text } from "./scenario-cluster.js";

/** n2's answer, in term 4, that its log matches the leader's through `index`. */
function n2Acknowledges(index: number): Message {
  return {
    type: "appendResponse",
    from: "n2",
    to: "n1",
    term: 4,
    success: true,
    index,
    hintIndex: 0,
    hintTerm: 0,
  };
}

function drain(core: RaftCore): Message[] {
  const messages: Message[] = [];
  while (core.hasReady()) {
    messages.push(...core.ready().messages);
    core.advance();
  }
  return messages;
}

/**
 * Figure 8 of the paper, at the moment it matters. n1 holds an entry x of term 2 at index 4 that
 * never committed; it wins term 4 and appends its own no-op at 5. Then n2 acknowledges index 4 only.
 */
function figure8Leader(bugs: InjectedBug[] = []): RaftCore {
  const x = { index: 4, term: 2, type: "normal" as const, data: text("x") };
  const state: PersistentState = {
    hardState: { term: 3, vote: null, commit: 3 },
    snapshot: null,
    offset: { index: 0, term: 0 },
    entries: [
      { index: 1, term: 1, type: "config", data: text(JSON.stringify({ kind: "addVoter", node: "n1" })) },
      { index: 2, term: 1, type: "config", data: text(JSON.stringify({ kind: "addVoter", node: "n2" })) },
      { index: 3, term: 1, type: "config", data: text(JSON.stringify({ kind: "addVoter", node: "n3" })) },
      x,
    ],
  };
  const core = new RaftCore({ id: "n1", random: new SeededRandom(8), injectedBugs: new Set(bugs) }, state);
  drain(core);
  // Restarted in term 3, it may have heard from a leader just before: it stands only after an
  // election timeout (the promise a read lease stands on).
  core.campaign();
  expect(drain(core)).toEqual([]);
  for (let tick = 0; tick < 10; tick++) core.tick();
  core.campaign();
  drain(core);
  core.step({ type: "preVoteResponse", from: "n2", to: "n1", term: 4, granted: true });
  drain(core);
  core.step({ type: "voteResponse", from: "n2", to: "n1", term: 4, granted: true });
  drain(core);
  expect(core.softState()).toMatchObject({ role: "leader", term: 4 });
  expect(core.termAt(5)).toBe(4);
  core.step(n2Acknowledges(4));
  drain(core);
  return core;
}

describe("log replication", () => {
  it("every node applies committed entries in log order", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    for (const value of ["a", "b", "c"]) cluster.propose("n1", value);
    cluster.stabilize();
    cluster.tickAll();
    cluster.stabilize();
    for (const id of ["n1", "n2", "n3"]) expect(cluster.node(id).applied).toEqual(["a", "b", "c"]);
  });

  it("Figure 8: a leader does not commit an entry of an earlier term by counting its replicas", () => {
    const core = figure8Leader();
    // x is on a majority (n1, n2) but is of term 2; committing it could be undone by a term-3 leader.
    expect(core.hardState().commit).toBe(3);
    core.step(n2Acknowledges(5));
    drain(core);
    // Once the term-4 no-op is on a majority, it commits, and x with it.
    expect(core.hardState().commit).toBe(5);
  });

  it("Figure 8 with the rule broken (injected bug): the old-term entry is committed too early", () => {
    expect(figure8Leader(["commitPreviousTerm"]).hardState().commit).toBe(4);
  });

  it("a stale leader cannot commit: its proposals in a minority are replaced after the partition heals", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.isolate("n1");
    const lost = cluster.propose("n1", "lost");
    cluster.stabilize();
    expect(cluster.core("n1").hardState().commit).toBeLessThan(lost.index);
    for (let i = 0; i < 40 && cluster.leaders().filter((id) => id !== "n1").length === 0; i++) {
      cluster.tick("n2");
      cluster.tick("n3");
      cluster.stabilize();
    }
    const [newLeader] = cluster.leaders().filter((id) => id !== "n1");
    expect(newLeader).toBeDefined();
    cluster.propose(newLeader as string, "kept");
    cluster.stabilize();
    cluster.heal();
    cluster.settle(5);
    for (const id of ["n1", "n2", "n3"]) {
      expect(cluster.node(id).applied).toContain("kept");
      expect(cluster.node(id).applied).not.toContain("lost");
    }
    expect(cluster.core("n1").termAt(lost.index)).not.toBe(lost.term);
  });

  it("fast backtracking repairs a follower with a long divergent log in a few round trips, not one per entry", () => {
    const cluster = ScenarioCluster.create(3);
    // n3 leads term 2 alone and writes 50 entries nobody else will keep.
    cluster.elect("n3");
    cluster.isolate("n3");
    for (let i = 0; i < 50; i++) cluster.propose("n3", `divergent-${i}`);
    cluster.stabilize();
    // n1 or n2 leads term 3 and writes 50 others at the same indexes, then hands over to the
    // other (term 4), whose first guess for n3's log is its own last index.
    for (let i = 0; i < 40 && !cluster.leaders().some((id) => id !== "n3"); i++) {
      cluster.tick("n1");
      cluster.tick("n2");
      cluster.stabilize();
    }
    const first = cluster.leaders().find((id) => id !== "n3") as string;
    const second = first === "n1" ? "n2" : "n1";
    for (let i = 0; i < 50; i++) cluster.propose(first, `kept-${i}`);
    cluster.stabilize();
    cluster.core(first).transferLeadership(second);
    cluster.stabilize();
    expect(cluster.leaders().filter((id) => id !== "n3")).toEqual([second]);
    const sentBefore = cluster.sent.length;
    cluster.heal();
    cluster.settle(5);
    const rejections = cluster.sent
      .slice(sentBefore)
      .filter((m) => m.type === "appendResponse" && m.from === "n3" && m.to === second && !m.success).length;
    // One rejection skips the whole divergent term; without the hint it would take about fifty.
    expect(rejections).toBeGreaterThan(0);
    expect(rejections).toBeLessThanOrEqual(2);
    expect(cluster.node("n3").applied).toEqual(cluster.node(second).applied);
    expect(cluster.node("n3").applied.filter((value) => value.startsWith("divergent"))).toEqual([]);
  });

  it("batching: proposals made between two Readys go to each follower in one append", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    const core = cluster.core("n1");
    for (let i = 0; i < 100; i++) core.propose(text(`v${i}`));
    const sentBefore = cluster.sent.length;
    cluster.process("n1");
    const appends = cluster.sent.slice(sentBefore).filter((m) => m.type === "append" && m.to === "n2");
    expect(appends).toHaveLength(1);
    expect(appends[0]?.type === "append" && appends[0].entries.length).toBe(100);
  });

  it("pipelining: a follower in the replicate state gets appends up to inflightMessagesMax before any answer", () => {
    const cluster = ScenarioCluster.create(3, { config: { inflightMessagesMax: 3, messageBytesMax: 1 } });
    cluster.elect("n1");
    cluster.dropQueued();
    const sentBefore = cluster.sent.length;
    for (let i = 0; i < 10; i++) {
      cluster.core("n1").propose(text(`v${i}`));
      cluster.process("n1");
    }
    const appends = cluster.sent
      .slice(sentBefore)
      .filter((m) => m.type === "append" && m.to === "n2" && m.entries.length > 0);
    expect(appends).toHaveLength(3);
    cluster.stabilize();
    cluster.settle(3);
    expect(cluster.node("n2").applied).toHaveLength(10);
  });

  it("a message carries at most messageBytesMax of entries (but always at least one)", () => {
    const cluster = ScenarioCluster.create(3, { config: { messageBytesMax: 10 } });
    cluster.elect("n1");
    cluster.isolate("n2");
    for (let i = 0; i < 6; i++) cluster.propose("n1", "12345");
    cluster.propose("n1", "a-value-longer-than-ten-bytes");
    cluster.stabilize();
    const sentBefore = cluster.sent.length;
    cluster.heal();
    cluster.settle(5);
    const appends = cluster.sent
      .slice(sentBefore)
      .filter((m) => m.type === "append" && m.to === "n2" && m.entries.length > 0);
    for (const append of appends) {
      if (append.type !== "append") continue;
      const bytes = append.entries.reduce((sum, entry) => sum + entry.data.length, 0);
      expect(append.entries.length === 1 || bytes <= 10).toBe(true);
    }
    expect(cluster.node("n2").applied).toEqual(cluster.node("n1").applied);
  });

  it("refuses proposals past uncommittedBytesMax with UNCOMMITTED_BYTES_EXCEEDED, and takes them again after commit", () => {
    const cluster = ScenarioCluster.create(3, { config: { uncommittedBytesMax: 100, entryBytesMax: 100 } });
    cluster.elect("n1");
    cluster.isolate("n1");
    cluster.propose("n1", "x".repeat(60));
    expect(() => cluster.propose("n1", "y".repeat(60))).toThrowError(
      expect.objectContaining({ code: "UNCOMMITTED_BYTES_EXCEEDED" }),
    );
    cluster.heal();
    cluster.tickAll();
    cluster.stabilize();
    expect(cluster.node("n1").applied).toEqual(["x".repeat(60)]);
    expect(() => cluster.propose("n1", "y".repeat(60))).not.toThrow();
  });

  it("refuses a proposal on a follower with NOT_LEADER and names the leader", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    let caught: unknown;
    try {
      cluster.propose("n2", "v");
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(NotLeaderError);
    expect(caught).toMatchObject({ code: "NOT_LEADER", leaderHint: "n1", message: "not the leader; try n1" });
  });

  it("refuses a proposal larger than entryBytesMax with PROPOSAL_TOO_LARGE", () => {
    const cluster = ScenarioCluster.create(3, { config: { entryBytesMax: 16 } });
    cluster.elect("n1");
    expect(() => cluster.propose("n1", "x".repeat(17))).toThrowError(
      expect.objectContaining({ code: "PROPOSAL_TOO_LARGE" }) as RaftError,
    );
  });

  it("a follower that lost appends catches up through heartbeats and probing", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.filter = (message) => message.to !== "n3";
    for (let i = 0; i < 20; i++) {
      cluster.propose("n1", `v${i}`);
      cluster.stabilize();
    }
    expect(cluster.node("n3").applied).toEqual([]);
    cluster.filter = () => true;
    cluster.settle(5);
    expect(cluster.node("n3").applied).toEqual(cluster.node("n1").applied);
  });

  it("a new commit index goes to the followers in commit-only appends, which they apply and do not answer", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.stabilize();
    const sentBefore = cluster.sent.length;
    cluster.propose("n1", "v");
    cluster.stabilize();
    const sent = cluster.sent.slice(sentBefore);
    const appends = sent.filter((m) => m.type === "append");
    // Each follower: the entry, then the commit index it reached (one Ready commits for both).
    expect(appends.map((m) => (m.type === "append" ? [m.to, m.entries.length, m.commitOnly] : []))).toEqual([
      ["n2", 1, false],
      ["n3", 1, false],
      ["n2", 0, true],
      ["n3", 0, true],
    ]);
    // Only the appends with the entry are answered: two answers, not four.
    expect(sent.filter((m) => m.type === "appendResponse").map((m) => m.from)).toEqual(["n2", "n3"]);
    for (const id of ["n1", "n2", "n3"]) expect(cluster.node(id).applied).toEqual(["v"]);
  });

  it("a follower answers a commit-only append it cannot accept, and the leader repairs it", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.stabilize();
    // n3 loses the append with the entry but not the commit-only one that follows it.
    let lost = 0;
    cluster.filter = (m) => !(m.to === "n3" && m.type === "append" && m.entries.length > 0 && lost++ === 0);
    cluster.propose("n1", "v");
    cluster.stabilize();
    expect(lost).toBeGreaterThan(1);
    const commitOnly = cluster.sent.filter((m) => m.type === "append" && m.to === "n3" && m.commitOnly);
    expect(commitOnly).toHaveLength(1);
    const rejections = cluster.sent.filter(
      (m) => m.type === "appendResponse" && m.from === "n3" && !m.success,
    );
    expect(rejections).toHaveLength(1);
    expect(cluster.node("n3").applied).toEqual(["v"]);
    expect(cluster.core("n1").status().progress.get("n3")?.match).toBe(cluster.core("n1").status().lastIndex);
  });

  it("a leader that lost a follower's answers learns its match from a heartbeat's answer, through an answered append", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.stabilize();
    cluster.filter = (m) => !(m.from === "n3" && m.type === "appendResponse");
    for (let i = 0; i < 3; i++) {
      cluster.propose("n1", `v${i}`);
      cluster.stabilize();
    }
    const leader = cluster.core("n1");
    const last = leader.status().lastIndex;
    expect(cluster.node("n3").applied).toEqual(["v0", "v1", "v2"]);
    expect(leader.status().progress.get("n3")?.match).toBeLessThan(last);
    cluster.filter = () => true;
    const sentBefore = cluster.sent.length;
    cluster.settle(2);
    const repair = cluster.sent
      .slice(sentBefore)
      .filter((m) => m.type === "append" && m.to === "n3" && m.entries.length === 0);
    expect(repair.length).toBeGreaterThan(0);
    expect(repair.every((m) => m.type === "append" && !m.commitOnly)).toBe(true);
    expect(leader.status().progress.get("n3")?.match).toBe(last);
  });

  it("a heartbeat never advances a follower's commit beyond what the leader knows it holds", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    const held = cluster.core("n3").status().lastIndex;
    cluster.filter = (message) => !(message.to === "n3" && message.type === "append");
    for (let i = 0; i < 5; i++) cluster.propose("n1", `v${i}`);
    cluster.stabilize();
    cluster.tickAll(3);
    cluster.stabilize();
    const heartbeats = cluster.sent.filter((m) => m.type === "heartbeat" && m.to === "n3");
    expect(heartbeats.length).toBeGreaterThan(0);
    for (const heartbeat of heartbeats)
      if (heartbeat.type === "heartbeat") expect(heartbeat.commit).toBeLessThanOrEqual(held);
    expect(cluster.core("n3").hardState().commit).toBe(held);
    expect(cluster.core("n1").hardState().commit).toBe(held + 5);
  });
});
