// A node's record of reads for the Stale report's unread part: kept across a restart (written to
// disk every period and at stop, reloaded, `since` kept), bounded (the least recently read forgotten first), a damaged file
// starting a new record, and the members' records merged (the latest read anywhere, the latest
// start of recording).

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { mergeReadTimes, ReadTracker } from "../../server/lifecycle/read-tracker.js";

const directories: string[] = [];
function file(): string {
  const directory = mkdtempSync(join(tmpdir(), "strongroom-reads-"));
  directories.push(directory);
  return join(directory, "last-reads.json");
}
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

it("a last write that fails is answered, not thrown, so the node's stop goes on", () => {
  const path = file();
  const tracker = new ReadTracker(path, 100);
  tracker.load();
  tracker.noteRead("app/a");
  // Its temporary file cannot be written (a directory stands there), as on a full disk.
  mkdirSync(`${path}.tmp`);
  expect(tracker.stop()?.message).toMatch(/EISDIR/);
});

it("keeps its reads and its start across a restart", () => {
  const path = file();
  let now = 1_000;
  const first = new ReadTracker(path, 100, () => now);
  first.load();
  now = 2_000;
  first.noteRead("app/a");
  now = 3_000;
  first.noteRead("app/b");
  first.noteRead("other/c");
  first.stop();
  now = 9_000;
  const second = new ReadTracker(path, 100, () => now);
  second.load();
  const times = second.readTimes("app/");
  expect(times.since).toBe(1_000);
  expect([...times.lastRead]).toEqual([
    ["app/a", 2_000],
    ["app/b", 3_000],
  ]);
  // No value, only paths and times, is written.
  expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({
    since: 1_000,
    reads: { "app/a": 2_000, "app/b": 3_000, "other/c": 3_000 },
  });
});

it("forgets the least recently read path past its bound", () => {
  let now = 0;
  const tracker = new ReadTracker(file(), 2, () => now);
  for (const path of ["a", "b", "a", "c"]) {
    now += 1;
    tracker.noteRead(path);
  }
  expect([...tracker.readTimes("").lastRead.keys()].sort()).toEqual(["a", "c"]);
});

it("starts a new record, from now, when the file is damaged", () => {
  const path = file();
  writeFileSync(path, "{not json");
  const tracker = new ReadTracker(path, 10, () => 5_000);
  tracker.load();
  expect(tracker.readTimes("")).toEqual({ lastRead: new Map(), since: 5_000 });
  tracker.persist();
  expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ since: 5_000, reads: {} });
});

it("merges the members' records: the latest read of each path, the latest start", () => {
  const merged = mergeReadTimes([
    {
      lastRead: new Map([
        ["a", 10],
        ["b", 50],
      ]),
      since: 1,
    },
    { lastRead: new Map([["a", 30]]), since: 7 },
    { lastRead: new Map(), since: 3 },
  ]);
  expect(merged).toEqual({
    lastRead: new Map([
      ["a", 30],
      ["b", 50],
    ]),
    since: 7,
  });
});

it("writes the record every period in the background, and stop() still writes the last reads", async () => {
  const path = file();
  let now = 1_000;
  const tracker = new ReadTracker(path, 10, () => now);
  tracker.load();
  tracker.start(20);
  tracker.noteRead("app/a");
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ since: 1_000, reads: { "app/a": 1_000 } });
  now = 2_000;
  tracker.noteRead("app/b");
  tracker.stop();
  expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({
    since: 1_000,
    reads: { "app/a": 1_000, "app/b": 2_000 },
  });
});
