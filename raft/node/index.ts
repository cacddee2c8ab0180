// The Raft driver and the interfaces it runs against.
export { InProcessNetwork } from "./in-process-transport.js";
export {
  checkAppendable,
  checkCompactable,
  checkSnapshotRead,
  collectParts,
  type LogLoadOptions,
  type LogStore,
  LogStoreError,
  readSnapshotChunkOf,
  readStoredEntries,
  readStoredSnapshot,
  SnapshotCollector,
} from "./log-store.js";
export { MemoryLogStore } from "./memory-log-store.js";
export {
  type Proposed,
  type RaftFailpoint,
  RaftNode,
  RaftNodeError,
  type RaftNodeErrorCode,
  type RaftNodeOptions,
  raftFailpoints,
  type SnapshotToRestore,
  type StateMachine,
  snapshotSize,
} from "./raft-node.js";
export { readLeaseMsFor } from "./read-lease.js";
export type { Transport } from "./transport.js";
