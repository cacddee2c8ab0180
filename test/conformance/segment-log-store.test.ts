// SegmentLogStore (segment files on a real disk) against the shared LogStore conformance suite,
// once with the default segment size and once with segments so small that most tests start new
// ones and delete compacted ones as they go.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { SegmentLogStore } from "../../storage/raft-log/segment-log-store.js";
import { logStoreConformance } from "./log-store-conformance.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-segment-log-"));
let locations = 0;
afterAll(() => rmSync(root, { recursive: true, force: true }));

logStoreConformance("SegmentLogStore", {
  newLocation: async () => join(root, `store-${++locations}`),
  open: (location) => SegmentLogStore.open(location),
});

logStoreConformance("SegmentLogStore, 4 KiB segments", {
  newLocation: async () => join(root, `store-${++locations}`),
  open: (location) => SegmentLogStore.open(location, { segmentBytes: 4096 }),
});
