// The secret state machine as the node runs it: RaftSecretStateMachine, plus a notice after an
// entry changed what the node keeps in memory beside the state - the seal record and the keyring
// (the seal keeper reloads them), the members' addresses (the member directory reloads them) -
// or after a snapshot replaced the whole state.

import type { Entry, Snapshot } from "../raft/core/index.js";
import type { StateMachine } from "../raft/node/index.js";
import {
  type ApplyResult,
  decodeCommand,
  RaftSecretStateMachine,
  type SecretStateMachine,
  wellKnownRecords,
} from "../storage/state/index.js";
import { memberArea } from "./member-directory.js";

const watchedAreas: ReadonlySet<string> = new Set([
  wellKnownRecords.seal.area,
  wellKnownRecords.keyring.area,
  memberArea,
]);

export class ObservedStateMachine implements StateMachine<ApplyResult | null> {
  private readonly inner: RaftSecretStateMachine;

  constructor(
    readonly secrets: SecretStateMachine,
    private readonly onSystemChange: () => void,
  ) {
    this.inner = new RaftSecretStateMachine(secrets);
  }

  async apply(entry: Entry): Promise<ApplyResult | null> {
    const result = await this.inner.apply(entry);
    if (result?.ok === true && entry.type === "normal" && touchesWatchedArea(entry.data))
      this.onSystemChange();
    return result;
  }

  snapshot(): Promise<Uint8Array> {
    return this.inner.snapshot();
  }

  async restore(snapshot: Snapshot): Promise<void> {
    await this.inner.restore(snapshot);
    this.onSystemChange();
  }

  appliedIndex(): number {
    return this.inner.appliedIndex();
  }
}

function touchesWatchedArea(data: Uint8Array): boolean {
  const command = decodeCommand(data);
  return (command.op === "sys.put" || command.op === "sys.delete") && watchedAreas.has(command.area);
}
