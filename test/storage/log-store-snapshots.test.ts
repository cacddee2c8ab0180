// Snapshots as files beside the Raft log, in both stores (segment files, and the LevelDB store an
// older node's log is moved from): a saved snapshot comes back after a reopen, from a file
// the record names (no snapshot bytes in LevelDB); a snapshot staged beside the loop is recorded by
// its save without being written again; files a crash left behind are removed at open while the
// record keeps naming the snapshot that was saved; a damaged or missing file is refused by name; a
// store written before snapshot files opens with its snapshot and moves it to a file on its next save.

import { randomBytes } from "node:crypto";
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClassicLevel } from "classic-level";
import { afterAll, describe, expect, it } from "vitest";
import type { Snapshot } from "../../raft/core/index.js";
import type { LogStore } from "../../raft/node/index.js";
import { LevelLogStore } from "../../storage/raft-log/level-log-store.js";
import { SegmentLogStore } from "../../storage/raft-log/segment-log-store.js";
import { snapshotData } from "../support/snapshot-data.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-log-snapshots-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Asserts that the store's snapshot reads back as exactly `data`. */
async function expectSnapshotBytes(
  store: LogStore,
  snapshot: Parameters<typeof snapshotData>[1],
  data: Uint8Array,
): Promise<void> {
  expect(Buffer.from((await snapshotData(store, snapshot)) ?? []).equals(Buffer.from(data))).toBe(true);
}

const membership = { voters: ["n1"], learners: [] };
const snapshotAt = (index: number, bytes = 64 * 1024): Snapshot => ({
  meta: { index, term: 2, membership },
  data: new Uint8Array(randomBytes(bytes)),
});

type StoreKind = "segment" | "level";
const opens: Record<StoreKind, (directory: string) => Promise<LogStore>> = {
  segment: (directory) => SegmentLogStore.open(directory),
  level: (directory) => LevelLogStore.open(directory),
};

async function storeWithEntries(
  kind: StoreKind,
  name: string,
  count: number,
): Promise<{ directory: string; store: LogStore }> {
  const directory = join(root, `${kind}-${name}`);
  const store = await opens[kind](directory);
  const entries = Array.from({ length: count }, (_, i) => ({
    index: i + 1,
    term: 2,
    type: "normal" as const,
    data: new TextEncoder().encode(`e${i + 1}`),
  }));
  await store.append(entries, { term: 2, vote: null, commit: count });
  return { directory, store };
}

const snapshotFiles = (directory: string) => readdirSync(join(directory, "snapshots")).sort();

async function rawLevel(directory: string): Promise<ClassicLevel<Uint8Array, Uint8Array>> {
  const raw = new ClassicLevel<Uint8Array, Uint8Array>(directory, {
    keyEncoding: "view",
    valueEncoding: "view",
  });
  await raw.open();
  return raw;
}

describe.each(["segment", "level"] as const)("%s store: snapshot files", (kind) => {
  const open = opens[kind];

  it("keeps a saved snapshot in one file, removes the one it replaced, and loads it after a reopen", async () => {
    const { directory, store } = await storeWithEntries(kind, "saved", 40);
    const first = snapshotAt(10);
    await store.saveSnapshot(first);
    expect(snapshotFiles(directory)).toEqual(["00000000000000000010-00000000000000000002.snap"]);
    const second = snapshotAt(30, 3 * 1024 * 1024 + 17);
    await store.saveSnapshot(second);
    await store.compact({ index: 25, term: 2 });
    expect(snapshotFiles(directory)).toEqual(["00000000000000000030-00000000000000000002.snap"]);
    await store.close();

    const reopened = await open(directory);
    const state = await reopened.load();
    expect(state.snapshot?.meta).toEqual(second.meta);
    await expectSnapshotBytes(reopened, state.snapshot, second.data);
    expect(state.offset).toEqual({ index: 25, term: 2 });
    expect(state.entries.map((entry) => entry.index)).toEqual(Array.from({ length: 15 }, (_, i) => 26 + i));
    await reopened.close();
  });

  it("records a staged snapshot without writing it again; a staged one never saved is removed at open", async () => {
    const { directory, store } = await storeWithEntries(kind, "staged", 40);
    const saved = snapshotAt(20);
    const stored = await store.stageSnapshot(saved.meta, [saved.data]);
    const file = join(directory, "snapshots", "00000000000000000020-00000000000000000002.snap");
    const written = statSync(file);
    await store.saveSnapshot(stored);
    const recorded = statSync(file);
    expect(recorded.ino).toBe(written.ino);
    expect(recorded.mtimeMs).toBe(written.mtimeMs);
    // A crash after staging the next snapshot, before its save: the file is there, unrecorded.
    const next = snapshotAt(35);
    await store.stageSnapshot(next.meta, [next.data]);
    expect(snapshotFiles(directory)).toHaveLength(2);
    await store.close();
    writeFileSync(
      join(directory, "snapshots", "00000000000000000036-00000000000000000002.snap.1a2b.tmp"),
      "partial",
    );

    const reopened = await open(directory);
    const state = await reopened.load();
    expect(state.snapshot?.meta.index).toBe(20);
    await expectSnapshotBytes(reopened, state.snapshot, saved.data);
    expect(snapshotFiles(directory)).toEqual(["00000000000000000020-00000000000000000002.snap"]);
    await reopened.close();
  });

  it("stages a snapshot from parts as they come, in order; refuses to save one never staged; a failed read-out leaves no file", async () => {
    const { directory, store } = await storeWithEntries(kind, "parts", 40);
    const whole = snapshotAt(20, 300 * 1024);
    const cuts = [0, 1, 8, 70_000, 262_152, whole.data.length];
    let handedOut = 0;
    async function* parts(): AsyncGenerator<Uint8Array> {
      for (let i = 1; i < cuts.length; i++) {
        handedOut++;
        // A copy handed out and dropped, as the state machine's read-out does with its chunks.
        yield new Uint8Array(whole.data.subarray(cuts[i - 1], cuts[i]));
      }
    }
    const stored = await store.stageSnapshot(whole.meta, parts());
    expect(handedOut).toBe(cuts.length - 1);
    expect(stored).toEqual({ meta: whole.meta, totalBytes: whole.data.length });
    await store.saveSnapshot(stored);
    expect(Buffer.from(store.readSnapshotChunk(whole.meta, 0, whole.data.length)).equals(whole.data)).toBe(
      true,
    );

    // A snapshot the store never staged (or staged with another size) cannot be recorded.
    await expect(store.saveSnapshot({ meta: { ...whole.meta, index: 30 }, totalBytes: 10 })).rejects.toThrow(
      /save of the snapshot at 30 in .*, which was not staged/,
    );
    const other = snapshotAt(30);
    const staged = await store.stageSnapshot(other.meta, [other.data]);
    await expect(store.saveSnapshot({ ...staged, totalBytes: staged.totalBytes + 1 })).rejects.toThrow(
      /which was not staged/,
    );

    // The state machine's read-out fails half-way: the stage fails with it, and no file stays.
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(1000);
      throw new Error("the secret store is corrupt");
    }
    await expect(store.stageSnapshot({ ...whole.meta, index: 35 }, failing())).rejects.toThrow(
      "the secret store is corrupt",
    );
    expect(snapshotFiles(directory).filter((name) => name.includes("000035-"))).toEqual([]);
    await store.close();

    const reopened = await open(directory);
    const state = await reopened.load();
    expect(state.snapshot?.meta.index).toBe(20);
    await expectSnapshotBytes(reopened, state.snapshot, whole.data);
    await reopened.close();
  });

  it("checks the snapshot file once at start and loads it as stored, read back from its open file", async () => {
    const { directory, store } = await storeWithEntries(kind, "read-once", 20);
    const saved = snapshotAt(10, 2 * 1024 * 1024);
    await store.saveSnapshot(saved);
    await store.close();

    const reopened = await open(directory);
    const file = join(directory, "snapshots", "00000000000000000010-00000000000000000002.snap");
    const bytes = readFileSync(file);
    rmSync(file);
    // The file is gone, yet the first load has it: open checked it and keeps it open, and the
    // node's load does not check it again. Its bytes are not in memory: they are read back.
    const first = await reopened.load();
    expect(first.snapshot).toEqual({ meta: saved.meta, totalBytes: saved.data.length });
    expect(
      Buffer.from((await snapshotData(reopened, first.snapshot)) ?? []).equals(Buffer.from(saved.data)),
    ).toBe(true);
    await expect(reopened.load()).rejects.toThrow(`the snapshot file ${file} cannot be read`);
    writeFileSync(file, bytes);
    await reopened.close();

    // A change after open drops what open read: the next load sees it.
    const changed = await open(directory);
    await changed.append([{ index: 21, term: 2, type: "normal", data: new Uint8Array([1]) }], null);
    expect((await changed.load()).entries.at(-1)?.index).toBe(21);
    await changed.close();
  });

  it("installs a leader's snapshot as a file, dropping every entry", async () => {
    const { directory, store } = await storeWithEntries(kind, "installed", 10);
    await store.saveSnapshot(snapshotAt(5));
    const sent = snapshotAt(50);
    await store.installSnapshot(sent);
    expect(snapshotFiles(directory)).toEqual(["00000000000000000050-00000000000000000002.snap"]);
    await store.close();
    const reopened = await open(directory);
    const state = await reopened.load();
    expect(state.snapshot?.meta.index).toBe(50);
    expect(state.entries).toEqual([]);
    expect(state.offset).toEqual({ index: 50, term: 2 });
    expect(state.hardState.commit).toBe(50);
    await reopened.close();
  });

  it("writes a leader's snapshot to a file as its chunks arrive, installs it by moving that file, and leaves none unfinished", async () => {
    const { directory, store } = await storeWithEntries(kind, "received", 10);
    const sent = snapshotAt(30, 300 * 1024);
    const chunk = 64 * 1024;
    for (let offset = 0; offset < sent.data.length; offset += chunk) {
      store.receiveSnapshotChunk(
        sent.meta,
        sent.data.length,
        offset,
        sent.data.subarray(offset, offset + chunk),
      );
      // Under a temporary name while it is received (and until installed), with what came so far.
      const [name, ...others] = snapshotFiles(directory);
      expect(others).toEqual([]);
      expect(name).toMatch(/^00000000000000000030-00000000000000000002\.snap\.[0-9a-f]+\.tmp$/);
      expect(statSync(join(directory, "snapshots", name as string)).size).toBe(
        Math.min(offset + chunk, sent.data.length),
      );
    }
    const received = statSync(join(directory, "snapshots", snapshotFiles(directory)[0] as string));
    await store.installSnapshot({ meta: sent.meta, totalBytes: sent.data.length });
    const file = join(directory, "snapshots", "00000000000000000030-00000000000000000002.snap");
    expect(snapshotFiles(directory)).toEqual(["00000000000000000030-00000000000000000002.snap"]);
    // The same file, moved: not written a second time.
    expect(statSync(file).ino).toBe(received.ino);
    expect(readFileSync(file).equals(Buffer.from(sent.data))).toBe(true);
    // A reception cut short by a stop leaves no file behind.
    const next = snapshotAt(60, 100 * 1024);
    store.receiveSnapshotChunk(next.meta, next.data.length, 0, next.data.subarray(0, chunk));
    expect(snapshotFiles(directory)).toHaveLength(2);
    await store.close();
    expect(snapshotFiles(directory)).toEqual(["00000000000000000030-00000000000000000002.snap"]);
  });

  it("refuses a damaged, truncated or missing snapshot file, naming it", async () => {
    const { directory, store } = await storeWithEntries(kind, "damaged", 20);
    await store.saveSnapshot(snapshotAt(10));
    await store.close();
    const file = join(directory, "snapshots", "00000000000000000010-00000000000000000002.snap");
    const original = readFileSync(file);

    const flipped = Buffer.from(original);
    flipped[1000] = (flipped[1000] ?? 0) ^ 0x01;
    writeFileSync(file, flipped);
    await expect(open(directory)).rejects.toThrow(`the snapshot file ${file} is damaged`);

    writeFileSync(file, original.subarray(0, original.length - 1));
    await expect(open(directory)).rejects.toThrow(`the snapshot file ${file} is damaged`);

    rmSync(file);
    await expect(open(directory)).rejects.toThrow(`the snapshot file ${file} cannot be read`);
  });
});

it.each(["segment", "level"] as const)(
  "%s store: a snapshot file cut short under the store is refused when read back, naming the file",
  async (kind) => {
    const directory = join(root, `${kind}-cut-short`);
    const store = await opens[kind](directory);
    await store.append([{ index: 1, term: 1, type: "normal", data: Uint8Array.of(1) }], {
      term: 1,
      vote: null,
      commit: 1,
    });
    const snapshot = {
      meta: { index: 1, term: 1, membership: { voters: ["n1"], learners: [] } },
      data: new Uint8Array(4096).fill(7),
    };
    await store.saveSnapshot(snapshot);
    const file = join(directory, "snapshots", "00000000000000000001-00000000000000000001.snap");
    expect([...store.readSnapshotChunk(snapshot.meta, 4000, 96)]).toEqual(new Array(96).fill(7));
    truncateSync(file, 1000);
    expect(() => store.readSnapshotChunk(snapshot.meta, 900, 200)).toThrow(
      new RegExp(`the snapshot file ${file} ends at 1000, before 1100`),
    );
    await store.close();
  },
);

describe("LevelLogStore: the snapshot record in LevelDB", () => {
  it("keeps only the record naming the file in LevelDB, no snapshot bytes", async () => {
    const { directory, store } = await storeWithEntries("level", "record", 40);
    const snapshot = snapshotAt(30, 3 * 1024 * 1024 + 17);
    await store.saveSnapshot(snapshot);
    await store.close();
    const raw = await rawLevel(directory);
    expect(await raw.get(Uint8Array.of(0x04))).toBeUndefined();
    const record = JSON.parse(new TextDecoder().decode(await raw.get(Uint8Array.of(0x03))));
    expect(record).toMatchObject({
      index: 30,
      term: 2,
      file: "00000000000000000030-00000000000000000002.snap",
    });
    expect(record.bytes).toBe(snapshot.data.length);
    await raw.close();
  });

  it("opens a store whose snapshot is still in LevelDB, and moves it to a file on the next save", async () => {
    const { directory, store } = await storeWithEntries("level", "legacy", 30);
    await store.close();
    const legacy = snapshotAt(12);
    const raw = await rawLevel(directory);
    await raw.put(Uint8Array.of(0x03), new TextEncoder().encode(JSON.stringify(legacy.meta)));
    await raw.put(Uint8Array.of(0x04), legacy.data);
    await raw.close();

    const reopened = await LevelLogStore.open(directory);
    const state = await reopened.load();
    expect(state.snapshot?.meta).toEqual(legacy.meta);
    await expectSnapshotBytes(reopened, state.snapshot, legacy.data);
    await reopened.saveSnapshot(snapshotAt(25));
    await reopened.close();
    const after = await rawLevel(directory);
    expect(await after.get(Uint8Array.of(0x04))).toBeUndefined();
    await after.close();
    expect(snapshotFiles(directory)).toEqual(["00000000000000000025-00000000000000000002.snap"]);
  });
});
