// The secret state machine: versioned KV v2 semantics over barrier ciphertext, on LevelDB.
export {
  type CommandRequest,
  requestIdRetentionMs,
  requestIdsKept,
  requestRecordKind,
  validateRequestId,
} from "./applied-requests.js";
export {
  decodeCommand,
  encodeCommand,
  type SecretCommand,
  type SecretMetadataChanges,
  type SystemArea,
  type SystemRecordName,
  type SystemRecordPut,
  systemAreas,
  systemPutAllRecordsMax,
  systemRecordName,
  wellKnownRecords,
} from "./commands.js";
export { StateError, type StateErrorCode } from "./errors.js";
export {
  defaultStateLimits,
  isWellFormedRequestId,
  requestIdCharsMax,
  type StateLimits,
  validatePath,
  validatePrefix,
  validateVersionList,
} from "./limits.js";
export { RaftSecretStateMachine } from "./raft-state-machine.js";
export {
  type ApplyResult,
  type HeldSnapshot,
  isSystemRecordKey,
  recordDigest,
  revisionOffsetOf,
  revisionOffsetRecord,
  type SecretMetadata,
  SecretStateMachine,
  type SecretVersion,
  systemAreaOfKey,
  type VersionRecord,
} from "./secret-state.js";
export { checkSnapshot, decodeSnapshot, type SnapshotRecord } from "./snapshot-format.js";
