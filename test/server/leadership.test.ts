// Telling a leadership change from a failure (server/leadership.ts): a leader's periodic tasks that
// a change of leader stopped are logged at info, not as warnings an SRE has to look into. And whom
// a leader may hand the leadership to.

import { expect, it } from "vitest";
import { NotLeaderError, RaftError, type RaftStatus } from "../../raft/core/index.js";
import { RaftNodeError } from "../../raft/node/index.js";
import { leadershipCandidates, leaderTaskFailure, lostLeadership } from "../../server/leadership.js";
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
