// Init and a snapshot restore, the two ways a new cluster gets its keyring and seal record, one at
// a time on this node. Across leaders the state machine keeps them apart (each writes its keyring
// only while no seal record exists, and init only while no keyring does); on one leader a second
// restore could interleave its batches with the first's, which only this lock prevents.
import { NodeError } from "./errors.js";

export class ClusterSetupLock {
  private running: string | null = null;

  /** Runs `task` unless an init or a restore is running here; `what` names it in the refusal. */
  async run<T>(what: string, task: () => Promise<T>): Promise<T> {
    if (this.running !== null)
      throw new NodeError("ALREADY_INITIALIZED", `${this.running} is already running on the leader`);
    this.running = what;
    try {
      return await task();
    } finally {
      this.running = null;
    }
  }
}
