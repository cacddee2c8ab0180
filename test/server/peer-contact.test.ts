// PeerContact: a node is cut off when it heard from other members before and, lately, from too
// few voters to make a quorum with itself - then a call waiting for a leader gives up at once
// (NO_LEADER, "ask another node") instead of waiting out its leader wait where no leader it could
// follow can be elected: alone, or on the minority side of a partition. A node that has heard from
// nobody yet (starting, or the first of a new cluster) is not cut off: it waits for a leader.

import { expect, it } from "vitest";
import { PeerContact } from "../../server/peer-contact.js";

const three = ["n1", "n2", "n3"];
const five = ["n1", "n2", "n3", "n4", "n5"];

it("is cut off after hearing from members before and, lately, from too few for a quorum", () => {
  const contact = new PeerContact(400);
  const now = Date.now();
  // Starting: heard from nobody yet.
  expect(contact.cutOff("n1", three, now + 10_000)).toBe(false);
  contact.heardFrom("n2");
  contact.heardFrom("n3");
  expect(contact.cutOff("n1", three, now + 100)).toBe(false);
  // Silence from everyone: alone.
  expect(contact.cutOff("n1", three, Date.now() + 401)).toBe(true);
  // One other voter of three heard lately: a quorum with itself.
  contact.heardFrom("n3");
  expect(contact.cutOff("n1", three, Date.now() + 200)).toBe(false);
  expect(contact.lastHeardFrom("n3")).toBeGreaterThanOrEqual(now);
  expect(contact.lastHeardFrom("n9")).toBeUndefined();
});

it("on the minority side of a partition of five it is cut off, on the majority side it is not", () => {
  const minority = new PeerContact(400);
  const majority = new PeerContact(400);
  const split = Date.now();
  for (const peer of ["n2", "n3", "n4", "n5"]) {
    minority.heardFrom(peer, split - 50);
    majority.heardFrom(peer, split - 50);
  }
  // After the split, n1 still hears n2 (2 of 5); n3 still hears n4 and n5 (3 of 5).
  minority.heardFrom("n2", split + 500);
  majority.heardFrom("n4", split + 500);
  majority.heardFrom("n5", split + 500);
  expect(minority.cutOff("n1", five, split + 300)).toBe(false);
  expect(minority.cutOff("n1", five, split + 600)).toBe(true);
  expect(majority.cutOff("n3", five, split + 600)).toBe(false);
  // A learner (not a voter) does not count itself.
  expect(majority.cutOff("n9", five, split + 600)).toBe(true);
});
