// LevelLogStore (LevelDB on a real disk) against the shared LogStore conformance suite.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { LevelLogStore } from "../../storage/raft-log/level-log-store.js";
import { logStoreConformance } from "./log-store-conformance.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-level-log-"));
let locations = 0;
afterAll(() => rmSync(root, { recursive: true, force: true }));

logStoreConformance("LevelLogStore", {
  newLocation: async () => join(root, `store-${++locations}`),
  open: (location) => LevelLogStore.open(location),
});
