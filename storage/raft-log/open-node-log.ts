// A node's Raft log in its data directory: segment files in <data>/raft-log. A node of an earlier
// version kept it in LevelDB in <data>/raft; that log is copied into segment files (beside it, then
// moved into place with one rename) before the node starts, and removed once the copy is durable.
// A crash at any point leaves either the old log whole (the copy is made again) or the new one.

import { existsSync, rmSync } from "node:fs";
import { rename } from "node:fs/promises";
import { join } from "node:path";
import { LevelLogStore } from "./level-log-store.js";
import { SegmentLogStore, type SegmentLogStoreOptions } from "./segment-log-store.js";
import { syncDirectory } from "./sync-directory.js";

export interface NodeLog {
  readonly store: SegmentLogStore;
  /** The LevelDB log an earlier version wrote was copied into segment files now. */
  readonly movedFromLevelDb: boolean;
}

export async function openNodeLog(
  dataDirectory: string,
  options: SegmentLogStoreOptions = {},
): Promise<NodeLog> {
  const directory = join(dataDirectory, "raft-log");
  const levelDirectory = join(dataDirectory, "raft");
  let movedFromLevelDb = false;
  if (existsSync(levelDirectory)) {
    if (!existsSync(directory)) {
      const staging = join(dataDirectory, "raft-log.moving");
      rmSync(staging, { recursive: true, force: true });
      const source = await LevelLogStore.open(levelDirectory);
      try {
        const copy = await SegmentLogStore.copyOf(staging, source, options);
        await copy.close();
      } finally {
        await source.close();
      }
      await rename(staging, directory);
      await syncDirectory(dataDirectory);
      movedFromLevelDb = true;
    }
    rmSync(levelDirectory, { recursive: true, force: true });
  }
  return { store: await SegmentLogStore.open(directory, options), movedFromLevelDb };
}
