// PeerContact: a member is out of reach when it left this node's requests unanswered for
// answerWithinMs (no leadership is handed to it), and a node is cut off when it heard from other
// members before and so many voters left its requests unanswered that the rest make no quorum with
// it - then a call waiting for a leader gives up at once (NO_LEADER, "ask another node") instead of
// waiting out its leader wait where no leader it could follow can be elected: alone, or on the
// minority side of a partition. Silence alone is not enough: a follower whose leader went hears
// from nobody until the election begins, on the majority side too. A node that has heard from
// nobody yet (starting, or the first of a new cluster) is not cut off: it waits for a leader.

import { afterEach, expect, it, vi } from "vitest";
import type { Message } from "../../raft/core/index.js";
import { PeerContact } from "../../server/peer-contact.js";

const three = ["n1", "n2", "n3"];
const five = ["n1", "n2", "n3", "n4", "n5"];

const heartbeats = (from: string, to: readonly string[]): Message[] =>
  to.map((peer) => ({
    type: "heartbeat",
    from,
    to: peer,
    term: 2,
    commit: 0,
    readRound: 0,
    transfersAbandoned: 0,
  }));
const preVotes = (from: string, to: readonly string[]): Message[] =>
  to.map((peer) => ({ type: "preVote", from, to: peer, term: 3, lastIndex: 9, lastTerm: 2 }));
const answers = (from: string, to: string): Message[] => [
  { type: "heartbeatResponse", from, to, term: 2, readRound: 0, transfersAbandoned: 0 },
];

it("a leader whose heartbeats go unanswered for answerWithinMs is cut off; one answer of two is a quorum", () => {
  const contact = new PeerContact(200);
  const start = Date.now();
  // Starting: heard from nobody yet, whatever it asked.
  contact.sent(heartbeats("n1", ["n2", "n3"]), start);
  expect(contact.cutOff("n1", three, start + 10_000)).toBe(false);
  contact.heardFrom("n2", start + 5);
  contact.heardFrom("n3", start + 5);
  // Asked again at 100 and never answered: out of reach from 300 on, not before.
  contact.sent(heartbeats("n1", ["n2", "n3"]), start + 100);
  contact.sent(heartbeats("n1", ["n2", "n3"]), start + 150);
  expect(contact.cutOff("n1", three, start + 299)).toBe(false);
  expect(contact.cutOff("n1", three, start + 300)).toBe(true);
  // Each of them is out of reach (no leadership is handed to it) from the same moment.
  expect(contact.outOfReach("n2", start + 299)).toBe(false);
  expect(contact.outOfReach("n2", start + 300)).toBe(true);
  // One other voter of three answers: a quorum with itself.
  contact.heardFrom("n3", start + 310);
  expect(contact.cutOff("n1", three, start + 320)).toBe(false);
  expect(contact.outOfReach("n3", start + 320)).toBe(false);
  expect(contact.outOfReach("n2", start + 320)).toBe(true);
  // Not asked for three times answerWithinMs since its last request: no longer judged.
  expect(contact.outOfReach("n2", start + 150 + 600)).toBe(true);
  expect(contact.outOfReach("n2", start + 150 + 601)).toBe(false);
  expect(contact.lastHeardFrom("n3")).toBe(start + 310);
  expect(contact.lastHeardFrom("n9")).toBeUndefined();
  // Answers do not count as asking.
  contact.sent(answers("n1", "n3"), start + 400);
  expect(contact.cutOff("n1", three, start + 10_000)).toBe(false);
});

it("a follower whose leader went silent is not cut off until its own vote requests go unanswered", () => {
  const contact = new PeerContact(200);
  const start = Date.now();
  contact.heardFrom("n1", start);
  // Its answers to the leader expect nothing back; the others were never asked.
  contact.sent(answers("n2", "n1"), start);
  expect(contact.cutOff("n2", five, start + 5_000)).toBe(false);
  // It campaigns: on the majority side n3 and n4 answer, n1 and n5 do not.
  contact.sent(preVotes("n2", ["n1", "n3", "n4", "n5"]), start + 5_000);
  contact.heardFrom("n3", start + 5_002);
  contact.heardFrom("n4", start + 5_003);
  expect(contact.cutOff("n2", five, start + 5_300)).toBe(false);
});

it("requests left unanswered long ago, with none since, are forgotten: a later campaign starts afresh", () => {
  const contact = new PeerContact(200);
  const start = Date.now();
  // At start its vote requests reach only n2, which leads; n3-n5 were not up and never answer:
  // followers send nothing to each other.
  contact.sent(preVotes("n1", ["n2", "n3", "n4", "n5"]), start);
  contact.heardFrom("n2", start + 5);
  expect(contact.cutOff("n1", five, start + 300)).toBe(true);
  // Seconds later its leader goes silent: what it asked at start no longer counts.
  expect(contact.cutOff("n1", five, start + 5_000)).toBe(false);
  contact.sent(preVotes("n1", ["n2", "n3", "n4", "n5"]), start + 5_000);
  expect(contact.cutOff("n1", five, start + 5_100)).toBe(false);
  // Asked again, and unanswered for 200 ms: out of reach.
  expect(contact.cutOff("n1", five, start + 5_200)).toBe(true);
  // A pre-candidate asks every election (here 300 ms apart): the first request still counts.
  contact.sent(preVotes("n1", ["n2", "n3", "n4", "n5"]), start + 5_300);
  expect(contact.cutOff("n1", five, start + 5_310)).toBe(true);
});

it("on the minority side of a partition of five it is cut off once its vote requests go unanswered", () => {
  const contact = new PeerContact(200);
  const split = Date.now();
  for (const peer of ["n2", "n3", "n4", "n5"]) contact.heardFrom(peer, split - 50);
  // After the split n1 campaigns; only n2 (its side) answers: 2 of 5.
  contact.sent(preVotes("n1", ["n2", "n3", "n4", "n5"]), split + 300);
  contact.heardFrom("n2", split + 302);
  expect(contact.cutOff("n1", five, split + 450)).toBe(false);
  expect(contact.cutOff("n1", five, split + 500)).toBe(true);
  // One answer of three voters: a voter has a quorum with itself, a learner (not a voter) has not.
  for (const self of ["n3", "n9"]) {
    const contact = new PeerContact(200);
    const others = ["n1", "n2", "n3"].filter((peer) => peer !== self);
    contact.sent(heartbeats(self, others), split);
    contact.heardFrom("n1", split + 10);
    expect(contact.cutOff(self, three, split + 500)).toBe(self === "n9");
  }
});

afterEach(() => {
  vi.restoreAllMocks();
});

it("counts on the monotonic clock: a wall clock stepped back an hour does not keep a silent member in reach", async () => {
  const contact = new PeerContact(30);
  contact.heardFrom("n2");
  contact.heardFrom("n3");
  const wallClock = Date.now.bind(Date);
  contact.sent(heartbeats("n1", ["n2", "n3"]));
  // The wall clock steps back an hour once the heartbeats have left; n3 answers, n2 does not.
  vi.spyOn(Date, "now").mockImplementation(() => wallClock() - 3_600_000);
  contact.heardFrom("n3");
  await new Promise((resolve) => setTimeout(resolve, 60));
  expect(contact.outOfReach("n2")).toBe(true);
  expect(contact.outOfReach("n3")).toBe(false);
  expect(contact.cutOff("n1", three)).toBe(false);
  // The heard-from times are the same clock's: a stale read's bound compares them with it.
  expect(performance.now() - (contact.lastHeardFrom("n3") ?? 0)).toBeGreaterThanOrEqual(50);
});
