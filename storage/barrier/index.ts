// The barrier: encryption at rest, its keyring and the keyring's wrapping by the root key.
export {
  Barrier,
  type BarrierOptions,
  ciphertextOverheadBytes,
  defaultRotateAfterEncryptions,
} from "./barrier.js";
export { BarrierError, type BarrierErrorCode } from "./errors.js";
export { type DataKey, Keyring } from "./keyring.js";
export { unwrapKeyring, wrapKeyring } from "./root-key-wrap.js";
