// Where a node's Raft state lives between restarts. The driver calls these in the order the Ready
// contract demands and waits for each to be durable before it sends a message that depends on it.
// Implementations: MemoryLogStore (tests, simulations) and, in the storage issue, LevelDB.

import type { Entry, HardState, LogOffset, PersistentState, Snapshot } from "../core/index.js";

export interface LogStore {
  /** Everything persisted so far; an empty store gives term 0, no snapshot and no entries. */
  load(): Promise<PersistentState>;
  /**
   * Atomically and durably: drop stored entries from `entries[0].index` on, store `entries`, and
   * store `hardState` when it is not null. Entries must continue the stored log without a gap.
   */
  append(entries: readonly Entry[], hardState: HardState | null): Promise<void>;
  /** Durably replace the log with a snapshot received from the leader: no entries remain. */
  installSnapshot(snapshot: Snapshot): Promise<void>;
  /** Durably keep a snapshot the node took itself; the log is untouched. */
  saveSnapshot(snapshot: Snapshot): Promise<void>;
  /** Drop entries through `offset.index`, which a saved snapshot covers. */
  compact(offset: LogOffset): Promise<void>;
  close(): Promise<void>;
}

/** Thrown by a LogStore for a request that would corrupt the log (a bug in the caller). */
export class LogStoreError extends Error {
  override readonly name = "LogStoreError";
}
