// Scheduled rotation, on the leader. The schedule is replicated state: every secret with a period
// and a generator carries its next rotation time, set deterministically when each new value is
// applied (storage/state/secret-state.ts). The leader sweeps the due secrets every `sweepMs`, makes
// each one's next value with its generator, encrypts it through the barrier, and proposes it as a
// check-and-set on the version that was due. So a rotation happens exactly once per period across
// leader changes:
//   - not doubled: a second proposal for the same due version (a new leader's, or a retry) fails
//     its check-and-set, because the first one moved the version on (counted as "superseded");
//   - not skipped: until a rotation applies, the secret stays due in the replicated schedule, and
//     whichever node leads next rotates it.
// A rotation that fails (the generator, or the proposal refused) is recorded in the secret's
// metadata with its reason and retried with backoff (2 s, 4 s, ... at most a period).

import { Counter, Gauge, type Registry } from "prom-client";
import type { RaftNode } from "../../raft/node/index.js";
import type { Barrier } from "../../storage/barrier/index.js";
import {
  type ApplyResult,
  encodeCommand,
  type SecretCommand,
  type SecretStateMachine,
  StateError,
} from "../../storage/state/index.js";
import { NodeError } from "../errors.js";
import { type GeneratorSpec, generateValue, parseGenerator, type X509GeneratorSpec } from "./generators.js";
import { PeriodicTask } from "./periodic-task.js";

export interface RotatorParts {
  readonly raft: () => RaftNode<ApplyResult | null>;
  readonly state: SecretStateMachine;
  readonly barrier: Barrier;
  /** Whether this node may rotate now: it leads, and it is initialized and unsealed. */
  readonly serving: () => boolean;
  readonly registry: Registry;
  readonly onFailure?: (path: string, error: unknown) => void;
  /** Issues the certificate of an x509 generator for the secret at `path` (the PKI engine). */
  readonly issueCertificate?: (
    path: string,
    spec: X509GeneratorSpec,
  ) => Promise<{ certificatePem: string; privateKeyPem: string; caPem: string }>;
}

export interface RotatorOptions {
  /** How often the leader looks for due secrets. */
  readonly sweepMs: number;
  /** Rotations started per sweep, at most (the rest wait for the next sweep). */
  readonly perSweepMax: number;
}

export type RotationOutcome = "rotated" | "superseded" | "failed";

export class Rotator {
  private readonly sweeps: PeriodicTask;
  private readonly rotations: Counter<"result">;

  constructor(
    private readonly parts: RotatorParts,
    private readonly options: RotatorOptions,
  ) {
    this.sweeps = new PeriodicTask(
      options.sweepMs,
      parts.serving,
      () => this.sweep(),
      (error) => parts.onFailure?.("(sweep)", error),
    );
    this.rotations = new Counter({
      name: "strongroom_rotations_total",
      help: "Rotations by result: rotated, superseded (another rotation of that version came first), failed.",
      labelNames: ["result"],
      registers: [parts.registry],
    });
    const { state } = parts;
    new Gauge({
      name: "strongroom_rotations_scheduled",
      help: "Secrets with a rotation schedule (a period and a generator).",
      registers: [parts.registry],
      collect() {
        this.set(state.scheduledRotations());
      },
    });
    new Gauge({
      name: "strongroom_rotations_overdue",
      help: "Secrets whose rotation was due more than a minute ago (a failing generator, or no leader).",
      registers: [parts.registry],
      collect() {
        this.set(state.dueRotations(Date.now() - 60_000, Number.MAX_SAFE_INTEGER).length);
      },
    });
  }

  start(): void {
    this.sweeps.start();
  }

  stop(): void {
    this.sweeps.stop();
  }

  /**
   * Rotates `path` now (the Rotate RPC), on the leader: a new version from its generator, as a
   * check-and-set on the current version.
   */
  async rotateNow(path: string): Promise<{ version: number; revision: number }> {
    const metadata = await this.parts.state.metadata(path);
    if (metadata === null || metadata.current === 0)
      throw new StateError("NOT_FOUND", `no secret at ${path}`);
    if (metadata.generator === null)
      throw new StateError("NOT_ROTATING", `${path} has no generator: set one with UpdateMetadata first`);
    return await this.propose(path, metadata.current, parseGenerator(metadata.generator));
  }

  /**
   * One sweep: the due secrets, the longest overdue first, at most perSweepMax. Sweeps never
   * overlap (PeriodicTask), so a secret is never rotated twice at once by this node.
   */
  private async sweep(): Promise<void> {
    const due = this.parts.state.dueRotations(Date.now(), this.options.perSweepMax);
    await Promise.all(due.map((entry) => this.rotateDue(entry.path, entry.version)));
  }

  private async rotateDue(path: string, version: number): Promise<RotationOutcome> {
    try {
      const metadata = await this.parts.state.metadata(path);
      if (metadata === null || metadata.generator === null || metadata.current !== version)
        return "superseded";
      await this.propose(path, version, parseGenerator(metadata.generator));
      this.rotations.inc({ result: "rotated" });
      return "rotated";
    } catch (error) {
      if (error instanceof StateError && error.code === "CAS_MISMATCH") {
        this.rotations.inc({ result: "superseded" });
        return "superseded";
      }
      // Leadership moved under the proposal: the next leader rotates it (still due there).
      if (!this.parts.serving()) return "failed";
      const reason = error instanceof Error ? error.message : String(error);
      this.rotations.inc({ result: "failed" });
      this.parts.onFailure?.(path, error);
      await this.recordFailure(path, reason).catch(() => {
        // Not recorded (leadership moved): the secret is still due, and is tried again.
      });
      return "failed";
    }
  }

  private async propose(
    path: string,
    version: number,
    generator: GeneratorSpec,
  ): Promise<{ version: number; revision: number }> {
    const issue = this.parts.issueCertificate;
    const value = await generateValue(
      generator,
      issue === undefined ? {} : { issueCertificate: (spec) => issue(path, spec) },
    );
    try {
      const ciphertext = this.parts.barrier.encrypt(path, value);
      const result = await this.submit({
        op: "kv.put",
        path,
        ciphertext,
        cas: version,
        at: Date.now(),
        rotation: true,
      });
      return { version: result.version ?? 0, revision: result.revision };
    } finally {
      value.fill(0);
    }
  }

  private async recordFailure(path: string, error: string): Promise<void> {
    await this.submit({ op: "kv.rotationFailed", path, error, at: Date.now() });
  }

  private async submit(command: SecretCommand): Promise<{ revision: number; version: number | null }> {
    const { index, result } = await this.parts.raft().propose(encodeCommand(command));
    if (result === null) throw new NodeError("INTERNAL", "the command applied without a result");
    if (!result.ok) throw new StateError(result.code, result.message);
    return { revision: this.parts.state.revisionOf(index), version: result.version };
  }
}
