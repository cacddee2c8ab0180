// Telling a leadership change from a failure (server/leadership.ts): a leader's periodic tasks that
// a change of leader stopped are logged at info, not as warnings an SRE has to look into.

import { expect, it } from "vitest";
import { NotLeaderError, RaftError } from "../../raft/core/index.js";
import { RaftNodeError } from "../../raft/node/index.js";
import { leaderTaskFailure, lostLeadership } from "../../server/leadership.js";
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
