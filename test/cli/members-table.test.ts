// `cluster members` as text: the leader's view with each member's health (the first that holds of
// unreachable, sealed, behind; else ok), entries behind its commit index and last contact; and a
// follower's view, whose health columns are empty and whose last line says why it is not the
// leader's. The command's path to the leader runs against real nodes in commands.test.ts.

import { expect, it } from "vitest";
import { membersViewTable } from "../../cli/cluster-commands.js";
import { Member, type MembersResponse } from "../../proto/gen/strongroom/v1/cluster.gen.js";

function member(id: string, fields: Partial<Member>): Member {
  return {
    // Every field at its default, as a decoded message without it has.
    ...Member.fromJSON({}),
    nodeId: id,
    voter: true,
    peerAddress: `10.0.0.${id.slice(1)}:8201`,
    clientAddress: `10.0.0.${id.slice(1)}:8200`,
    ...fields,
  };
}

const members = [
  member("n1", { leader: true, matchIndex: 120, caughtUp: true }),
  member("n2", { matchIndex: 100, lastContactMs: 12, caughtUp: true }),
  member("n3", { matchIndex: 100, lastContactMs: 30, sealed: true, caughtUp: true }),
  // Sealed and out of reach: what it said last may no longer hold, so unreachable wins.
  member("n4", { voter: false, matchIndex: 40, lastContactMs: 2500, unreachable: true, sealed: true }),
  member("n5", { voter: false, matchIndex: 90, lastContactMs: 20 }),
  member("n6", { voter: false, lastContactMs: -1, connectionError: "n6 refuses connections" }),
];

it("shows the leader's view: health, entries behind, last contact", () => {
  const view: MembersResponse = { members, answeredBy: "n1", leaderView: true, commitIndex: 110 };
  expect(membersViewTable(view, "").split("\n")).toEqual([
    "member  role     health       behind  last contact  client address  peer address   region/zone  peer error",
    "n1      leader   ok           0       -             10.0.0.1:8200   10.0.0.1:8201  -            -",
    "n2      voter    ok           10      12 ms         10.0.0.2:8200   10.0.0.2:8201  -            -",
    "n3      voter    sealed       10      30 ms         10.0.0.3:8200   10.0.0.3:8201  -            -",
    "n4      learner  unreachable  70      2500 ms       10.0.0.4:8200   10.0.0.4:8201  -            -",
    "n5      learner  behind       20      20 ms         10.0.0.5:8200   10.0.0.5:8201  -            -",
    "n6      learner  unreachable  110     never         10.0.0.6:8200   10.0.0.6:8201  -            n6 refuses connections",
    "as the leader n1 sees it (commit index 110)",
    "",
  ]);
});

it("shows a follower's view without health, and says why it is not the leader's", () => {
  const zeroed = members.map((entry) =>
    member(entry.nodeId, {
      voter: entry.voter,
      leader: entry.leader,
      connectionError: entry.connectionError,
    }),
  );
  const view: MembersResponse = { members: zeroed, answeredBy: "n2", leaderView: false, commitIndex: 110 };
  const lines = membersViewTable(view, "the leader n1 did not answer: connection refused").split("\n");
  expect(lines[1]).toBe(
    "n1      leader   -       -       -             10.0.0.1:8200   10.0.0.1:8201  -            -",
  );
  expect(lines[7]).toBe(
    "as n2 sees it: only the leader knows the members' health (the leader n1 did not answer: connection refused)",
  );
});
