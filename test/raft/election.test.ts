// Leader election (Raft paper section 5.2, dissertation chapters 3 and 9): one leader per term,
// votes persisted before they are sent, the election restriction, PreVote and CheckQuorum.

import { describe, expect, it } from "vitest";
import { bootstrapState, type Message, RaftCore, SeededRandom } from "../../raft/core/index.js";
import { ScenarioCluster } from "./scenario-cluster.js";

/** A member of a new three-node cluster, its bootstrap entries applied (so it knows the voters). */
function bootstrappedCore(id: string, seed: number): RaftCore {
  const core = new RaftCore(
    { id, random: new SeededRandom(seed), electionTicks: 10 },
    bootstrapState({ voters: ["n1", "n2", "n3"], learners: [] }),
  );
  while (core.hasReady()) {
    core.ready();
    core.advance();
  }
  return core;
}

describe("leader election", () => {
  it("a candidate with votes from a majority becomes leader and the others follow it", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    expect(cluster.leaders()).toEqual(["n1"]);
    for (const id of ["n2", "n3"]) {
      expect(cluster.core(id).softState()).toEqual({
        role: "follower",
        leader: "n1",
        term: cluster.core("n1").softState().term,
      });
    }
  });

  it("election safety: a split vote elects nobody in that term, and a later term elects exactly one leader", () => {
    const cluster = ScenarioCluster.create(4, { config: { preVote: false } });
    // n1 and n2 campaign at once; n3 hears n1 first, n4 hears n2 first: two votes each, quorum is
    // three. Neither hears the other's request (one that did would stand again sooner: below).
    const lost = new Set(["n2>n3", "n1>n4", "n1>n2", "n2>n1"]);
    cluster.filter = (message) => !(message.type === "vote" && lost.has(`${message.from}>${message.to}`));
    cluster.campaign("n1");
    cluster.campaign("n2");
    cluster.stabilize();
    expect(cluster.leaders()).toEqual([]);
    expect(cluster.core("n1").softState().term).toBe(2);
    cluster.filter = () => true;
    const leadersByTerm = new Map<number, Set<string>>();
    for (let tick = 0; tick < 100 && cluster.leaders().length === 0; tick++) {
      cluster.tickAll();
      cluster.stabilize();
      for (const id of cluster.leaders()) {
        const term = cluster.core(id).softState().term;
        leadersByTerm.set(term, (leadersByTerm.get(term) ?? new Set()).add(id));
      }
    }
    expect(cluster.leaders()).toHaveLength(1);
    for (const leaders of leadersByTerm.values()) expect(leaders.size).toBe(1);
    expect(leadersByTerm.has(2)).toBe(false);
  });

  it("the election restriction: a candidate whose log lacks committed entries cannot win (section 5.4.1)", () => {
    const cluster = ScenarioCluster.create(3, { config: { preVote: false, checkQuorum: false } });
    cluster.elect("n1");
    cluster.isolate("n3");
    cluster.propose("n1", "committed-without-n3");
    cluster.stabilize();
    cluster.heal();
    cluster.campaign("n3");
    cluster.stabilize();
    expect(cluster.core("n3").softState().role).not.toBe("leader");
    const responses = cluster.sent.filter((m) => m.type === "voteResponse" && m.to === "n3");
    expect(responses.length).toBeGreaterThan(0);
    expect(responses.every((m) => m.type === "voteResponse" && !m.granted)).toBe(true);
  });

  it("a vote is in the Ready's hard state (to be persisted with fsync) together with the response that reveals it", () => {
    const core = bootstrappedCore("n2", 1);
    const request: Message = {
      type: "vote",
      from: "n1",
      to: "n2",
      term: 2,
      lastIndex: 3,
      lastTerm: 1,
      transfer: false,
      transferNumber: 0,
    };
    core.step(request);
    const ready = core.ready();
    expect(ready.hardState).toEqual({ term: 2, vote: "n1", commit: 3 });
    expect(ready.messages).toEqual([{ type: "voteResponse", from: "n2", to: "n1", term: 2, granted: true }]);
  });

  it("a node votes at most once per term, even after a crash and restart", () => {
    const cluster = ScenarioCluster.create(3, { config: { preVote: false } });
    cluster.isolate("n2");
    cluster.campaign("n1");
    cluster.stabilize();
    expect(cluster.core("n3").hardState().vote).toBe("n1");
    const term = cluster.core("n3").hardState().term;
    cluster.crash("n3");
    cluster.restart("n3");
    expect(cluster.core("n3").hardState()).toMatchObject({ term, vote: "n1" });
    const competing: Message = {
      type: "vote",
      from: "n2",
      to: "n3",
      term,
      lastIndex: 100,
      lastTerm: term,
      transfer: false,
      transferNumber: 0,
    };
    cluster.core("n3").step(competing);
    const ready = cluster.core("n3").ready();
    expect(ready.messages).toContainEqual({
      type: "voteResponse",
      from: "n3",
      to: "n2",
      term,
      granted: false,
    });
    cluster.core("n3").advance();
  });

  it("election timeouts are randomized between electionTicks and twice that", () => {
    const observed = new Set<number>();
    for (let seed = 1; seed <= 40; seed++) {
      const core = bootstrappedCore("n1", seed);
      let ticks = 0;
      while (core.softState().role === "follower" && ticks < 100) {
        core.tick();
        ticks++;
      }
      expect(ticks).toBeGreaterThanOrEqual(10);
      expect(ticks).toBeLessThan(20);
      observed.add(ticks);
    }
    expect(observed.size).toBeGreaterThan(3);
  });

  it("CheckQuorum: a leader cut off from a majority steps down within two election timeouts", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.isolate("n1");
    cluster.tick("n1", 20);
    expect(cluster.core("n1").softState()).toMatchObject({ role: "follower", leader: null });
  });

  it("PreVote: a node rejoining after a partition cannot disrupt a healthy leader", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    const term = cluster.core("n1").softState().term;
    cluster.isolate("n3");
    cluster.settle(100);
    // n3 kept pre-voting but never raised its term.
    expect(cluster.core("n3").softState().term).toBe(term);
    cluster.heal();
    cluster.settle(30);
    expect(cluster.leaders()).toEqual(["n1"]);
    expect(cluster.core("n1").softState().term).toBe(term);
    expect(cluster.core("n3").softState()).toMatchObject({ role: "follower", leader: "n1" });
  });

  it("PreVote: of two voters that time out together, one stands; the leader is elected in one term", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    const term = cluster.core("n1").softState().term;
    cluster.crash("n1");
    // Both time out before either hears the other: their pre-votes cross.
    for (const id of ["n2", "n3"]) {
      for (let tick = 0; tick < 100 && cluster.core(id).softState().role === "follower"; tick++)
        cluster.tick(id);
      expect(cluster.core(id).softState().role).toBe("preCandidate");
    }
    cluster.stabilize();
    // Both granted each other's pre-vote; n2 (the lesser id, its log as far as n3's) stood down
    // as it granted n3's, so only n3 stood as a candidate: no split vote, no second term.
    expect(cluster.leaders()).toEqual(["n3"]);
    expect(cluster.core("n3").softState().term).toBe(term + 1);
    expect(cluster.core("n2").softState()).toMatchObject({ role: "follower", leader: "n3", term: term + 1 });
  });

  /**
   * n1, the leader of five voters, crashes; n2 and n5 then stand as candidates of the same term,
   * their vote requests queued, not yet delivered (`n2LogFurther`: n1 got an entry to n2 alone).
   */
  function rivalsInOneTerm(n2LogFurther: boolean): { cluster: ScenarioCluster; term: number } {
    // Without CheckQuorum the voters do not hold to the crashed leader for an election timeout, so
    // the race needs no ticks; with it they would wait that long first, and then race the same way.
    const cluster = ScenarioCluster.create(5, { config: { checkQuorum: false } });
    cluster.elect("n1");
    if (n2LogFurther) {
      cluster.filter = (message) => message.type !== "append" || message.to === "n2";
      cluster.propose("n1", "only on n2");
      cluster.stabilize();
      cluster.filter = () => true;
    }
    const term = cluster.core("n1").softState().term;
    cluster.crash("n1");
    // n2 wins a pre-vote of n3 and n4 (n5 does not hear it) and stands: its vote requests wait.
    cluster.filter = (message) =>
      !(message.type === "preVote" && message.from === "n2" && message.to === "n5");
    cluster.campaign("n2");
    cluster.deliverWhere((message) => message.type === "preVote");
    cluster.deliverWhere((message) => message.type === "preVoteResponse");
    expect(cluster.core("n2").softState()).toMatchObject({ role: "candidate", term: term + 1 });
    // n5 times out before they arrive anywhere: n3 and n4 grant its pre-vote too (a pre-vote binds
    // no one), and n5 stands in the same term before n2's refusal reaches it.
    cluster.filter = () => true;
    cluster.campaign("n5");
    cluster.deliverWhere((message) => message.type === "preVote");
    cluster.deliverWhere((message) => message.type === "preVoteResponse" && message.from !== "n2");
    expect(cluster.core("n5").softState()).toMatchObject({ role: "candidate", term: term + 1 });
    return { cluster, term };
  }

  const isVote = (from: string, to: string) => (message: Message) =>
    message.type === "vote" && message.from === from && message.to === to;

  it.each([
    { case: "logs as far: the greater id", n2LogFurther: false, ahead: "n5", behind: "n2" },
    { case: "n2's log further on, though its id is less", n2LogFurther: true, ahead: "n2", behind: "n5" },
  ])(
    "two candidates that split a term's votes: the one ahead ($case) stands again half an election timeout later, not after its own timeout, and leads the next term",
    ({ n2LogFurther, ahead, behind }) => {
      const { cluster, term } = rivalsInOneTerm(n2LogFurther);
      // The requests cross: n3 votes for n2, n4 for n5, each candidate refuses the other. Two votes
      // each of the four left, three needed: a split.
      cluster.deliverWhere(isVote("n2", "n3"));
      cluster.deliverWhere(isVote("n5", "n4"));
      cluster.deliverWhere((message) => message.type === "vote");
      cluster.stabilize();
      expect(cluster.leaders()).toEqual([]);
      // electionTicks is 10: a candidate's own timeout is 10 to 19 ticks. The one ahead stands again
      // (a pre-vote for the next term) on its fifth tick; the one behind is still a candidate.
      cluster.tick(ahead, 4);
      expect(cluster.core(ahead).softState()).toMatchObject({ role: "candidate", term: term + 1 });
      cluster.tick(ahead);
      expect(cluster.core(ahead).softState()).toMatchObject({ role: "preCandidate", term: term + 1 });
      expect(cluster.core(behind).softState()).toMatchObject({ role: "candidate", term: term + 1 });
      cluster.stabilize();
      expect(cluster.leaders()).toEqual([ahead]);
      expect(cluster.core(ahead).softState().term).toBe(term + 2);
      for (const id of ["n2", "n3", "n4", "n5"]) {
        expect(cluster.core(id).softState()).toMatchObject({ leader: ahead, term: term + 2 });
      }
    },
  );

  it("a candidate ahead of a rival that then wins the term follows it: a race that ends by itself is left alone", () => {
    const { cluster, term } = rivalsInOneTerm(false);
    // n5 (ahead) hears n2's request first; then n3 and n4 both vote for n2, which wins the term.
    cluster.deliverWhere(isVote("n2", "n5"));
    // A rival's request alone does not make it stand again: most races end with the next answers.
    expect(cluster.core("n5").softState()).toMatchObject({ role: "candidate", term: term + 1 });
    cluster.deliverWhere((message) => message.type === "vote" && message.from === "n2");
    cluster.deliverWhere((message) => message.type === "voteResponse" && message.to === "n2");
    expect(cluster.leaders()).toEqual(["n2"]);
    cluster.stabilize();
    // Time passes, well beyond half an election timeout: n5 follows n2 and never stands again.
    cluster.settle(30);
    expect(cluster.leaders()).toEqual(["n2"]);
    for (const id of ["n3", "n4", "n5"]) {
      expect(cluster.core(id).softState()).toMatchObject({ role: "follower", leader: "n2", term: term + 1 });
    }
  });

  it("without PreVote the same rejoining node raises its term and deposes the leader (why PreVote is on)", () => {
    const cluster = ScenarioCluster.create(3, { config: { preVote: false, checkQuorum: false } });
    cluster.elect("n1");
    const term = cluster.core("n1").softState().term;
    cluster.isolate("n3");
    cluster.tick("n3", 100);
    expect(cluster.core("n3").softState().term).toBeGreaterThan(term + 3);
    cluster.heal();
    cluster.tick("n1");
    cluster.stabilize();
    expect(cluster.core("n1").softState().term).toBeGreaterThan(term);
    expect(cluster.core("n1").softState().role).not.toBe("leader");
  });

  it("with CheckQuorum, a voter that hears from its leader ignores vote requests (leader stickiness)", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    const term = cluster.core("n2").softState().term;
    const request: Message = {
      type: "vote",
      from: "n3",
      to: "n2",
      term: term + 1,
      lastIndex: 100,
      lastTerm: term,
      transfer: false,
      transferNumber: 0,
    };
    cluster.core("n2").step(request);
    cluster.process("n2");
    expect(cluster.core("n2").softState()).toMatchObject({ term, leader: "n1" });
    expect(cluster.core("n2").hardState().vote).not.toBe("n3");
  });

  it("a leader's farewell (it stops on a failed write) tells the voter furthest along to campaign, and that voter leads without waiting out a timeout", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    // n3 hears nothing more from n1: n2 is the voter furthest along.
    cluster.cutLink("n1", "n3");
    cluster.propose("n1", "a");
    cluster.propose("n1", "b");
    cluster.stabilize();
    expect(cluster.core("n2").farewell()).toBeNull();
    const farewell = cluster.core("n1").farewell();
    expect(farewell).toEqual({
      type: "timeoutNow",
      transferNumber: 1,
      from: "n1",
      to: "n2",
      term: cluster.core("n1").softState().term,
    });
    // n2 passed over (sealed, or out of reach, as the driver says): n3, though behind; with every
    // voter passed over, the furthest all the same.
    expect(cluster.core("n1").farewell((id) => id === "n2")?.to).toBe("n3");
    expect(cluster.core("n1").farewell(() => true)?.to).toBe("n2");
    cluster.crash("n1");
    cluster.heal();
    if (farewell === null) throw new Error("no farewell");
    cluster.core("n2").step(farewell);
    cluster.stabilize();
    // No tick passed: n2 campaigned on the message, and n3, whose log is behind, voted for it.
    expect(cluster.leaders()).toEqual(["n2"]);
  });

  it("a node that may not campaign (sealed) never stands for election, not even when asked to take over, yet votes", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.core("n1").setCampaignAllowed(false);
    cluster.core("n2").setCampaignAllowed(false);
    for (let tick = 0; tick < 100; tick++) {
      cluster.tickAll();
      cluster.stabilize();
    }
    // Only n3 may campaign; it needs a vote from n1 or n2, which still vote.
    expect(cluster.leaders()).toEqual(["n3"]);
    cluster.core("n3").transferLeadership("n1");
    for (let tick = 0; tick < 30; tick++) {
      cluster.tickAll();
      cluster.stabilize();
    }
    expect(cluster.leaders()).toEqual(["n3"]);
    cluster.core("n1").setCampaignAllowed(true);
    cluster.core("n3").transferLeadership("n1");
    cluster.stabilize();
    expect(cluster.leaders()).toEqual(["n1"]);
  });
});
