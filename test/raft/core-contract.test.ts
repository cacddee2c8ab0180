// The core's contract with its driver and its callers: the Ready/advance protocol, validated
// configuration, typed errors, determinism, and the invariants it refuses to break.

import { describe, expect, it } from "vitest";
import {
  bootstrapState,
  type Entry,
  emptyState,
  type Message,
  RaftCore,
  RaftError,
  RaftInvariantError,
  SeededRandom,
  validateRaftConfig,
} from "../../raft/core/index.js";
import { ScenarioCluster } from "./scenario-cluster.js";

const three = () => bootstrapState({ voters: ["n1", "n2", "n3"], learners: [] });

describe("the Ready contract", () => {
  it("hands out the bootstrap entries as committed, and nothing more after advance()", () => {
    const core = new RaftCore({ id: "n1", random: new SeededRandom(1) }, three());
    expect(core.hasReady()).toBe(true);
    const ready = core.ready();
    expect(ready.committedEntries.map((entry) => [entry.index, entry.type])).toEqual([
      [1, "config"],
      [2, "config"],
      [3, "config"],
    ]);
    expect(ready.entries).toEqual([]);
    core.advance();
    expect(core.hasReady()).toBe(false);
    expect(core.status().membership.voters).toEqual(["n1", "n2", "n3"]);
  });

  it("refuses a second ready() before advance(), and advance() without a Ready", () => {
    const core = new RaftCore({ id: "n1", random: new SeededRandom(1) }, three());
    core.ready();
    expect(() => core.ready()).toThrow(RaftInvariantError);
    core.advance();
    expect(() => core.advance()).toThrow(RaftInvariantError);
  });

  it("a leader's new entries are persisted (in Ready.entries) in the same Ready as the appends that carry them", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    const core = cluster.core("n1");
    core.propose(new TextEncoder().encode("v"));
    const ready = core.ready();
    expect(ready.entries.map((entry) => entry.index)).toEqual([core.status().lastIndex]);
    expect(ready.messages.filter((m) => m.type === "append").length).toBe(2);
    core.advance();
  });

  it("hands out the hard state to persist for a new term or entries, never for a commit index alone", () => {
    const core = new RaftCore({ id: "n2", random: new SeededRandom(1) }, three());
    while (core.hasReady()) {
      core.ready();
      core.advance();
    }
    const data = new TextEncoder().encode("v");
    const append = (prev: [number, number], entries: Entry[], commit: number): Message => ({
      type: "append",
      from: "n1",
      to: "n2",
      term: 2,
      prevIndex: prev[0],
      prevTerm: prev[1],
      entries,
      commit,
      commitOnly: false,
    });
    // A leader of a new term with an entry: the term and the entries are written (and synced)
    // before the acknowledgement leaves.
    core.step(append([3, 1], [{ index: 4, term: 2, type: "normal", data }], 3));
    let ready = core.ready();
    expect(ready.hardState).toEqual({ term: 2, vote: null, commit: 3 });
    expect(ready.entries.map((entry) => entry.index)).toEqual([4]);
    core.advance();
    // The same leader committing it: applied at once, nothing to write.
    core.step(append([4, 2], [], 4));
    ready = core.ready();
    expect(ready.committedEntries.map((entry) => entry.index)).toEqual([4]);
    expect(ready.hardState).toBeNull();
    expect(ready.entries).toEqual([]);
    core.advance();
    // The next entry carries the commit index the node learned along with it.
    core.step(append([4, 2], [{ index: 5, term: 2, type: "normal", data }], 4));
    ready = core.ready();
    expect(ready.hardState).toEqual({ term: 2, vote: null, commit: 4 });
    core.advance();
  });

  it("a leader counts its own entry toward the quorum only after advance() (once it is on disk)", () => {
    const core = new RaftCore(
      { id: "n1", random: new SeededRandom(1) },
      bootstrapState({ voters: ["n1"], learners: [] }),
    );
    while (core.hasReady()) {
      core.ready();
      core.advance();
    }
    core.campaign();
    const ready = core.ready();
    const noop = ready.entries.at(-1);
    expect(core.softState().role).toBe("leader");
    expect(core.hardState().commit).toBeLessThan(noop?.index ?? 0);
    core.advance();
    expect(core.hardState().commit).toBe(noop?.index);
  });

  it("lets a leader send its appends before it persists them, and commits them on its followers' writes alone meanwhile", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    const leader = cluster.core("n1");
    const { index } = leader.propose(new TextEncoder().encode("v"));
    const ready = leader.ready();
    expect(ready.sendBeforePersist).toBe(true);
    expect(ready.entries.map((entry) => entry.index)).toEqual([index]);
    // Each follower writes the entry, and only then may its acknowledgement leave.
    const acknowledgement = (id: string): Message => {
      const follower = cluster.core(id);
      const append = ready.messages.find((message) => message.type === "append" && message.to === id);
      if (append === undefined) throw new Error(`no append to ${id}`);
      follower.step(append);
      const written = follower.ready();
      expect(written.sendBeforePersist).toBe(false);
      expect(written.entries.map((entry) => entry.index)).toEqual([index]);
      follower.advance();
      const answer = written.messages.find((message) => message.type === "appendResponse");
      if (answer === undefined) throw new Error(`no answer from ${id}`);
      return answer;
    };
    // One follower and the leader's copy not yet on disk are no quorum.
    leader.step(acknowledgement("n2"));
    expect(leader.hardState().commit).toBeLessThan(index);
    // Two followers are.
    leader.step(acknowledgement("n3"));
    expect(leader.hardState().commit).toBe(index);
    leader.advance();
  });

  it("never lets a candidate send before it persists: its vote requests promise its new term and vote", () => {
    const core = new RaftCore({ id: "n1", random: new SeededRandom(1), preVote: false }, three());
    core.ready();
    core.advance();
    core.campaign();
    const ready = core.ready();
    expect(ready.hardState?.vote).toBe("n1");
    expect(ready.messages.filter((message) => message.type === "vote").length).toBe(2);
    expect(ready.sendBeforePersist).toBe(false);
    core.advance();
  });

  it("is deterministic: the same seed and inputs give the same Readys", () => {
    const runOnce = () => {
      const cluster = ScenarioCluster.create(5);
      cluster.settle(40);
      return JSON.stringify(cluster.sent);
    };
    expect(runOnce()).toBe(runOnce());
  });

  it("a joining node with an empty log starts as a follower that never campaigns on its own", () => {
    const core = new RaftCore({ id: "n4", random: new SeededRandom(1) }, emptyState());
    for (let i = 0; i < 100; i++) core.tick();
    expect(core.softState()).toEqual({ role: "follower", leader: null, term: 0 });
    expect(core.hasReady()).toBe(false);
  });

  it("ignores messages addressed to another node or to itself", () => {
    const core = new RaftCore({ id: "n1", random: new SeededRandom(1) }, three());
    core.ready();
    core.advance();
    core.step({
      type: "heartbeat",
      from: "n2",
      to: "n9",
      term: 5,
      commit: 0,
      readRound: 0,
      transfersAbandoned: 0,
    });
    core.step({
      type: "heartbeat",
      from: "n1",
      to: "n1",
      term: 5,
      commit: 0,
      readRound: 0,
      transfersAbandoned: 0,
    });
    expect(core.softState().term).toBe(1);
  });

  it("refuses to start from a state that breaks an invariant", () => {
    const state = three();
    expect(
      () =>
        new RaftCore(
          { id: "n1", random: new SeededRandom(1) },
          { ...state, hardState: { term: 1, vote: null, commit: 9 } },
        ),
    ).toThrow(/commit 9 is beyond the last index 3/);
    expect(() => bootstrapState({ voters: [], learners: [] })).toThrow(/at least one voter/);
  });
});

describe("configuration", () => {
  const random = new SeededRandom(1);

  it("fills defaults and keeps what is given", () => {
    const config = validateRaftConfig({ id: "n1", random, electionTicks: 20 });
    expect(config).toMatchObject({
      electionTicks: 20,
      heartbeatTicks: 1,
      preVote: true,
      checkQuorum: true,
      inflightMessagesMax: 256,
    });
  });

  it("rejects bad limits with INVALID_CONFIG and a message naming the field", () => {
    const cases: [Parameters<typeof validateRaftConfig>[0], RegExp][] = [
      [{ id: "", random }, /id must be a non-empty string/],
      [{ id: "n1", random, electionTicks: 0 }, /electionTicks must be a positive integer, got 0/],
      [
        { id: "n1", random, inflightMessagesMax: 1.5 },
        /inflightMessagesMax must be a positive integer, got 1.5/,
      ],
      [
        { id: "n1", random, electionTicks: 5, heartbeatTicks: 5 },
        /heartbeatTicks \(5\) must be below electionTicks \(5\)/,
      ],
      [
        { id: "n1", random, entryBytesMax: 10, uncommittedBytesMax: 5 },
        /entryBytesMax \(10\) must not exceed uncommittedBytesMax \(5\)/,
      ],
    ];
    for (const [input, message] of cases) {
      let caught: unknown;
      try {
        validateRaftConfig(input);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(RaftError);
      expect(caught).toMatchObject({ code: "INVALID_CONFIG" });
      expect((caught as Error).message).toMatch(message);
    }
  });

  it("rejects non-binary proposals with INVALID_ARGUMENT", () => {
    const cluster = ScenarioCluster.create(1);
    cluster.elect("n1");
    expect(() => cluster.core("n1").propose("text" as unknown as Uint8Array)).toThrowError(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
  });
});

describe("seeded randomness", () => {
  it("replays the same sequence from the same seed, and stays in range", () => {
    const a = new SeededRandom(99);
    const b = new SeededRandom(99);
    const first = Array.from({ length: 100 }, () => a.nextInt(10));
    expect(Array.from({ length: 100 }, () => b.nextInt(10))).toEqual(first);
    expect(first.every((n) => n >= 0 && n < 10)).toBe(true);
    expect(new Set(first).size).toBe(10);
    expect(() => a.nextInt(0)).toThrow(RangeError);
    expect(() => a.pick([])).toThrow(RangeError);
  });
});
