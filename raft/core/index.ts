// The public surface of the consensus core. Drivers, the simulator and tests import from here.

export { concatBytes } from "./bytes.js";
export {
  type InjectedBug,
  type RaftConfig,
  type RaftConfigInput,
  raftConfigDefaults,
  validateRaftConfig,
} from "./config.js";
export { describeMessage } from "./describe.js";
export { invariant, NotLeaderError, RaftError, type RaftErrorCode, RaftInvariantError } from "./errors.js";
export { decodeMembershipChange, encodeMembershipChange } from "./membership.js";
export {
  bootstrapState,
  emptyState,
  type ProposalPosition,
  RaftCore,
  type RaftStartOptions,
  type RaftStatus,
  type Ready,
  type SoftState,
} from "./raft.js";
export { type RandomSource, SeededRandom } from "./random.js";
export type * from "./types.js";
