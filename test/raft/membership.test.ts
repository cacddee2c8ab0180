// Learners, one-server-at-a-time membership changes (dissertation section 4.1) and leadership
// transfer (section 3.10).

import { describe, expect, it } from "vitest";
import { bootstrapState, emptyState, RaftCore, SeededRandom } from "../../raft/core/index.js";
import { ScenarioCluster } from "./scenario-cluster.js";

describe("learners", () => {
  it("a learner never campaigns, however long it hears nothing", () => {
    const cluster = ScenarioCluster.create(3, { learners: 1 });
    const term = cluster.core("n4").softState().term;
    cluster.isolate("n4");
    cluster.tick("n4", 200);
    expect(cluster.core("n4").softState()).toEqual({ role: "follower", leader: null, term });
    expect(cluster.sent.filter((m) => m.from === "n4")).toEqual([]);
  });

  it("a learner's vote is never counted", () => {
    const cluster = ScenarioCluster.create(3, { learners: 1, config: { preVote: false } });
    // n1 can reach only the learner n4: its vote must not make n1 leader.
    cluster.partition(["n1", "n4"], ["n2", "n3"]);
    cluster.campaign("n1");
    cluster.stabilize();
    expect(cluster.core("n1").softState().role).toBe("candidate");
    expect(cluster.sent.some((m) => m.type === "vote" && m.to === "n4")).toBe(false);
  });

  it("a learner receives the log, and once promoted it counts toward the quorum", () => {
    const cluster = ScenarioCluster.create(3, { learners: 1 });
    cluster.elect("n1");
    cluster.propose("n1", "a");
    cluster.settle();
    expect(cluster.node("n4").applied).toEqual(["a"]);
    expect(cluster.core("n1").status().membership).toEqual({ voters: ["n1", "n2", "n3"], learners: ["n4"] });
    cluster.core("n1").proposeMembershipChange({ kind: "addVoter", node: "n4" });
    cluster.settle();
    expect(cluster.core("n4").status().membership).toEqual({
      voters: ["n1", "n2", "n3", "n4"],
      learners: [],
    });
    // Four voters: with n2 and n3 down, n1 and n4 are no quorum.
    cluster.isolate("n2");
    cluster.isolate("n3");
    const stuck = cluster.propose("n1", "needs-three");
    cluster.settle();
    expect(cluster.core("n1").hardState().commit).toBeLessThan(stuck.index);
  });
});

describe("membership changes", () => {
  it("a new, empty node catches up from the leader as a learner, then becomes a voter", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    for (const value of ["a", "b"]) cluster.propose("n1", value);
    cluster.stabilize();
    cluster.addNode("n4", emptyState());
    cluster.core("n1").proposeMembershipChange({ kind: "addLearner", node: "n4" });
    cluster.settle();
    expect(cluster.node("n4").applied).toEqual(["a", "b"]);
    cluster.core("n1").proposeMembershipChange({ kind: "addVoter", node: "n4" });
    cluster.settle();
    for (const id of ["n1", "n2", "n3", "n4"]) {
      expect(cluster.core(id).status().membership.voters).toEqual(["n1", "n2", "n3", "n4"]);
    }
  });

  it("allows one membership change at a time: a second one waits until the first is applied", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.core("n1").proposeMembershipChange({ kind: "addLearner", node: "n4" });
    expect(() => cluster.core("n1").proposeMembershipChange({ kind: "addLearner", node: "n5" })).toThrowError(
      expect.objectContaining({ code: "MEMBERSHIP_CHANGE_PENDING" }),
    );
    cluster.settle();
    expect(() =>
      cluster.core("n1").proposeMembershipChange({ kind: "addLearner", node: "n5" }),
    ).not.toThrow();
  });

  it("refuses changes that make no sense with INVALID_MEMBERSHIP_CHANGE", () => {
    const cluster = ScenarioCluster.create(1);
    cluster.elect("n1");
    cluster.settle(1);
    const core = cluster.core("n1");
    expect(() => core.proposeMembershipChange({ kind: "addVoter", node: "n1" })).toThrowError(
      /already a voter/,
    );
    expect(() => core.proposeMembershipChange({ kind: "removeNode", node: "n9" })).toThrowError(
      /not a member/,
    );
    expect(() => core.proposeMembershipChange({ kind: "removeNode", node: "n1" })).toThrowError(/last voter/);
    expect(() => core.proposeMembershipChange({ kind: "addLearner", node: "" })).toThrowError(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
  });

  it("a leader that removes itself steps down once the change applies, and the others elect a leader", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.core("n1").proposeMembershipChange({ kind: "removeNode", node: "n1" });
    cluster.stabilize();
    expect(cluster.core("n1").softState().role).toBe("follower");
    cluster.crash("n1");
    for (let i = 0; i < 60 && cluster.leaders().length === 0; i++) cluster.settle(1);
    const [leader] = cluster.leaders();
    expect(["n2", "n3"]).toContain(leader);
    expect(cluster.core(leader as string).status().membership.voters).toEqual(["n2", "n3"]);
  });

  it("a removed follower applies its own removal (the node layer then refuses its calls)", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.core("n1").proposeMembershipChange({ kind: "removeNode", node: "n3" });
    cluster.stabilize();
    expect(cluster.core("n1").status().membership.voters).toEqual(["n1", "n2"]);
    // The commit reaches n3 in the appends sent with it, before the leader forgets n3.
    expect(cluster.core("n3").status().membership).toEqual({
      voters: ["n1", "n2"],
      learners: [],
      removed: ["n3"],
    });
    expect(cluster.core("n3").status().removed).toBe(true);
    expect(cluster.core("n3").status().applied).toBe(cluster.core("n1").status().applied);
  });

  it("a node removed while it was cut off learns it from the first member it contacts, and disturbs no one", () => {
    // Without pre-votes, the removed node's elections while cut off raise its term above the
    // cluster's: answered as any candidate, its vote request would depose the leader.
    const cluster = ScenarioCluster.create(3, { config: { preVote: false } });
    cluster.elect("n1");
    cluster.isolate("n3");
    cluster.core("n1").proposeMembershipChange({ kind: "removeNode", node: "n3" });
    cluster.settle();
    expect(cluster.core("n2").status().membership).toMatchObject({ voters: ["n1", "n2"], removed: ["n3"] });
    // n3 never got its removal, and campaigns.
    cluster.tick("n3", 40);
    expect(cluster.core("n3").status().removed).toBe(false);
    expect(cluster.core("n3").softState().term).toBeGreaterThan(cluster.core("n1").softState().term);
    const leaderTerm = cluster.core("n1").softState().term;

    cluster.heal();
    cluster.tick("n3", 40);
    cluster.stabilize();
    expect(cluster.sent.some((m) => m.type === "removed" && m.to === "n3")).toBe(true);
    expect(cluster.core("n3").status().removed).toBe(true);
    expect(cluster.core("n1").softState()).toEqual({ role: "leader", leader: "n1", term: leaderTerm });
    expect(cluster.core("n2").softState().term).toBe(leaderTerm);
    // Told once, it campaigns no more.
    const sentBefore = cluster.sent.filter((m) => m.from === "n3").length;
    cluster.tick("n3", 100);
    cluster.stabilize();
    expect(cluster.sent.filter((m) => m.from === "n3").length).toBe(sentBefore);
  });

  it("a leader removed while it was cut off steps down when a member answers its heartbeat", () => {
    const cluster = ScenarioCluster.create(5, { config: { checkQuorum: false } });
    cluster.elect("n1");
    cluster.isolate("n1");
    for (let i = 0; i < 60 && !cluster.leaders().some((id) => id !== "n1"); i++) cluster.settle(1);
    const newLeader = cluster.leaders().find((id) => id !== "n1") as string;
    cluster.core(newLeader).proposeMembershipChange({ kind: "removeNode", node: "n1" });
    cluster.settle();
    expect(cluster.core(newLeader).status().membership.removed).toEqual(["n1"]);
    // Without check-quorum, the old leader leads on alone until someone answers it.
    expect(cluster.core("n1").softState().role).toBe("leader");
    cluster.heal();
    cluster.tick("n1", 2);
    cluster.stabilize();
    expect(cluster.core("n1").softState().role).toBe("follower");
    expect(cluster.core("n1").status().removed).toBe(true);
    expect(cluster.leaders()).toEqual([newLeader]);
  });

  it("remembers removed nodes across a snapshot, and never lets a removed id back in", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.isolate("n3");
    cluster.core("n1").proposeMembershipChange({ kind: "removeNode", node: "n3" });
    cluster.settle();
    // n2's removal entry is compacted away; restarted from its snapshot, it still knows.
    expect(cluster.snapshot("n2").meta.membership).toEqual({
      voters: ["n1", "n2"],
      learners: [],
      removed: ["n3"],
    });
    cluster.crash("n2");
    cluster.restart("n2");
    expect(cluster.core("n2").status().membership.removed).toEqual(["n3"]);
    cluster.heal();
    cluster.cutLink("n3", "n1");
    cluster.tick("n3", 40);
    cluster.stabilize();
    expect(cluster.sent.some((m) => m.type === "removed" && m.from === "n2" && m.to === "n3")).toBe(true);
    expect(cluster.core("n3").status().removed).toBe(true);
    // Its old log may still run somewhere: the id stays out.
    expect(() => cluster.core("n1").proposeMembershipChange({ kind: "addLearner", node: "n3" })).toThrowError(
      expect.objectContaining({
        code: "INVALID_MEMBERSHIP_CHANGE",
        message: expect.stringMatching(/n3 was removed/),
      }),
    );
    expect(() => cluster.core("n1").proposeMembershipChange({ kind: "addVoter", node: "n3" })).toThrowError(
      /n3 was removed from the cluster; add the new node under a new id/,
    );
  });

  it("a node does not campaign while a committed membership change is unapplied", () => {
    // Restarted with the three bootstrap changes committed but not yet handed to the application.
    const core = new RaftCore(
      { id: "n1", random: new SeededRandom(3), preVote: false },
      bootstrapState({ voters: ["n1", "n2", "n3"], learners: [] }),
      { applied: 2 },
    );
    core.campaign();
    expect(core.softState()).toMatchObject({ role: "follower", term: 1 });
    const ready = core.ready();
    expect(ready.committedEntries.map((entry) => entry.index)).toEqual([3]);
    core.advance();
    core.campaign();
    expect(core.softState()).toMatchObject({ role: "candidate", term: 2 });
  });
});

describe("leadership transfer", () => {
  it("hands leadership to an up-to-date voter at once", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    const term = cluster.core("n1").softState().term;
    cluster.core("n1").transferLeadership("n2");
    cluster.stabilize();
    expect(cluster.leaders()).toEqual(["n2"]);
    expect(cluster.core("n2").softState().term).toBe(term + 1);
    expect(cluster.sent.some((m) => m.type === "timeoutNow" && m.to === "n2")).toBe(true);
  });

  it("brings a lagging target up to date before handing over, so nothing committed is lost", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.isolate("n3");
    for (const value of ["a", "b", "c"]) cluster.propose("n1", value);
    cluster.stabilize();
    cluster.heal();
    cluster.core("n1").transferLeadership("n3");
    cluster.stabilize();
    expect(cluster.leaders()).toEqual(["n3"]);
    cluster.settle();
    expect(cluster.node("n3").applied).toEqual(["a", "b", "c"]);
  });

  it("refuses proposals during a transfer, and gives up on it after an election timeout", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.isolate("n3");
    cluster.core("n1").transferLeadership("n3");
    expect(() => cluster.propose("n1", "x")).toThrowError(
      expect.objectContaining({ code: "TRANSFER_IN_PROGRESS" }),
    );
    cluster.tick("n1", 10);
    cluster.stabilize();
    expect(cluster.core("n1").status().leadTransferee).toBeNull();
    expect(() => cluster.propose("n1", "x")).not.toThrow();
  });

  it("refuses a transfer to a learner or a stranger, and on a follower", () => {
    const cluster = ScenarioCluster.create(3, { learners: 1 });
    cluster.elect("n1");
    expect(() => cluster.core("n1").transferLeadership("n4")).toThrowError(/not a voter/);
    expect(() => cluster.core("n1").transferLeadership("n9")).toThrowError(/not a voter/);
    expect(() => cluster.core("n2").transferLeadership("n3")).toThrowError(
      expect.objectContaining({ code: "NOT_LEADER" }),
    );
  });

  it("a node that founded a cluster of its own instead of joining is stopped with the reason, not left stalled", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.propose("n1", "before the join");
    cluster.stabilize();
    // n4 was started as a founder (its own four-voter bootstrap, committed) rather than as a joiner.
    cluster.addNode("n4", bootstrapState({ voters: ["n1", "n2", "n3", "n4"], learners: [] }));
    cluster.core("n1").proposeMembershipChange({ kind: "addLearner", node: "n4" });
    expect(() => {
      for (let round = 0; round < 20; round++) {
        cluster.tickAll();
        cluster.stabilize();
      }
    }).toThrow(
      /entry 4 \(term 2\) differs from this node's committed entry 4 \(term 1\): this node's log belongs to another cluster/,
    );
  });
});
