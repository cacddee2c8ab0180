// The secret state machine as the node runs it: RaftSecretStateMachine, plus notices of what an
// applied entry changed beyond the state itself - access records (the access view takes them),
// the members' addresses (the member directory takes them), the seal record and the keyring (the
// seal keeper reloads them), a secret (watchers hear of it) - and of a snapshot that replaced the
// whole state.

import type { Entry } from "../raft/core/index.js";
import type { SnapshotToRestore, StateMachine } from "../raft/node/index.js";
import {
  type ApplyResult,
  RaftSecretStateMachine,
  type SecretCommand,
  type SecretStateMachine,
  wellKnownRecords,
} from "../storage/state/index.js";

const watchedAreas: ReadonlySet<string> = new Set([
  wellKnownRecords.seal.area,
  wellKnownRecords.keyring.area,
]);

export interface StateObserver {
  /** A system record was written or deleted, or records were loaded (state.load), as it applied. */
  readonly onSystemRecord: (command: SecretCommand) => void;
  /** The seal record or the keyring changed, or records were loaded or a snapshot restored. */
  readonly onSystemChange: () => void;
  /** A secret changed at `revision`. */
  readonly onSecretChange: (revision: number, command: SecretCommand, version: number | null) => void;
  /** A snapshot is about to replace the state (onRestore follows once it has). */
  readonly onRestoring: () => void;
  /** A snapshot replaced the state. */
  readonly onRestore: () => void;
  /** A backup's records were loaded (a restore into this cluster): revisions may have moved on. */
  readonly onLoad: () => void;
}

export class ObservedStateMachine implements StateMachine<ApplyResult | null> {
  private readonly inner: RaftSecretStateMachine;

  constructor(
    readonly secrets: SecretStateMachine,
    private readonly observer: StateObserver,
  ) {
    this.inner = new RaftSecretStateMachine(secrets);
    // Told of each command that changed the state, as the state machine decoded it.
    secrets.onApplied((index, command, version) => {
      if (command.op === "sys.put" || command.op === "sys.delete") {
        observer.onSystemRecord(command);
        if (watchedAreas.has(command.area)) observer.onSystemChange();
      } else if (command.op === "sys.putAll") {
        // Told as the puts it is made of, so that each record's owner takes it as it takes a put.
        for (const { area, path, value } of command.records)
          observer.onSystemRecord({ op: "sys.put", area, path, value, at: command.at });
        if (command.records.some((record) => watchedAreas.has(record.area))) observer.onSystemChange();
      } else if (command.op === "state.load") {
        // A restore may bring the seal record and the keyring.
        observer.onSystemRecord(command);
        observer.onSystemChange();
        observer.onLoad();
      } else {
        observer.onSecretChange(secrets.revisionOf(index), command, version);
      }
    });
  }

  apply(entry: Entry): Promise<ApplyResult | null> {
    return this.inner.apply(entry);
  }

  snapshot(): Promise<Uint8Array> {
    return this.inner.snapshot();
  }

  captureSnapshot(): Promise<() => AsyncIterable<Uint8Array>> {
    return this.inner.captureSnapshot();
  }

  async restore(snapshot: SnapshotToRestore): Promise<void> {
    this.observer.onRestoring();
    await this.inner.restore(snapshot);
    this.observer.onRestore();
    this.observer.onSystemChange();
  }

  appliedIndex(): number {
    return this.inner.appliedIndex();
  }
}
