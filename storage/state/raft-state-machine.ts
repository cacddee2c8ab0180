// The secret state machine as RaftNode's StateMachine: committed entries in, apply results out.
// Empty entries (a new leader's) and membership entries only move the applied index; snapshots
// are the state machine's own (checksummed, ciphertext only).

import type { Entry } from "../../raft/core/index.js";
import type { SnapshotToRestore, StateMachine } from "../../raft/node/index.js";
import type { ApplyResult, SecretStateMachine } from "./secret-state.js";

export class RaftSecretStateMachine implements StateMachine<ApplyResult | null> {
  constructor(readonly secrets: SecretStateMachine) {}

  async apply(entry: Entry): Promise<ApplyResult | null> {
    if (entry.type === "normal" && entry.data.length > 0) return this.secrets.apply(entry.index, entry.data);
    await this.secrets.skip(entry.index);
    return null;
  }

  snapshot(): Promise<Uint8Array> {
    return this.secrets.snapshot();
  }

  captureSnapshot(): Promise<() => AsyncIterable<Uint8Array>> {
    return this.secrets.captureSnapshot();
  }

  restore(snapshot: SnapshotToRestore): Promise<void> {
    return this.secrets.restore(() => snapshot.read());
  }

  appliedIndex(): number {
    return this.secrets.appliedIndex();
  }
}
