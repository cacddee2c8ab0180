// The linearizability checker, shared by the Raft simulator and the chaos harness.
export type { Model, Operation } from "./history.js";
export { type CheckOptions, checkLinearizability, type LinearizabilityVerdict } from "./linearizability.js";
export {
  type RegisterInput,
  type RegisterOperation,
  type RegisterOutput,
  registerModel,
} from "./register-model.js";
export { type ShrinkOptions, shrinkCounterexample } from "./shrink.js";
