// Expired secrets cleaned up by the leader. A secret past its expires_at is refused at read time
// on every node already (EXPIRED, from the replicated metadata and the read's own clock); this
// sweep erases its values for good - a kv.destroy of every version still stored - so that no
// ciphertext of an expired secret lingers on disk or in snapshots. The metadata stays, so the Stale
// report still lists the secret as expired until someone deletes or renews it.

import { Counter, Gauge, type Registry } from "prom-client";
import type { RaftNode } from "../../raft/node/index.js";
import {
  type ApplyResult,
  encodeCommand,
  type SecretStateMachine,
  StateError,
} from "../../storage/state/index.js";
import { PeriodicTask } from "./periodic-task.js";

export interface ExpirySweeperParts {
  readonly raft: () => RaftNode<ApplyResult | null>;
  readonly state: SecretStateMachine;
  /** Whether this node may clean up now: it leads, and it is initialized and unsealed. */
  readonly serving: () => boolean;
  readonly registry: Registry;
  readonly onError?: (path: string, error: unknown) => void;
}

export class ExpirySweeper {
  private readonly sweeps: PeriodicTask;
  private readonly erased: Counter;

  constructor(
    private readonly parts: ExpirySweeperParts,
    private readonly options: { readonly sweepMs: number; readonly perSweepMax: number },
  ) {
    this.sweeps = new PeriodicTask(
      options.sweepMs,
      parts.serving,
      () => this.sweep(),
      (error) => parts.onError?.("(sweep)", error),
    );
    this.erased = new Counter({
      name: "strongroom_expired_secrets_erased_total",
      help: "Expired secrets whose values the leader erased.",
      registers: [parts.registry],
    });
    const { state } = parts;
    new Gauge({
      name: "strongroom_secrets_expired",
      help: "Secrets past their expiry whose values are not erased yet (the leader erases them within a sweep).",
      registers: [parts.registry],
      collect() {
        this.set(state.expiredCount(Date.now()));
      },
    });
  }

  start(): void {
    this.sweeps.start();
  }

  stop(): void {
    this.sweeps.stop();
  }

  private async sweep(): Promise<void> {
    for (const path of this.parts.state.expiredSecrets(Date.now(), this.options.perSweepMax)) {
      if (!this.parts.serving()) return;
      await this.erase(path);
    }
  }

  private async erase(path: string): Promise<void> {
    const metadata = await this.parts.state.metadata(path);
    if (metadata === null) return;
    const stored = [...metadata.versions]
      .filter(([, version]) => !version.destroyed)
      .map(([version]) => version);
    if (stored.length === 0) return;
    try {
      const { result } = await this.parts
        .raft()
        .propose(encodeCommand({ op: "kv.destroy", path, versions: stored, at: Date.now() }));
      if (result !== null && !result.ok) throw new StateError(result.code, result.message);
      this.erased.inc();
    } catch (error) {
      // Tried again at the next sweep (on this leader or the next).
      this.parts.onError?.(path, error);
    }
  }
}
