// The leader placement decision and the voter-spread check, on hand-made Raft views: who is handed
// leadership (a caught-up voter of the preferred region, the one with the most log), when (caught
// up at two checks in a row), how often a handover that did not take is tried again (backoff), and
// which regions hold a quorum.

import { describe, expect, it } from "vitest";
import type { RaftStatus } from "../../raft/core/index.js";
import { LeaderPlacement, placementTarget } from "../../server/leader-placement.js";
import { type MemberLocation, regionsHoldingQuorum } from "../../server/member-directory.js";

function locations(regions: Record<string, string>): Map<string, MemberLocation> {
  return new Map(Object.entries(regions).map(([id, region]) => [id, { region, zone: "" }]));
}

function status(partial: {
  id?: string;
  role?: string;
  commit?: number;
  match: Record<string, number>;
}): RaftStatus {
  const voters = ["n1", ...Object.keys(partial.match)];
  return {
    id: partial.id ?? "n1",
    role: (partial.role ?? "leader") as RaftStatus["role"],
    term: 3,
    vote: null,
    leader: partial.id ?? "n1",
    commit: partial.commit ?? 100,
    applied: partial.commit ?? 100,
    lastIndex: 100,
    firstIndex: 1,
    entriesInMemory: 0,
    entryBytesInMemory: 0,
    snapshotBytesInMemory: 0,
    membership: { voters, learners: [] },
    removed: false,
    leadTransferee: null,
    readsFromLease: 0,
    progress: new Map(
      Object.entries(partial.match).map(([id, match]) => [
        id,
        { match, next: match + 1, state: "replicate" },
      ]),
    ),
  };
}

const regions = locations({ n1: "us", n2: "eu", n3: "eu", n4: "ap" });
const everyoneCanLead = () => false;

describe("placementTarget", () => {
  it("picks the caught-up voter of the preferred region with the most log", () => {
    expect(
      placementTarget({
        status: status({ match: { n2: 100, n3: 100, n4: 100 } }),
        locations: regions,
        preferredRegion: "eu",
        cannotLead: everyoneCanLead,
      }),
    ).toBe("n2");
    expect(
      placementTarget({
        status: status({ match: { n2: 99, n3: 100, n4: 100 } }),
        locations: regions,
        preferredRegion: "eu",
        cannotLead: everyoneCanLead,
      }),
    ).toBe("n3");
    // n2 cannot take the leadership (sealed, or out of reach): the next one; none, if n3 cannot either.
    const caughtUp = {
      status: status({ match: { n2: 100, n3: 100, n4: 100 } }),
      locations: regions,
      preferredRegion: "eu",
    };
    expect(placementTarget({ ...caughtUp, cannotLead: (id) => id === "n2" })).toBe("n3");
    expect(placementTarget({ ...caughtUp, cannotLead: (id) => id !== "n4" })).toBeNull();
  });

  it("keeps the leader where it is when nothing there is caught up, it is there already, or it does not lead", () => {
    expect(
      placementTarget({
        status: status({ match: { n2: 90, n3: 99, n4: 100 } }),
        locations: regions,
        preferredRegion: "eu",
        cannotLead: everyoneCanLead,
      }),
    ).toBeNull();
    expect(
      placementTarget({
        status: status({ match: { n2: 100, n3: 100, n4: 100 } }),
        locations: regions,
        preferredRegion: "us",
        cannotLead: everyoneCanLead,
      }),
    ).toBeNull();
    expect(
      placementTarget({
        status: status({ role: "follower", match: { n2: 100 } }),
        locations: regions,
        preferredRegion: "eu",
        cannotLead: everyoneCanLead,
      }),
    ).toBeNull();
    expect(
      placementTarget({
        status: status({ match: { n2: 100 } }),
        locations: regions,
        preferredRegion: "",
        cannotLead: everyoneCanLead,
      }),
    ).toBeNull();
    expect(
      placementTarget({
        status: status({ match: { n2: 100 } }),
        locations: regions,
        preferredRegion: "mars",
        cannotLead: everyoneCanLead,
      }),
    ).toBeNull();
  });
});

describe("LeaderPlacement", () => {
  it("hands over only after two checks in a row, then backs off doubling while it does not take", () => {
    let now = 0;
    const transfers: string[] = [];
    let view = status({ match: { n2: 100, n3: 50, n4: 100 } });
    const placement = new LeaderPlacement(
      () => ({ status: view, locations: regions, preferredRegion: "eu", cannotLead: everyoneCanLead }),
      (target) => transfers.push(target),
      { onHandover: () => {}, onQuorumRegions: () => {} },
      () => now,
      1000,
    );
    expect(placement.check()).toBeNull(); // first sight of n2 caught up
    expect(placement.check()).toBe("n2");
    // It did not take (n2 is sealed, say): not again before the backoff, then again, then after twice as long.
    now = 999;
    expect(placement.check()).toBeNull();
    now = 1000;
    expect(placement.check()).toBe("n2");
    now = 2999;
    expect(placement.check()).toBeNull();
    now = 3000;
    expect(placement.check()).toBe("n2");
    // n2 falls behind: nothing; caught up again: two checks first.
    view = status({ match: { n2: 80, n3: 50, n4: 100 } });
    now = 100_000;
    expect(placement.check()).toBeNull();
    view = status({ match: { n2: 100, n3: 50, n4: 100 } });
    expect(placement.check()).toBeNull();
    expect(placement.check()).toBe("n2");
    expect(transfers).toEqual(["n2", "n2", "n2", "n2"]);
  });
});

describe("the voters' spread", () => {
  it("is said once per change, and only for voters over several regions", () => {
    let view = status({ match: { n2: 100, n3: 100 } });
    let spread = locations({ n1: "eu", n2: "eu", n3: "us" });
    const said: string[][] = [];
    const placement = new LeaderPlacement(
      () => ({ status: view, locations: spread, preferredRegion: "", cannotLead: everyoneCanLead }),
      () => {},
      { onHandover: () => {}, onQuorumRegions: (regions) => said.push([...regions]) },
    );
    placement.check();
    placement.check();
    expect(said).toEqual([["eu"]]);
    // Five voters, 2-2-1: nothing to say; one region only: nothing either.
    view = status({ match: { n2: 100, n3: 100, n4: 100, n5: 100 } });
    spread = locations({ n1: "eu", n2: "eu", n3: "us", n4: "us", n5: "ap" });
    placement.check();
    spread = locations({ n1: "eu", n2: "eu", n3: "eu", n4: "eu", n5: "eu" });
    placement.check();
    expect(said).toEqual([["eu"]]);
  });
});

describe("regionsHoldingQuorum", () => {
  it("names the regions whose loss loses the quorum", () => {
    const voters = ["a", "b", "c", "d", "e"];
    // 5 voters over 3 regions, 2-2-1: no single region's loss loses it.
    expect(regionsHoldingQuorum(voters, locations({ a: "eu", b: "eu", c: "us", d: "us", e: "ap" }))).toEqual(
      [],
    );
    // 3-1-1: losing eu leaves 2 of 5.
    expect(regionsHoldingQuorum(voters, locations({ a: "eu", b: "eu", c: "eu", d: "us", e: "ap" }))).toEqual([
      "eu",
    ]);
    // 3 voters over 2 regions: the region with two holds the quorum.
    expect(regionsHoldingQuorum(["a", "b", "c"], locations({ a: "eu", b: "eu", c: "us" }))).toEqual(["eu"]);
    // Voters without a region are not in any.
    expect(regionsHoldingQuorum(["a", "b", "c"], locations({ a: "", b: "", c: "us" }))).toEqual([]);
  });
});
