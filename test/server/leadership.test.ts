// Telling a leadership change from a failure (server/leadership.ts): a leader's periodic tasks that
// a change of leader stopped are logged at info, not as warnings an SRE has to look into. Whom a
// leader may hand the leadership to, and how long a hand-over waits when its target went down
// (RaftNodes on a real clock over an in-process network).

import { afterEach, expect, it, vi } from "vitest";
import { type Entry, NotLeaderError, RaftError, type RaftStatus } from "../../raft/core/index.js";
import {
  InProcessNetwork,
  MemoryLogStore,
  RaftNode,
  RaftNodeError,
  type StateMachine,
} from "../../raft/node/index.js";
import {
  handOverLeadership,
  leadershipCandidates,
  leaderTaskFailure,
  lostLeadership,
} from "../../server/leadership.js";
import { StateError } from "../../storage/state/index.js";

it("counts a lost lead, a dropped proposal or read, and a transfer under way as a leadership change, and nothing else", () => {
  expect(lostLeadership(new NotLeaderError("n2"))).toBe(true);
  expect(lostLeadership(new NotLeaderError(null))).toBe(true);
  expect(lostLeadership(new RaftError("TRANSFER_IN_PROGRESS", "a transfer is under way"))).toBe(true);
  expect(lostLeadership(new RaftNodeError("PROPOSAL_DROPPED", "dropped"))).toBe(true);
  expect(lostLeadership(new RaftNodeError("LEADER_CHANGED", "lost the lead before it committed"))).toBe(true);

  expect(lostLeadership(new RaftNodeError("TIMEOUT", "not committed in time"))).toBe(false);
  expect(lostLeadership(new RaftNodeError("STOPPED", "the node stopped"))).toBe(false);
  expect(lostLeadership(new RaftError("INVALID_ARGUMENT", "a bad proposal"))).toBe(false);
  expect(lostLeadership(new StateError("CAS_MISMATCH", "the cluster record features changed"))).toBe(false);
  expect(lostLeadership(new Error("disk full"))).toBe(false);
  expect(lostLeadership("not an error")).toBe(false);
});

it("logs a leader task stopped by a change of leader at info, and any other failure at warn", () => {
  expect(leaderTaskFailure("a rotation", new RaftNodeError("LEADER_CHANGED", "lost the lead"))).toEqual({
    level: "info",
    message: "a rotation stopped: the leadership moved",
  });
  expect(leaderTaskFailure("a lease sweep step", new NotLeaderError("n3"))).toEqual({
    level: "info",
    message: "a lease sweep step stopped: the leadership moved",
  });
  expect(leaderTaskFailure("a rotation", new RaftNodeError("TIMEOUT", "not committed in time"))).toEqual({
    level: "warn",
    message: "a rotation failed; retrying",
  });
  expect(leaderTaskFailure("erasing an expired secret", new Error("disk full"))).toEqual({
    level: "warn",
    message: "erasing an expired secret failed; retrying",
  });
});

it("offers the leadership to the other voters that would take it, furthest along first", () => {
  const match: Record<string, number> = { n1: 100, n2: 90, n3: 100, n4: 95, n5: 100 };
  const status = {
    id: "n1",
    membership: { voters: ["n1", "n2", "n3", "n4"], learners: ["n5"] },
    progress: new Map(
      Object.entries(match).map(([id, at]) => [id, { match: at, next: at + 1, state: "replicate" }]),
    ),
  } as unknown as RaftStatus;
  // Not itself, not a learner however far along.
  expect(leadershipCandidates(status, () => false)).toEqual(["n3", "n4", "n2"]);
  // Not one that declines it (sealed).
  expect(leadershipCandidates(status, (id) => id === "n3")).toEqual(["n4", "n2"]);
  expect(leadershipCandidates(status, () => true)).toEqual([]);
});

/** Applies nothing: the hand-over tests need leaders and terms only. */
const noMachine: StateMachine<null> = {
  apply: (_entry: Entry) => null,
  snapshot: () => new Uint8Array(),
  restore: async () => {},
  appliedIndex: () => 0,
};

const started: RaftNode<null>[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((node) => node.stop()));
});

/** The test clusters' election timeout: 10 ticks (the default) of 10 ms. */
const timing = { waitMs: 10_000, electionTimeoutMs: 100 };

/** Three voters, 10 ms ticks (an election timeout of 100-200 ms); resolves with the leader. */
async function threeVoters(
  network = new InProcessNetwork(),
): Promise<{ nodes: RaftNode<null>[]; leader: RaftNode<null> }> {
  const ids = ["n1", "n2", "n3"];
  for (const id of ids) {
    started.push(
      await RaftNode.start<null>({
        id,
        logStore: new MemoryLogStore(),
        transport: network.connect(id),
        stateMachine: noMachine,
        tickMs: 10,
        requestTimeoutMs: 2000,
        bootstrap: { voters: ids, learners: [] },
      }),
    );
  }
  const nodes = [...started];
  const deadline = Date.now() + 10_000;
  for (;;) {
    const leader = nodes.find((node) => node.leadership().role === "leader");
    if (leader !== undefined) return { nodes, leader };
    if (Date.now() > deadline) throw new Error("no leader in 10 s");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

it("offers the leadership to the next voter when the one it chose went down, and leaves it leading", async () => {
  const { nodes, leader } = await threeVoters();
  // The voter it would choose goes down before the leader counts it out of reach.
  const chosen = leadershipCandidates(leader.status(), () => false)[0];
  const down = nodes.find((node) => node.id === chosen);
  const other = nodes.find((node) => node !== leader && node !== down);
  if (down === undefined || other === undefined) throw new Error("three voters expected");
  await down.stop();
  const began = Date.now();
  await handOverLeadership(leader, () => false, timing);
  // Within a few election timeouts, not at the end of the wait: the first offer is abandoned.
  expect(Date.now() - began).toBeLessThan(5000);
  expect(other.leadership().role).toBe("leader");
  expect(leader.leadership().leader).toBe(other.id);
});

it("gives up once no majority answers (the whole cluster stopping at once), not at the end of its wait", async () => {
  const { nodes, leader } = await threeVoters();
  const { term } = leader.leadership();
  await Promise.all(nodes.filter((node) => node !== leader).map((node) => node.stop()));
  const began = Date.now();
  await handOverLeadership(leader, () => false, timing);
  expect(Date.now() - began).toBeLessThan(5000);
  // It stepped down in its own term (CheckQuorum), and nobody leads.
  expect(leader.leadership()).toEqual({ role: "follower", leader: null, term });
});

it("gives up an election it voted in once it had no leader for two election timeouts (its candidate went away)", async () => {
  const network = new InProcessNetwork();
  const { nodes, leader } = await threeVoters(network);
  const others = nodes.filter((node) => node !== leader);
  const [stopped, candidate] = others;
  if (stopped === undefined || candidate === undefined) throw new Error("three voters expected");
  await stopped.stop();
  // The candidate goes away once the leader voted for it: the vote never arrives, nobody leads.
  network.observe = (message) => {
    if (message.type === "voteResponse" && message.from === leader.id) network.isolate(candidate.id);
  };
  const { term } = leader.leadership();
  const began = Date.now();
  await handOverLeadership(leader, (id) => id === stopped.id, timing);
  expect(Date.now() - began).toBeLessThan(5000);
  expect(leader.leadership().leader).toBeNull();
  expect(leader.leadership().term).toBeGreaterThan(term);
  expect(leader.status().vote).toBe(candidate.id);
});

it("waits on the monotonic clock: a wall clock stepped back a minute during a hand-over does not stretch it", async () => {
  const network = new InProcessNetwork();
  const { nodes, leader } = await threeVoters(network);
  const [stopped, candidate] = nodes.filter((node) => node !== leader);
  if (stopped === undefined || candidate === undefined) throw new Error("three voters expected");
  await stopped.stop();
  // As above: an election with no leader, which the hand-over gives up after two election timeouts.
  network.observe = (message) => {
    if (message.type === "voteResponse" && message.from === leader.id) network.isolate(candidate.id);
  };
  const wallClock = Date.now.bind(Date);
  const stepped = setTimeout(() => {
    vi.spyOn(Date, "now").mockImplementation(() => wallClock() - 60_000);
  }, 50);
  try {
    const began = performance.now();
    await handOverLeadership(leader, (id) => id === stopped.id, timing);
    expect(performance.now() - began).toBeLessThan(5000);
    expect(leader.leadership().leader).toBeNull();
  } finally {
    clearTimeout(stepped);
    vi.restoreAllMocks();
  }
});

it("waits until the voter it chose leads when that voter is up", async () => {
  const { nodes, leader } = await threeVoters();
  const chosen = leadershipCandidates(leader.status(), () => false)[0];
  await handOverLeadership(leader, () => false, timing);
  expect(leader.leadership().leader).toBe(chosen);
  expect(nodes.find((node) => node.id === chosen)?.leadership().role).toBe("leader");
});
