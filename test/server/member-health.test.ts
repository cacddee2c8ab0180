// What the leader says of a member's health, when it promotes a learner and when it refuses a
// change of the voters (server/member-health.ts), from made-up Raft statuses and answers: a learner
// must answer, replicate and be within the limit of the commit index; after a change of the
// voters a quorum of them must answer. Each refusal says why and what to do.

import { describe, expect, it } from "vitest";
import {
  type MemberContact,
  memberHealth,
  promotionRefusal,
  quorumRefusal,
} from "../../server/member-health.js";

const answering: MemberContact = { lastHeardAt: 10_000, outOfReach: false, sealed: false };

function statusWith(commit: number, progress: { match: number; state: string } | undefined) {
  const entries = new Map<string, { match: number; next: number; state: string }>();
  if (progress !== undefined) entries.set("n4", { ...progress, next: progress.match + 1 });
  return { commit, progress: entries };
}

describe("promotionRefusal", () => {
  it("takes a replicating learner within the limit, the limit itself included", () => {
    expect(promotionRefusal("n4", statusWith(500, { match: 500, state: "replicate" }), answering, 0)).toBe(
      null,
    );
    expect(
      promotionRefusal("n4", statusWith(1500, { match: 500, state: "replicate" }), answering, 1000),
    ).toBe(null);
    // A learner ahead of the commit index (it holds entries not yet committed) is not behind.
    expect(promotionRefusal("n4", statusWith(10, { match: 12, state: "replicate" }), answering, 0)).toBe(
      null,
    );
  });

  it("refuses a learner one entry past the limit, and says how far behind it is", () => {
    const refusal = promotionRefusal(
      "n4",
      statusWith(1501, { match: 500, state: "replicate" }),
      answering,
      1000,
    );
    expect(refusal).toMatchObject({
      code: "LEARNER_BEHIND",
      message:
        "n4 is 1001 entries behind the commit index (at most 1000 to promote it): let it catch up, then promote it",
    });
  });

  it("refuses a learner being probed or receiving a snapshot, however close its match index", () => {
    expect(promotionRefusal("n4", statusWith(20, { match: 20, state: "probe" }), answering, 1000)?.code).toBe(
      "LEARNER_BEHIND",
    );
    expect(
      promotionRefusal("n4", statusWith(9000, { match: 8900, state: "snapshot" }), answering, 1000)?.message,
    ).toBe(
      "n4 is 100 entries behind the commit index, receiving a snapshot (at most 1000 to promote it): let it catch up, then promote it",
    );
    // No progress at all (the leader has not started replicating to it).
    expect(promotionRefusal("n4", statusWith(3, undefined), answering, 1000)?.message).toBe(
      "n4 is 3 entries behind the commit index (at most 1000 to promote it): let it catch up, then promote it",
    );
  });

  it("refuses a learner never heard from or out of reach before looking at its log", () => {
    const caughtUp = statusWith(500, { match: 500, state: "replicate" });
    const unreachable =
      "n4 does not answer this leader (not started, down, or cut off): start it, or see its peer error in cluster members";
    for (const contact of [
      { ...answering, lastHeardAt: undefined },
      { ...answering, outOfReach: true },
    ]) {
      expect(promotionRefusal("n4", caughtUp, contact, 1000)).toMatchObject({
        code: "MEMBER_UNREACHABLE",
        message: unreachable,
      });
    }
  });

  it("promotes a sealed learner: a sealed voter replicates and votes", () => {
    const status = statusWith(500, { match: 500, state: "replicate" });
    expect(promotionRefusal("n4", status, { ...answering, sealed: true }, 1000)).toBe(null);
  });
});

describe("memberHealth", () => {
  it("gives the match index, the time since the last message and the flags", () => {
    const status = statusWith(700, { match: 650, state: "replicate" });
    expect(memberHealth("n4", status, { ...answering, sealed: true }, 10, 10_042)).toEqual({
      matchIndex: 650,
      lastContactMs: 42,
      unreachable: false,
      sealed: true,
      caughtUp: false,
    });
    expect(memberHealth("n4", status, answering, 50, 10_000)).toMatchObject({ caughtUp: true });
  });

  it("says -1 for a member never heard from, and never a negative time for one heard just now", () => {
    const status = statusWith(0, undefined);
    expect(memberHealth("n4", status, { ...answering, lastHeardAt: undefined }, 10, 5)).toMatchObject({
      matchIndex: 0,
      lastContactMs: -1,
      caughtUp: false,
    });
    // The clock read before the message's time was taken: 0, not -3.
    expect(memberHealth("n4", status, answering, 10, 9_997).lastContactMs).toBe(0);
  });

  it("gives whole milliseconds from the monotonic clock's fractions (Members' int64 field)", () => {
    const status = statusWith(700, { match: 650, state: "replicate" });
    const heard = { ...answering, lastHeardAt: 10_000.25 };
    expect(memberHealth("n4", status, heard, 10, 10_042.9).lastContactMs).toBe(43);
    expect(memberHealth("n4", status, heard, 10, 10_000.5).lastContactMs).toBe(0);
  });
});

describe("quorumRefusal", () => {
  const voters = ["n1", "n2", "n3"];
  const allBut =
    (...silent: string[]) =>
    (voter: string) =>
      !silent.includes(voter);

  it("lets any change through while every voter answers, and learners' changes always", () => {
    for (const kind of ["addVoter", "addLearner", "removeNode"] as const)
      expect(quorumRefusal({ kind, node: kind === "removeNode" ? "n3" : "n4" }, voters, allBut()), kind).toBe(
        null,
      );
    expect(quorumRefusal({ kind: "addLearner", node: "n4" }, voters, allBut("n2", "n3"))).toBe(null);
  });

  it("refuses to remove a voter that answers while another is down, and says which do not answer", () => {
    expect(quorumRefusal({ kind: "removeNode", node: "n2" }, voters, allBut("n3"))).toMatchObject({
      code: "QUORUM_AT_RISK",
      message:
        "removing n2 would leave 1 of 2 voters answering the leader, fewer than the 2 a quorum needs (not answering: n3): bring them back, or remove the ones that are gone, first",
    });
    // Removing the one that is down is how the cluster gets well again.
    expect(quorumRefusal({ kind: "removeNode", node: "n3" }, voters, allBut("n3"))).toBe(null);
    // Five voters, two down: removing a third that answers leaves 2 of 4.
    const five = ["n1", "n2", "n3", "n4", "n5"];
    expect(quorumRefusal({ kind: "removeNode", node: "n3" }, five, allBut("n4", "n5"))?.code).toBe(
      "QUORUM_AT_RISK",
    );
    expect(quorumRefusal({ kind: "removeNode", node: "n5" }, five, allBut("n4", "n5"))).toBe(null);
  });

  it("refuses a new voter that does not answer while a voter is down, but not a caught-up learner's promotion", () => {
    // AddMember with voter: the new node has not started, so it does not answer: 2 of 4.
    expect(quorumRefusal({ kind: "addVoter", node: "n4" }, voters, allBut("n3", "n4"))?.message).toBe(
      "making n4 a voter would leave 2 of 4 voters answering the leader, fewer than the 3 a quorum needs (not answering: n3, n4): bring them back, or remove the ones that are gone, first",
    );
    // A learner that answers, promoted: 3 of 4.
    expect(quorumRefusal({ kind: "addVoter", node: "n4" }, voters, allBut("n3"))).toBe(null);
  });

  it("lets a single voter grow to two, and leaves the core's refusals to the core", () => {
    expect(quorumRefusal({ kind: "addVoter", node: "n2" }, ["n1"], allBut("n2"))).toBe(null);
    // Already a voter, or the last voter removed: the Raft core refuses these with its own words.
    expect(quorumRefusal({ kind: "addVoter", node: "n2" }, voters, allBut("n2", "n3"))).toBe(null);
    expect(quorumRefusal({ kind: "removeNode", node: "n1" }, ["n1"], allBut())).toBe(null);
  });
});
