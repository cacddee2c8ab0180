// The contract every LogStore must keep, as a suite any implementation runs against itself: the
// in-memory store here, the LevelDB store in the storage issue. `open` returns a store over the
// same persistent location each time it is called with the same `location`, so "durable across a
// restart" can be tested.

import { describe, expect, it } from "vitest";
import type { Entry, HardState, Snapshot, StoredSnapshot } from "../../raft/core/index.js";
import type { LogStore } from "../../raft/node/index.js";
import { snapshotData } from "../support/snapshot-data.js";

export interface LogStoreFactory {
  /** A fresh, empty location for one test. */
  newLocation(): Promise<string>;
  open(location: string): Promise<LogStore>;
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const entry = (index: number, term: number, text = `e${index}t${term}`): Entry => ({
  index,
  term,
  type: "normal",
  data: bytes(text),
});
const range = (from: number, to: number, term: number): Entry[] =>
  Array.from({ length: to - from + 1 }, (_, i) => entry(from + i, term));
const snapshotAt = (index: number, term: number): Snapshot => ({
  // With a removed node: the ids removed so far are kept with the snapshot.
  meta: { index, term, membership: { voters: ["n1", "n2", "n3"], learners: [], removed: ["n4"] } },
  data: bytes(`state@${index}`),
});

/** A loaded snapshot with its bytes, whether the store loads it with its data or as stored. */
async function withData(
  store: LogStore,
  snapshot: Snapshot | StoredSnapshot | null,
): Promise<Snapshot | null> {
  const data = await snapshotData(store, snapshot);
  return snapshot === null || data === null ? null : { meta: snapshot.meta, data };
}

export function logStoreConformance(name: string, factory: LogStoreFactory): void {
  describe(`LogStore conformance: ${name}`, () => {
    const reopen = async (location: string, store: LogStore): Promise<LogStore> => {
      await store.close();
      return factory.open(location);
    };

    it("an empty store loads as term 0, no snapshot, no entries", async () => {
      const store = await factory.open(await factory.newLocation());
      expect(await store.load()).toEqual({
        hardState: { term: 0, vote: null, commit: 0 },
        snapshot: null,
        offset: { index: 0, term: 0 },
        entries: [],
      });
      await store.close();
    });

    it("keeps appended entries and the hard state across a restart", async () => {
      const location = await factory.newLocation();
      let store = await factory.open(location);
      const hardState: HardState = { term: 2, vote: "n1", commit: 3 };
      await store.append(range(1, 5, 2), hardState);
      store = await reopen(location, store);
      const state = await store.load();
      expect(state.hardState).toEqual(hardState);
      expect(state.entries).toEqual(range(1, 5, 2));
      await store.close();
    });

    it("an append from an index replaces every stored entry from there on (conflict truncation)", async () => {
      const location = await factory.newLocation();
      let store = await factory.open(location);
      await store.append(range(1, 10, 1), null);
      await store.append([entry(6, 2), entry(7, 2)], { term: 2, vote: null, commit: 5 });
      store = await reopen(location, store);
      const state = await store.load();
      expect(state.entries).toEqual([...range(1, 5, 1), entry(6, 2), entry(7, 2)]);
      await store.close();
    });

    it("a hard state written without entries is stored like any other", async () => {
      const location = await factory.newLocation();
      let store = await factory.open(location);
      await store.append(range(1, 3, 1), { term: 1, vote: "n1", commit: 1 });
      await store.append([], { term: 1, vote: "n1", commit: 3 });
      store = await reopen(location, store);
      expect((await store.load()).hardState).toEqual({ term: 1, vote: "n1", commit: 3 });
      await store.close();
    });

    it("reads stored entries back synchronously, within a byte limit but at least one, and refuses a read outside the log", async () => {
      const location = await factory.newLocation();
      let store = await factory.open(location);
      await store.append(range(1, 10, 1), null);
      await store.append([entry(8, 2), entry(9, 2)], { term: 2, vote: null, commit: 7 });
      store = await reopen(location, store);
      await store.load();
      expect(store.readEntries(6, 10, 1_000)).toEqual([entry(6, 1), entry(7, 1), entry(8, 2), entry(9, 2)]);
      // Each entry is 4 bytes ("e6t1"): 10 bytes take two, and a limit below one entry still gives one.
      expect(store.readEntries(2, 9, 10)).toEqual([entry(2, 1), entry(3, 1)]);
      expect(store.readEntries(5, 9, 0)).toEqual([entry(5, 1)]);
      await store.saveSnapshot(snapshotAt(4, 1));
      await store.compact({ index: 4, term: 1 });
      expect(() => store.readEntries(4, 6, 1_000)).toThrowError(/outside/);
      expect(() => store.readEntries(9, 11, 1_000)).toThrowError(/outside/);
      expect(store.readEntries(5, 6, 1_000)).toEqual([entry(5, 1)]);
      await store.close();
    });

    it("a hard state alone (no entries) is stored", async () => {
      const store = await factory.open(await factory.newLocation());
      await store.append(range(1, 2, 1), null);
      await store.append([], { term: 7, vote: null, commit: 2 });
      expect((await store.load()).hardState).toEqual({ term: 7, vote: null, commit: 2 });
      await store.close();
    });

    it("refuses an append that would leave a gap, and changes nothing", async () => {
      const store = await factory.open(await factory.newLocation());
      await store.append(range(1, 3, 1), { term: 1, vote: null, commit: 1 });
      await expect(store.append([entry(5, 1)], { term: 9, vote: null, commit: 9 })).rejects.toThrow(/gap/);
      const state = await store.load();
      expect(state.entries).toEqual(range(1, 3, 1));
      expect(state.hardState.term).toBe(1);
      await store.close();
    });

    it("a saved snapshot and a compaction behind it survive a restart", async () => {
      const location = await factory.newLocation();
      let store = await factory.open(location);
      await store.append(range(1, 10, 1), { term: 1, vote: null, commit: 10 });
      await store.saveSnapshot(snapshotAt(8, 1));
      await store.compact({ index: 6, term: 1 });
      store = await reopen(location, store);
      const state = await store.load();
      expect(await withData(store, state.snapshot)).toEqual(snapshotAt(8, 1));
      expect(state.offset).toEqual({ index: 6, term: 1 });
      expect(state.entries).toEqual(range(7, 10, 1));
      await store.close();
    });

    it("a snapshot saved beyond the stored commit index raises it there, across a restart", async () => {
      const location = await factory.newLocation();
      let store = await factory.open(location);
      // The core writes a new commit index only beside other writes, so the stored one may lag
      // what the node applied and snapshots; a snapshot holds only committed entries.
      await store.append(range(1, 10, 1), { term: 1, vote: "n1", commit: 6 });
      await store.saveSnapshot(snapshotAt(8, 1));
      store = await reopen(location, store);
      expect((await store.load()).hardState).toEqual({ term: 1, vote: "n1", commit: 8 });
      // A snapshot below the stored commit index leaves it where it is.
      await store.append([], { term: 1, vote: "n1", commit: 10 });
      await store.saveSnapshot(snapshotAt(9, 1));
      expect((await store.load()).hardState.commit).toBe(10);
      await store.close();
    });

    it("a snapshot staged from its parts is saved by what the stage answered; one never staged is refused", async () => {
      const location = await factory.newLocation();
      let store = await factory.open(location);
      await store.append(range(1, 10, 1), { term: 1, vote: null, commit: 10 });
      const whole = snapshotAt(8, 1);
      async function* parts(): AsyncGenerator<Uint8Array> {
        yield whole.data.subarray(0, 3);
        yield whole.data.subarray(3, 3);
        yield whole.data.subarray(3);
      }
      const stored = await store.stageSnapshot(whole.meta, parts());
      expect(stored).toEqual({ meta: whole.meta, totalBytes: whole.data.length });
      // Staged is not saved: a restart before the save finds no snapshot.
      await expect(store.saveSnapshot({ meta: snapshotAt(9, 1).meta, totalBytes: 7 })).rejects.toThrow(
        /save of the snapshot at 9.*which was not staged/,
      );
      await store.saveSnapshot(stored);
      expect(store.readSnapshotChunk(whole.meta, 0, whole.data.length)).toEqual(whole.data);
      store = await reopen(location, store);
      expect(await withData(store, (await store.load()).snapshot)).toEqual(whole);
      await store.close();
    });

    it("reads the newest snapshot and the one before it a chunk at a time, after a restart the newest", async () => {
      const location = await factory.newLocation();
      let store = await factory.open(location);
      await store.append(range(1, 30, 1), { term: 1, vote: null, commit: 30 });
      const text = (chunk: Uint8Array) => new TextDecoder().decode(chunk);
      const first = snapshotAt(10, 1);
      await store.saveSnapshot(first);
      // "state@10": bytes 2 to 5 are "ate@".
      expect(text(store.readSnapshotChunk(first.meta, 2, 4))).toBe("ate@");
      const second = snapshotAt(20, 1);
      await store.saveSnapshot(second);
      // The core reads the one before until compact() hands it the newest.
      expect(text(store.readSnapshotChunk(first.meta, 0, first.data.length))).toBe("state@10");
      expect(text(store.readSnapshotChunk(second.meta, 6, 2))).toBe("20");
      const third = snapshotAt(25, 1);
      await store.saveSnapshot(third);
      expect(() => store.readSnapshotChunk(first.meta, 0, 1)).toThrow(/snapshot at 10 .*does not hold/);
      expect(text(store.readSnapshotChunk(second.meta, 0, 5))).toBe("state");
      expect(() => store.readSnapshotChunk(third.meta, 4, 5)).toThrow(/bytes \[4, 9\) of the snapshot at 25/);
      expect(() => store.readSnapshotChunk({ ...third.meta, term: 2 }, 0, 1)).toThrow(/does not hold/);
      store = await reopen(location, store);
      await store.load();
      expect(text(store.readSnapshotChunk(third.meta, 0, third.data.length))).toBe("state@25");
      await store.close();
    });

    it("a snapshot installed from the leader is read back a chunk at a time", async () => {
      const store = await factory.open(await factory.newLocation());
      await store.append(range(1, 4, 1), { term: 1, vote: null, commit: 2 });
      const installed = snapshotAt(40, 3);
      await store.installSnapshot(installed);
      expect(new TextDecoder().decode(store.readSnapshotChunk(installed.meta, 6, 2))).toBe("40");
      await store.close();
    });

    it("receives a leader's snapshot a chunk at a time, reads it back once whole, installs it, and keeps it across a restart", async () => {
      const location = await factory.newLocation();
      let store = await factory.open(location);
      await store.append(range(1, 4, 1), { term: 1, vote: null, commit: 2 });
      const sent = snapshotAt(40, 3); // "state@40"
      const total = sent.data.length;
      // A reception cut short, then one from offset 0 again, which replaces it.
      store.receiveSnapshotChunk(sent.meta, total, 0, sent.data.subarray(0, 3));
      store.receiveSnapshotChunk(sent.meta, total, 0, sent.data.subarray(0, 2));
      expect(() => store.receiveSnapshotChunk(sent.meta, total, 5, sent.data.subarray(5))).toThrow(
        /out of order/,
      );
      // Not whole yet: neither readable nor installable.
      expect(() => store.readSnapshotChunk(sent.meta, 0, 1)).toThrow(/does not hold/);
      await expect(store.installSnapshot({ meta: sent.meta, totalBytes: total })).rejects.toThrow(
        /which was not received whole/,
      );
      store.receiveSnapshotChunk(sent.meta, total, 2, sent.data.subarray(2, 6));
      store.receiveSnapshotChunk(sent.meta, total, 6, sent.data.subarray(6));
      // Whole: readable before it is installed (the node may lead by then).
      expect(new TextDecoder().decode(store.readSnapshotChunk(sent.meta, 0, total))).toBe("state@40");
      await expect(store.installSnapshot({ meta: sent.meta, totalBytes: total + 1 })).rejects.toThrow(
        /which was not received whole/,
      );
      await store.installSnapshot({ meta: sent.meta, totalBytes: total });
      expect(new TextDecoder().decode(store.readSnapshotChunk(sent.meta, 6, 2))).toBe("40");
      store = await reopen(location, store);
      const state = await store.load();
      expect(await withData(store, state.snapshot)).toEqual(sent);
      expect(state.entries).toEqual([]);
      expect(state.hardState.commit).toBe(40);
      // A reception unfinished when the store closes is gone with the process.
      const next = snapshotAt(50, 3);
      store.receiveSnapshotChunk(next.meta, next.data.length, 0, next.data.subarray(0, 4));
      store = await reopen(location, store);
      await store.load();
      expect(() => store.receiveSnapshotChunk(next.meta, next.data.length, 4, next.data.subarray(4))).toThrow(
        /out of order/,
      );
      await store.close();
    });

    it("refuses to compact beyond the snapshot, or with the wrong term", async () => {
      const store = await factory.open(await factory.newLocation());
      await store.append(range(1, 10, 1), null);
      await store.saveSnapshot(snapshotAt(5, 1));
      await expect(store.compact({ index: 6, term: 1 })).rejects.toThrow(/beyond the snapshot/);
      await expect(store.compact({ index: 4, term: 9 })).rejects.toThrow(/term/);
      expect((await store.load()).entries).toHaveLength(10);
      await store.close();
    });

    it("refuses an append into the compacted part of the log", async () => {
      const store = await factory.open(await factory.newLocation());
      await store.append(range(1, 10, 1), null);
      await store.saveSnapshot(snapshotAt(5, 1));
      await store.compact({ index: 5, term: 1 });
      await expect(store.append([entry(3, 2)], null)).rejects.toThrow(/compacted/);
      await store.close();
    });

    it("installing a snapshot from the leader replaces the whole log", async () => {
      const location = await factory.newLocation();
      let store = await factory.open(location);
      await store.append(range(1, 4, 1), { term: 1, vote: null, commit: 2 });
      await store.installSnapshot(snapshotAt(20, 3));
      await store.append([entry(21, 3)], null);
      store = await reopen(location, store);
      const state = await store.load();
      expect(await withData(store, state.snapshot)).toEqual(snapshotAt(20, 3));
      expect(state.offset).toEqual({ index: 20, term: 3 });
      expect(state.entries).toEqual([entry(21, 3)]);
      expect(state.hardState.commit).toBe(20);
      await store.close();
    });

    it("refuses to replace a snapshot by an older one", async () => {
      const store = await factory.open(await factory.newLocation());
      await store.append(range(1, 10, 1), null);
      await store.saveSnapshot(snapshotAt(8, 1));
      await expect(store.saveSnapshot(snapshotAt(4, 1))).rejects.toThrow(/older/);
      await store.close();
    });

    it("refuses to be used after close", async () => {
      const store = await factory.open(await factory.newLocation());
      await store.close();
      await expect(store.load()).rejects.toThrow(/closed/);
    });
  });
}
