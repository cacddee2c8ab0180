// A leader's read lease (dissertation section 6.4.1): while a quorum acknowledged a heartbeat sent
// less than the lease ago, the leader answers a linearizable read at once, without a heartbeat
// round. It stands on the promise each member keeps: no vote for anyone until an election timeout
// after it last heard from a leader, also after a restart; and the leader gives it up before it
// hands over, until it has abandoned the hand-over and a quorum heard it did. Ticks are 50 ms here
// (electionTicks 10): a lease of 400 ms is below the 450 ms a member may count 10 ticks in (the
// first tick may come at once).

import { describe, expect, it } from "vitest";
import { type Message, RaftCore, RaftError, SeededRandom } from "../../raft/core/index.js";
import { ScenarioCluster } from "./scenario-cluster.js";

const leaseMs = 400;

/** Three voters, n1 leading with a lease a quorum acknowledged at clockMs 0. */
function leasedCluster(bugs: ("votesAfterRestart" | "readWithoutQuorum")[] = []): ScenarioCluster {
  const cluster = ScenarioCluster.create(3, {
    readLeaseMs: leaseMs,
    config: { injectedBugs: new Set(bugs) },
  });
  cluster.elect("n1");
  cluster.tick("n1");
  cluster.stabilize();
  return cluster;
}

function heartbeatRoundsQueued(cluster: ScenarioCluster): number {
  return cluster.queued().filter((message) => message.type === "heartbeat" && message.readRound > 0).length;
}

describe("read lease", () => {
  it("a leader answers a read at once while a quorum's acknowledgement is younger than the lease", () => {
    const cluster = leasedCluster();
    const written = cluster.propose("n1", "x");
    cluster.stabilize();
    cluster.clockMs = leaseMs - 1;
    cluster.readIndex("n1", "leased");
    expect(cluster.node("n1").readStates).toEqual([{ index: written.index, context: "leased" }]);
    expect(heartbeatRoundsQueued(cluster)).toBe(0);
  });

  it("without a lease the same read waits for a heartbeat round", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.tick("n1");
    cluster.stabilize();
    cluster.readIndex("n1", "round");
    expect(cluster.node("n1").readStates).toEqual([]);
    expect(heartbeatRoundsQueued(cluster)).toBe(2);
  });

  it("the first round after an election starts the lease; a cut-off leader's lease runs out", () => {
    const cluster = ScenarioCluster.create(3, { readLeaseMs: leaseMs });
    cluster.elect("n1");
    // Elected, but no heartbeat acknowledged yet: the read takes a round, which starts the lease.
    cluster.readIndex("n1", "first");
    expect(cluster.node("n1").readStates).toEqual([]);
    cluster.stabilize();
    expect(cluster.node("n1").readStates.map((read) => read.context)).toEqual(["first"]);
    // Counted only for the reads the lease answered (the simulator checks each of them).
    expect(cluster.core("n1").readsFromLease).toBe(0);
    cluster.isolate("n1");
    cluster.clockMs = leaseMs - 1;
    cluster.readIndex("n1", "within");
    expect(cluster.node("n1").readStates.map((read) => read.context)).toEqual(["first", "within"]);
    expect(cluster.core("n1").readsFromLease).toBe(1);
    cluster.clockMs = leaseMs;
    cluster.readIndex("n1", "after");
    cluster.stabilize();
    expect(cluster.node("n1").readStates.map((read) => read.context)).toEqual(["first", "within"]);
    expect(cluster.core("n1").status().readsFromLease).toBe(1);
  });

  it("a member that heard from the leader votes for no one for an election timeout", () => {
    const cluster = leasedCluster();
    cluster.partition(["n1"], ["n3"]);
    // n3 hears nothing from n1 and campaigns; n2 still hears from n1 and ignores it.
    for (let i = 0; i < 40; i++) {
      cluster.tickAll();
      cluster.stabilize();
    }
    expect(cluster.leaders()).toEqual(["n1"]);
    expect(cluster.core("n3").softState().role).not.toBe("leader");
  });

  it("a member restarted within the lease votes for no one until an election timeout has passed", () => {
    const cluster = leasedCluster();
    cluster.partition(["n1"], ["n3"]);
    cluster.crash("n2");
    cluster.restart("n2");
    // What the simulator checks at every read from a lease: a restarted member withholds its vote.
    expect(cluster.core("n2").withholdsVotes).toBe(true);
    // n3 times out and asks n2, restarted a moment ago, which may have acknowledged n1's lease.
    cluster.tick("n3", 20);
    cluster.stabilize();
    expect(cluster.core("n3").softState().role).not.toBe("leader");
    cluster.clockMs = 100;
    cluster.readIndex("n1", "still the only leader");
    expect(cluster.node("n1").readStates.at(-1)?.context).toBe("still the only leader");
    // Once its election timeout has passed (and n1's lease with it), n2 may vote again.
    cluster.clockMs = 500;
    cluster.tick("n2", 9);
    expect(cluster.core("n2").withholdsVotes).toBe(true);
    cluster.tick("n2");
    expect(cluster.core("n2").withholdsVotes).toBe(false);
    cluster.tick("n3", 20);
    cluster.stabilize();
    expect(cluster.core("n3").softState().role).toBe("leader");
  });

  it("a member whose term a stale answer raised still withholds its vote in that term", () => {
    const cluster = leasedCluster();
    const term = cluster.core("n2").softState().term;
    // An answer to an append n2 sent as a leader long ago, from n3 in a later term.
    cluster.core("n2").step({
      type: "appendResponse",
      from: "n3",
      to: "n2",
      term: term + 1,
      success: false,
      index: 0,
      hintIndex: 0,
      hintTerm: 0,
    });
    expect(cluster.core("n2").softState()).toMatchObject({ term: term + 1, leader: null });
    const index = cluster.core("n3").status().lastIndex;
    cluster.core("n2").step({
      type: "vote",
      from: "n3",
      to: "n2",
      term: term + 1,
      lastIndex: index,
      lastTerm: term,
      transfer: false,
      transferNumber: 0,
    });
    const answers = cluster
      .core("n2")
      .ready()
      .messages.filter((message) => message.type === "voteResponse");
    expect(answers).toEqual([expect.objectContaining({ granted: false })]);
  });

  it("with that rule broken (injected bug), a restarted member elects another leader and the lease reads stale data", () => {
    const cluster = leasedCluster(["votesAfterRestart"]);
    cluster.partition(["n1"], ["n3"]);
    cluster.crash("n2");
    cluster.restart("n2");
    expect(cluster.core("n2").withholdsVotes).toBe(false);
    cluster.tick("n3", 20);
    cluster.stabilize();
    expect(cluster.core("n3").softState().role).toBe("leader");
    const fresh = cluster.propose("n3", "new");
    cluster.stabilize();
    cluster.clockMs = 100;
    cluster.readIndex("n1", "stale!");
    const read = cluster.node("n1").readStates.at(-1);
    expect(read?.context).toBe("stale!");
    expect(read?.index).toBeLessThan(fresh.index);
  });

  it("a leader that begins a transfer, or says farewell, reads with heartbeat rounds again", () => {
    const cluster = leasedCluster();
    cluster.core("n1").transferLeadership("n2");
    cluster.process("n1");
    cluster.readIndex("n1", "during transfer");
    expect(cluster.node("n1").readStates).toEqual([]);
    expect(heartbeatRoundsQueued(cluster)).toBe(2);

    const other = leasedCluster();
    expect(other.core("n1").farewell()?.type).toBe("timeoutNow");
    other.readIndex("n1", "after farewell");
    expect(other.node("n1").readStates).toEqual([]);
    expect(heartbeatRoundsQueued(other)).toBe(2);
  });

  it("a follower's read is answered by the leader's lease, without a round", () => {
    const cluster = leasedCluster();
    const written = cluster.propose("n1", "x");
    cluster.stabilize();
    cluster.readIndex("n2", "via leader");
    expect(cluster.queued().map((message) => message.type)).toEqual(["readIndex"]);
    cluster.stabilize();
    expect(cluster.node("n2").readStates).toEqual([{ index: written.index, context: "via leader" }]);
    expect([cluster.core("n1").readsFromLease, cluster.core("n2").readsFromLease]).toEqual([1, 0]);
    expect(cluster.sent.filter((message) => message.type === "heartbeat" && message.readRound > 1)).toEqual(
      [],
    );
  });

  it("refuses a lease it cannot keep: a negative one, one without a clock or without CheckQuorum", () => {
    const core = (config: { clock?: () => number; checkQuorum?: boolean }) =>
      new RaftCore(
        { id: "n1", random: new SeededRandom(1), ...config },
        {
          hardState: { term: 0, vote: null, commit: 0 },
          snapshot: null,
          offset: { index: 0, term: 0 },
          entries: [],
        },
      );
    const withClock = core({ clock: () => 0 });
    expect(() => withClock.setReadLease(-1)).toThrow(
      /a read lease must be a duration of 0 ms or more, got -1/,
    );
    expect(() => withClock.setReadLease(Number.NaN)).toThrow(RaftError);
    expect(() => core({}).setReadLease(400)).toThrow(/needs the config's clock/);
    expect(() => core({ clock: () => 0, checkQuorum: false }).setReadLease(400)).toThrow(/needs checkQuorum/);
    withClock.setReadLease(0);
    withClock.setReadLease(400);
  });
});

describe("a TimeoutNow that was not acted on", () => {
  /** Ticks the leader n1 (50 ms each), delivering what each tick sends. */
  function tickLeader(cluster: ScenarioCluster, ticks: number): void {
    for (let i = 0; i < ticks; i++) {
      cluster.clockMs += 50;
      cluster.tick("n1");
      cluster.stabilize();
    }
  }

  /** n1 leads with a lease and hands over to n2, which does not act on the TimeoutNow (sealed). */
  function declinedTransfer(): ScenarioCluster {
    const cluster = leasedCluster();
    cluster.core("n2").setCampaignAllowed(false);
    cluster.core("n1").transferLeadership("n2");
    cluster.stabilize();
    expect(cluster.sent.filter((message) => message.type === "timeoutNow")).toEqual([
      expect.objectContaining({ to: "n2", transferNumber: 1 }),
    ]);
    return cluster;
  }

  /** The answers to vote requests in `id`'s next Ready. */
  const voteAnswers = (cluster: ScenarioCluster, id: string): Message[] =>
    cluster
      .core(id)
      .ready()
      .messages.filter((message) => message.type === "voteResponse");

  const forcedVote = (from: string, to: string, term: number, lastIndex: number): Message => ({
    type: "vote",
    from,
    to,
    term,
    lastIndex,
    lastTerm: term - 1,
    transfer: true,
    transferNumber: 1,
  });

  it("costs the leader its lease only until a quorum heard it abandoned, an election timeout or two", () => {
    const cluster = declinedTransfer();
    // The transfer ends after an election timeout; its TimeoutNow is abandoned at the next.
    tickLeader(cluster, 10);
    expect(cluster.core("n1").status()).toMatchObject({ role: "leader", leadTransferee: null });
    cluster.readIndex("n1", "transfer over, TimeoutNow not yet abandoned");
    expect(heartbeatRoundsQueued(cluster)).toBe(2);
    cluster.stabilize();
    tickLeader(cluster, 10);
    expect(cluster.sent.at(-1)).toMatchObject({ type: "heartbeatResponse", transfersAbandoned: 1 });
    const readsBefore = cluster.core("n1").readsFromLease;
    cluster.readIndex("n1", "leased again");
    expect(cluster.node("n1").readStates.at(-1)?.context).toBe("leased again");
    expect(cluster.core("n1").readsFromLease).toBe(readsBefore + 1);
  });

  it("counts towards the lease only answers from members that know it abandoned (an older member's do not)", () => {
    const cluster = declinedTransfer();
    tickLeader(cluster, 20);
    cluster.clockMs += 50;
    cluster.core("n1").tick();
    cluster.process("n1");
    const heartbeats = cluster.dropQueued().filter((message) => message.type === "heartbeat");
    expect(heartbeats.map((message) => message.transfersAbandoned)).toEqual([1, 1]);
    const round = heartbeats[0]?.type === "heartbeat" ? heartbeats[0].readRound : 0;
    const answer = (from: string, transfersAbandoned: number): Message => ({
      type: "heartbeatResponse",
      from,
      to: "n1",
      term: cluster.core("n1").softState().term,
      readRound: round,
      transfersAbandoned,
    });
    // Past the lease of every answer before (sent 50 ms earlier or more): only these could hold it.
    cluster.clockMs += leaseMs - 1;
    cluster.core("n1").step(answer("n2", 0));
    cluster.core("n1").step(answer("n3", 0));
    cluster.readIndex("n1", "older members");
    expect(cluster.node("n1").readStates.map((read) => read.context)).not.toContain("older members");
    cluster.core("n1").step(answer("n2", 1));
    cluster.readIndex("n1", "a member that knows");
    expect(cluster.node("n1").readStates.at(-1)?.context).toBe("a member that knows");
  });

  it("once heard abandoned, is not acted on when it arrives late, nor voted for", () => {
    const cluster = leasedCluster();
    cluster.core("n1").transferLeadership("n2");
    cluster.process("n1");
    const late = cluster.dropQueued().filter((message) => message.type === "timeoutNow");
    expect(late).toHaveLength(1);
    tickLeader(cluster, 20);
    const term = cluster.core("n1").softState().term;
    for (const message of late) cluster.core("n2").step(message);
    cluster.process("n2");
    expect(cluster.core("n2").softState()).toMatchObject({ role: "follower", term });
    // As if n2 had acted on it before it heard: n3 refuses the vote and keeps its term.
    const lastIndex = cluster.core("n2").status().lastIndex;
    expect(cluster.core("n3").votesForTransfer(term, 1)).toBe(false);
    cluster.core("n3").step(forcedVote("n2", "n3", term + 1, lastIndex));
    expect(voteAnswers(cluster, "n3")).toEqual([]);
    expect(cluster.core("n3").softState().term).toBe(term);
    expect(cluster.leaders()).toEqual(["n1"]);
  });

  it("a restarted member votes for no transfer of its term until a heartbeat says what was abandoned", () => {
    const cluster = leasedCluster();
    const term = cluster.core("n1").softState().term;
    cluster.crash("n3");
    cluster.restart("n3");
    const lastIndex = cluster.core("n2").status().lastIndex;
    // It may have heard an abandonment before it went down: a transfer's vote waits on its promise.
    expect(cluster.core("n3").votesForTransfer(term, 1)).toBe(false);
    cluster.core("n3").step(forcedVote("n2", "n3", term + 1, lastIndex));
    expect(cluster.core("n3").softState().term).toBe(term);
    tickLeader(cluster, 1);
    expect(cluster.core("n3").votesForTransfer(term, 1)).toBe(true);
    cluster.core("n3").step(forcedVote("n2", "n3", term + 1, lastIndex));
    expect(voteAnswers(cluster, "n3")).toEqual([expect.objectContaining({ granted: true, term: term + 1 })]);
  });
});
