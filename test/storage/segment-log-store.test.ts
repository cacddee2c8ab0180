// The segment log store's own promises, on a real disk: segments start and compacted ones are
// deleted as the log moves on; a record torn by a crash (the last one, zeros after it) is dropped
// and overwritten, while damage anywhere else is refused naming the file and the byte (a segment is
// read through a window, so records and zeros across its edges are read as whole ones); a segment
// file gone is a gap, never a silently shorter log; a segment a crash left without its state
// record gets one; an older node's LevelDB log is copied whole; a load leaves on disk the entries
// its caller applied.

import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Entry } from "../../raft/core/index.js";
import { LevelLogStore } from "../../storage/raft-log/level-log-store.js";
import { SegmentLogStore } from "../../storage/raft-log/segment-log-store.js";
import { decodeRecord, segmentMagic } from "../../storage/raft-log/segment-records.js";
import { snapshotData } from "../support/snapshot-data.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-segments-"));
let stores = 0;
afterAll(() => rmSync(root, { recursive: true, force: true }));

const membership = { voters: ["n1", "n2", "n3"], learners: [] };
const entry = (index: number, term = 1, bytes = 100): Entry => ({
  index,
  term,
  type: "normal",
  data: new Uint8Array(bytes).fill(index % 251),
});
const range = (from: number, to: number, term = 1): Entry[] =>
  Array.from({ length: to - from + 1 }, (_, i) => entry(from + i, term));

const segmentFiles = (directory: string) => readdirSync(directory).filter((name) => name.endsWith(".seg"));

/** Where each record of a segment file starts, read with the store's own decoder. */
function recordStarts(path: string): number[] {
  const bytes = new Uint8Array(readFileSync(path));
  const starts: number[] = [];
  let position = segmentMagic.length;
  for (;;) {
    const record = decodeRecord(bytes, position);
    if (record.kind !== "append" && record.kind !== "state") return starts;
    starts.push(position);
    position += record.bytes;
  }
}

async function storeWith(entries: Entry[], segmentBytes = 4096): Promise<string> {
  const directory = join(root, `store-${++stores}`);
  const store = await SegmentLogStore.open(directory, { segmentBytes });
  for (const one of entries) await store.append([one], { term: one.term, vote: "n1", commit: 0 });
  await store.close();
  return directory;
}

describe("SegmentLogStore", () => {
  it("starts segments as the log grows and deletes those a compaction leaves behind", async () => {
    const directory = await storeWith(range(1, 200));
    // 200 records of about 130 bytes in 4 KiB segments.
    expect(segmentFiles(directory).length).toBeGreaterThanOrEqual(6);
    let store = await SegmentLogStore.open(directory, { segmentBytes: 4096 });
    const snapshot = { meta: { index: 180, term: 1, membership }, data: new Uint8Array(64).fill(9) };
    await store.saveSnapshot(snapshot);
    await store.compact({ index: 180, term: 1 });
    expect(segmentFiles(directory).length).toBeLessThanOrEqual(2);
    await store.close();
    store = await SegmentLogStore.open(directory, { segmentBytes: 4096 });
    const state = await store.load();
    expect(state.offset).toEqual({ index: 180, term: 1 });
    expect(state.entries).toEqual(range(181, 200));
    expect(state.hardState).toEqual({ term: 1, vote: "n1", commit: 180 });
    expect(await snapshotData(store, state.snapshot)).toEqual(snapshot.data);
    // Read back from the files, as for a follower that lags.
    expect(store.readEntries(181, 201, 1 << 20)).toEqual(range(181, 200));
    await store.close();
  });

  it("reads back the entries of the record that replaced them, not the ones replaced", async () => {
    const directory = await storeWith(range(1, 30));
    let store = await SegmentLogStore.open(directory, { segmentBytes: 4096 });
    await store.append(range(20, 25, 2), { term: 2, vote: "n2", commit: 10 });
    expect(store.readEntries(18, 26, 1 << 20)).toEqual([...range(18, 19), ...range(20, 25, 2)]);
    await store.close();
    store = await SegmentLogStore.open(directory, { segmentBytes: 4096 });
    const state = await store.load();
    expect(state.entries).toEqual([...range(1, 19), ...range(20, 25, 2)]);
    expect(store.readEntries(24, 26, 1 << 20)).toEqual(range(24, 25, 2));
    await store.close();
  });

  it("loads the entries from dataFrom with their data and leaves those before it on disk: terms and sizes", async () => {
    const directory = await storeWith([...range(1, 30), ...range(31, 40, 2)]);
    const store = await SegmentLogStore.open(directory, { segmentBytes: 4096 });
    await store.append([entry(41, 2, 3000)], { term: 2, vote: "n1", commit: 41 });
    const state = await store.load({ dataFrom: 36 });
    expect(state.notLoaded?.terms).toEqual([...Array(30).fill(1), ...Array(5).fill(2)]);
    expect(state.notLoaded?.dataBytes).toEqual(Array(35).fill(100));
    expect(state.entries).toEqual([...range(36, 40, 2), entry(41, 2, 3000)]);
    // Those left out are read back when asked for.
    expect(store.readEntries(29, 33, 1 << 20)).toEqual([...range(29, 30), ...range(31, 32, 2)]);
    // Past the end: nothing loaded; before the first entry, or without dataFrom: everything.
    const none = await store.load({ dataFrom: 100 });
    expect(none.entries).toEqual([]);
    expect(none.notLoaded?.dataBytes).toEqual([...Array(40).fill(100), 3000]);
    for (const options of [{ dataFrom: 0 }, {}]) {
      const all = await store.load(options);
      expect(all.notLoaded).toBeUndefined();
      expect(all.entries).toEqual([...range(1, 30), ...range(31, 40, 2), entry(41, 2, 3000)]);
    }
    await store.close();
  });

  it("drops a last record torn by a crash, and the next append takes its place", async () => {
    const directory = await storeWith(range(1, 10), 1 << 20);
    const [file] = segmentFiles(directory);
    const path = join(directory, file ?? "");
    const starts = recordStarts(path);
    const last = starts.at(-1) ?? 0;
    // A crash wrote all of the record but a few sectors in its middle (still the file's zeros).
    const bytes = new Uint8Array(readFileSync(path));
    bytes.fill(0, last + 40, last + 60);
    writeFileSync(path, bytes);
    let store = await SegmentLogStore.open(directory, { segmentBytes: 1 << 20 });
    expect((await store.load()).entries).toEqual(range(1, 9));
    await store.append([entry(10, 1, 30)], null);
    await store.close();
    // What was left of the torn record after the shorter one that took its place is zeros: a
    // later open must not read it as a damaged record.
    const after = new Uint8Array(readFileSync(path));
    const end = (recordStarts(path).at(-1) ?? 0) + 72;
    expect(after.subarray(end, last + 200).every((byte) => byte === 0)).toBe(true);
    store = await SegmentLogStore.open(directory, { segmentBytes: 1 << 20 });
    expect((await store.load()).entries).toEqual([...range(1, 9), entry(10, 1, 30)]);
    await store.close();
  });

  it("reads a segment longer than its 4 MiB read window, with records larger than the window, and a torn last record past it", async () => {
    // 1 MiB and 5 MiB entries in a 32 MiB segment: records cross the window's edges, one is larger
    // than it, and the torn record's zeros run on for more than a window.
    const sizes = [1, 5, 1, 1, 1, 5, 1, 1].map((mib) => mib * 1024 * 1024);
    const entries = sizes.map((bytes, i) => entry(i + 1, 1, bytes));
    // Compared by digest: an element-by-element comparison of 16 MiB takes minutes.
    const digests = (loaded: readonly Entry[]) =>
      loaded.map(
        ({ index, term, data }) => `${index}/${term}/${createHash("sha256").update(data).digest("hex")}`,
      );
    const directory = await storeWith(entries, 32 * 1024 * 1024);
    let store = await SegmentLogStore.open(directory, { segmentBytes: 32 * 1024 * 1024 });
    expect(digests((await store.load()).entries)).toEqual(digests(entries));
    await store.close();
    const [file] = segmentFiles(directory);
    const path = join(directory, file ?? "");
    const last = recordStarts(path).at(-1) ?? 0;
    expect(last).toBeGreaterThan(8 * 1024 * 1024);
    const bytes = new Uint8Array(readFileSync(path));
    bytes.fill(0, last + 4096, last + 8192);
    writeFileSync(path, bytes);
    store = await SegmentLogStore.open(directory, { segmentBytes: 32 * 1024 * 1024 });
    expect(digests((await store.load()).entries)).toEqual(digests(entries.slice(0, -1)));
    await store.close();
  });

  it("refuses a damaged record that is not the last, naming the file and the byte", async () => {
    const directory = await storeWith(range(1, 10), 1 << 20);
    const [file] = segmentFiles(directory);
    const path = join(directory, file ?? "");
    const third = recordStarts(path)[3] ?? 0;
    const bytes = new Uint8Array(readFileSync(path));
    bytes[third + 60] = (bytes[third + 60] ?? 0) ^ 0x10;
    writeFileSync(path, bytes);
    await expect(SegmentLogStore.open(directory, { segmentBytes: 1 << 20 })).rejects.toThrow(
      `the Raft log in ${directory} is corrupt: a record fails its checksum at byte ${third} of ${path}`,
    );
  });

  it("refuses a log with a segment file gone instead of loading a shorter one", async () => {
    const directory = await storeWith(range(1, 100));
    const files = segmentFiles(directory).sort();
    rmSync(join(directory, files[2] ?? ""));
    await expect(SegmentLogStore.open(directory, { segmentBytes: 4096 })).rejects.toThrow(
      /the Raft log in .* has a gap: entry \d+ is missing \(a segment file removed\?\)/,
    );
  });

  it("gives a segment a crash left without its state record one, so older segments can go", async () => {
    const directory = await storeWith(range(1, 60));
    const files = segmentFiles(directory).sort();
    const next = String(Number(files.at(-1)?.slice(0, 16)) + 1).padStart(16, "0");
    // Started (moved into place) but not written to: the magic and zeros. A leftover .tmp too.
    writeFileSync(join(directory, `${next}.seg`), new Uint8Array([...segmentMagic, ...new Uint8Array(4096)]));
    writeFileSync(join(directory, `${next}.seg.tmp`), new Uint8Array(10));
    let store = await SegmentLogStore.open(directory, { segmentBytes: 4096 });
    expect((await store.load()).entries).toEqual(range(1, 60));
    expect(readdirSync(directory).filter((name) => name.endsWith(".tmp"))).toEqual([]);
    await store.append(range(61, 62), null);
    await store.saveSnapshot({ meta: { index: 61, term: 1, membership }, data: new Uint8Array(8) });
    await store.compact({ index: 61, term: 1 });
    expect(segmentFiles(directory)).toEqual([`${next}.seg`]);
    await store.close();
    store = await SegmentLogStore.open(directory, { segmentBytes: 4096 });
    const state = await store.load();
    expect(state.offset).toEqual({ index: 61, term: 1 });
    expect(state.entries).toEqual([entry(62)]);
    await store.close();
  });

  it("refuses a file that is not a segment, and a segment size below 4 KiB", async () => {
    const directory = join(root, `store-${++stores}`);
    await expect(SegmentLogStore.open(directory, { segmentBytes: 100 })).rejects.toThrow(
      "segmentBytes must be an integer of at least 4096, not 100",
    );
    writeFileSync(join(directory, "0000000000000001.seg"), "not a log");
    await expect(SegmentLogStore.open(directory)).rejects.toThrow(
      `the Raft log in ${directory} is corrupt: ${join(directory, "0000000000000001.seg")} does not start as a Raft log segment`,
    );
  });

  it("copies an older node's LevelDB log whole: hard state, snapshot, offset and entries", async () => {
    const levelDirectory = join(root, `level-${++stores}`);
    const level = await LevelLogStore.open(levelDirectory);
    await level.append(range(1, 40, 2), { term: 3, vote: "n2", commit: 35 });
    const snapshot = {
      meta: { index: 30, term: 2, membership },
      data: new Uint8Array(3 * 1024 * 1024).fill(7),
    };
    await level.saveSnapshot(snapshot);
    await level.compact({ index: 25, term: 2 });
    await level.close();

    const source = await LevelLogStore.open(levelDirectory);
    const directory = join(root, `copy-${stores}`);
    const copy = await SegmentLogStore.copyOf(directory, source, { segmentBytes: 4096 });
    await source.close();
    await copy.close();
    const store = await SegmentLogStore.open(directory, { segmentBytes: 4096 });
    const state = await store.load();
    expect(state.hardState).toEqual({ term: 3, vote: "n2", commit: 35 });
    expect(state.offset).toEqual({ index: 25, term: 2 });
    expect(state.entries).toEqual(range(26, 40, 2));
    expect(state.snapshot?.meta).toEqual(snapshot.meta);
    // Three parts of a MiB were copied: compared by digest (an element-wise compare takes seconds).
    const copied = await snapshotData(store, state.snapshot);
    expect(digest(copied ?? new Uint8Array(0))).toBe(digest(snapshot.data));
    await store.close();
  });
});

const digest = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
