// The seals' public surface: what the server composes. Internals (share text encoding, the PKCS#11
// module registry) stay behind it.

export {
  AutoUnsealer,
  type AutoUnsealerOptions,
  type AutoUnsealState,
  type AutoUnsealStatus,
} from "./auto-unsealer.js";
export { SealError, type SealErrorCode } from "./errors.js";
export { Pkcs11Client } from "./pkcs11/pkcs11-client.js";
export { type Pkcs11Config, type Pkcs11Mechanism, validatePkcs11Config } from "./pkcs11/pkcs11-config.js";
export { Pkcs11Seal } from "./pkcs11/pkcs11-seal.js";
export type { Seal, SealStatus, UnsealInput } from "./seal.js";
export { registerSealMetrics, type SealMetricsSource } from "./seal-metrics.js";
export {
  checkAuthorization,
  checkShareOptions,
  type HandedOutShares,
  initializeSeal,
  type MigrationTarget,
  migrateSeal,
  type Pkcs11Options,
  rekeyShares,
  rewrapWithHsmKey,
  type SealInitOptions,
  type SealInitResult,
  type ShareOptions,
} from "./seal-operations.js";
export {
  authorizingShareSet,
  decodeSealRecord,
  encodeSealRecord,
  type Protector,
  pkcs11ProtectorOf,
  type SealRecord,
  type SealType,
} from "./seal-record.js";
export { SealSet, type SealSetOptions, type SealSetStatus } from "./seal-set.js";
export { ShamirSeal } from "./shares/shamir-seal.js";
export { ShareCollector, type ShareProgress, type ShareSubmission } from "./shares/share-collector.js";
export { decryptShare, encryptShare } from "./shares/share-encryption.js";
export {
  defaultShareCount,
  defaultShareThreshold,
  type ShareSetDescriptor,
  validateShareCounts,
} from "./shares/share-set.js";
