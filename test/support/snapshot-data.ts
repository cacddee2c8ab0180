// A loaded snapshot's bytes, for tests that compare them: its data, or, for one a store loads as
// stored (LevelLogStore), read back whole through the store's readSnapshotChunk.

import type { Snapshot, StableSnapshotReader, StoredSnapshot } from "../../raft/core/index.js";
import { collectParts, readStoredSnapshot } from "../../raft/node/index.js";

export async function snapshotData(
  store: StableSnapshotReader,
  snapshot: Snapshot | StoredSnapshot | null,
): Promise<Uint8Array | null> {
  if (snapshot === null) return null;
  if ("data" in snapshot) return snapshot.data;
  return collectParts(readStoredSnapshot(store, snapshot));
}
