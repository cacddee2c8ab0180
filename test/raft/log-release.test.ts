// The core holds an entry's data in memory only while it may need it there: until it is persisted
// and applied and, on a leader, every follower acknowledged it (within followerCatchUpBytesMax).
// Older entries are read back from the log store for a follower that lags. These tests check the
// bound, that a lagging follower still gets every entry (read back), and that a log store answering
// the wrong entry is caught.

import { describe, expect, it } from "vitest";
import { type PersistentState, RaftCore, SeededRandom, validateRaftConfig } from "../../raft/core/index.js";
import { ScenarioCluster, text } from "./scenario-cluster.js";

const memory = (cluster: ScenarioCluster, id: string) => {
  const status = cluster.core(id).status();
  return { entries: status.entriesInMemory, bytes: status.entryBytesInMemory };
};

/** A log of three committed entries of term 2, "e1" to "e3". */
function threeCommittedEntries(): PersistentState {
  return {
    hardState: { term: 2, vote: null, commit: 3 },
    snapshot: null,
    offset: { index: 0, term: 0 },
    entries: [1, 2, 3].map((index) => ({
      index,
      term: 2,
      type: "normal" as const,
      data: text(`e${index}`),
    })),
  };
}

describe("entries held in memory", () => {
  it("are let go of on every node once persisted, applied and acknowledged by every follower", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    for (let i = 0; i < 30; i++) cluster.propose("n1", `value-${i}`);
    cluster.stabilize();
    // A heartbeat round: the leader's advance after the last acknowledgements lets go of them.
    cluster.settle(2);
    for (const id of ["n1", "n2", "n3"]) {
      expect(memory(cluster, id), id).toEqual({ entries: 0, bytes: 0 });
      expect(cluster.core(id).status().lastIndex).toBeGreaterThanOrEqual(33);
    }
    // What is let go of in memory is still the log: read back from the disk.
    const disk = cluster.node("n2").disk;
    const read = cluster.core("n2").entryAt(20);
    expect(read).toEqual(disk.entries[20 - disk.offset.index - 1]);
    expect(new TextDecoder().decode(read?.data)).toMatch(/^value-\d+$/);
  });

  it("a leader keeps at most followerCatchUpBytesMax for a follower that stopped answering, and sends it the rest read back from its disk", () => {
    const cluster = ScenarioCluster.create(3, { config: { followerCatchUpBytesMax: 100 } });
    cluster.elect("n1");
    cluster.crash("n3");
    const values = Array.from({ length: 60 }, (_, i) => `value-${String(i).padStart(3, "0")}`);
    for (const value of values) {
      cluster.propose("n1", value);
      cluster.stabilize();
    }
    cluster.settle(2);
    // 60 entries of 9 bytes are committed and applied; n3 has none of them.
    const held = memory(cluster, "n1");
    expect(held.bytes).toBeLessThanOrEqual(100);
    expect(held.entries).toBeLessThanOrEqual(Math.floor(100 / 9));
    expect(held.entries).toBeGreaterThan(0);
    expect(memory(cluster, "n2")).toEqual({ entries: 0, bytes: 0 });

    cluster.restart("n3");
    cluster.settle(5);
    expect(cluster.node("n3").applied).toEqual(cluster.node("n1").applied);
    expect(cluster.node("n3").applied.slice(-60)).toEqual(values);
    expect(memory(cluster, "n1")).toEqual({ entries: 0, bytes: 0 });
  });

  it("by default a leader keeps a stopped follower's entries (well within 8 MiB) and lets them go once it caught up", () => {
    const cluster = ScenarioCluster.create(3);
    cluster.elect("n1");
    cluster.crash("n3");
    for (let i = 0; i < 40; i++) cluster.propose("n1", `value-${i}`);
    cluster.settle(2);
    expect(memory(cluster, "n1").entries).toBeGreaterThanOrEqual(40);
    expect(memory(cluster, "n2").entries).toBe(0);
    cluster.restart("n3");
    cluster.settle(5);
    expect(cluster.node("n3").applied).toEqual(cluster.node("n1").applied);
    expect(memory(cluster, "n1").entries).toBe(0);
  });

  it("a log store that answers another entry than the one asked for stops the core with the indexes", () => {
    const state = threeCommittedEntries();
    const core = new RaftCore({ id: "n1", random: new SeededRandom(1) }, state, {
      applied: 3,
      stableEntries: {
        readEntries: (low) => [{ index: low, term: 1, type: "normal", data: text("stale") }],
      },
    });
    // A follower with everything applied and persisted holds nothing.
    expect(core.status().entriesInMemory).toBe(0);
    expect(() => core.entryAt(2)).toThrowError(/answered entry 2 \(term 1\) for 2 \(term 2\)/);
  });

  it("without a log store to read from, the core holds every entry", () => {
    const state = threeCommittedEntries();
    const core = new RaftCore({ id: "n1", random: new SeededRandom(1) }, state, { applied: 3 });
    expect(core.status()).toMatchObject({ entriesInMemory: 3, entryBytesInMemory: 6 });
  });

  it("starts from a log whose applied entries the store left on disk, reading them back when asked; refuses one it could not read or had not applied", () => {
    const all = threeCommittedEntries();
    const leftOnDisk: PersistentState = {
      ...all,
      notLoaded: { terms: [2, 2], dataBytes: [2, 2] },
      entries: all.entries.slice(2),
    };
    const asked: number[] = [];
    const core = new RaftCore({ id: "n1", random: new SeededRandom(1) }, leftOnDisk, {
      applied: 3,
      stableEntries: {
        readEntries: (low, high) => {
          asked.push(low);
          return all.entries.slice(low - 1, high - 1);
        },
      },
    });
    expect(core.status()).toMatchObject({ firstIndex: 1, lastIndex: 3, applied: 3, commit: 3 });
    expect(core.entryAt(1)).toEqual(all.entries[0]);
    expect(asked).toContain(1);
    expect(
      () => new RaftCore({ id: "n1", random: new SeededRandom(1) }, leftOnDisk, { applied: 3 }),
    ).toThrowError(
      /entries through 2 were not loaded, but they are not applied \(3\) or cannot be read back/,
    );
    expect(
      () =>
        new RaftCore({ id: "n1", random: new SeededRandom(1) }, leftOnDisk, {
          applied: 1,
          stableEntries: { readEntries: (low, high) => all.entries.slice(low - 1, high - 1) },
        }),
    ).toThrowError(/entries through 2 were not loaded, but they are not applied \(1\)/);
  });

  it("followerCatchUpBytesMax may be 0 (read every lagging entry back) but not negative or fractional", () => {
    const random = new SeededRandom(1);
    expect(validateRaftConfig({ id: "n1", random, followerCatchUpBytesMax: 0 }).followerCatchUpBytesMax).toBe(
      0,
    );
    expect(() => validateRaftConfig({ id: "n1", random, followerCatchUpBytesMax: -1 })).toThrowError(
      "raft config: followerCatchUpBytesMax must be a non-negative integer, got -1",
    );
    expect(() => validateRaftConfig({ id: "n1", random, followerCatchUpBytesMax: 1.5 })).toThrowError(
      /followerCatchUpBytesMax must be a non-negative integer/,
    );
  });
});
