// What a run must show: a linearizable history (per key, unknown outcomes allowed to have applied
// or not, final reads after the heal included, so a lost acknowledged write fails it too), no node
// that died by itself, every node's audit trail complete, watchers that delivered every version of
// every key once and in order (watch-check.ts), and the SLOs: success rate, read and write p99,
// and failover time (a fault that took the leader → the first successful write sent after it).

import type { NodeAudit } from "./audit-check.js";
import {
  checkLinearizability,
  type RegisterOperation,
  registerModel,
  shrinkCounterexample,
} from "./checker/index.js";
import type { Experiment } from "./experiment.js";
import type { WatchCheck } from "./watch-check.js";
import type { WorkloadResult } from "./workload.js";

export interface FaultEvent {
  readonly nemesis: string;
  readonly target: string;
  /** What it did and how it was healed. */
  readonly detail: string;
  /** It took the leader away while a quorum remained: failover is measured after it. */
  readonly takesLeader: boolean;
  readonly atMs: number;
  /** How long after its scheduled time it came: it waited for the fault before it to heal. */
  readonly lateMs: number;
  readonly healedAtMs: number;
}

export interface SloResult {
  readonly name: string;
  readonly value: number;
  readonly target: string;
  readonly pass: boolean;
}

export interface RunChecks {
  readonly linearizability: string;
  readonly linearizabilityDetail: string;
  readonly crashedNodes: readonly string[];
  /** Each node's audit trail, checked after a graceful stop. */
  readonly audit: readonly NodeAudit[];
  /** Faults the harness could not inject or heal, and what a run failed to exercise (each fails it). */
  readonly harnessErrors: readonly string[];
  /**
   * Acknowledged writes the final reads show lost: the key's final value was written by a write
   * that finished before the acknowledged one began (or the key is gone). Linearizability fails
   * them too; this counts them.
   */
  readonly lostWrites: number;
  /** For a history that is not linearizable: the smallest failing sub-history found (one key). */
  readonly counterexample: readonly RegisterOperation[];
  readonly failoversMs: readonly (number | null)[];
  readonly slos: readonly SloResult[];
  /** What the run's watchers delivered (watch-check.ts). */
  readonly watch: WatchCheck;
  readonly pass: boolean;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

export function checkRun(
  experiment: Experiment,
  workload: WorkloadResult,
  finalReads: readonly RegisterOperation[],
  faults: readonly FaultEvent[],
  crashedNodes: readonly string[],
  audit: readonly NodeAudit[],
  watch: WatchCheck,
  harnessErrors: readonly string[] = [],
): RunChecks {
  const history = [...workload.operations, ...finalReads];
  const verdict = checkLinearizability(registerModel, history, { stepsMax: 20_000_000 });
  const linearizabilityDetail =
    verdict.result === "not-linearizable"
      ? `key ${verdict.partition}: ${verdict.operations
          .slice(Math.max(0, verdict.linearizedCount - 2), verdict.linearizedCount + 3)
          .map((operation) => registerModel.describe(operation))
          .join("; ")}`
      : verdict.result === "unknown"
        ? verdict.reason
        : `${history.length} operations`;
  const lostWrites = countLostWrites(workload.operations, finalReads);
  const counterexample =
    verdict.result === "not-linearizable"
      ? shrinkCounterexample(verdict.operations, { budgetMs: 10_000, stepsMax: 1_000_000 })
      : [];
  // Failover: for a fault on the leader, the first write sent after it that succeeded.
  const writes = workload.operations.filter(
    // A check-and-set answered either way was committed (a mismatch is decided when it applies).
    (operation) => operation.input.kind !== "get" && operation.return !== Infinity,
  );
  const failoversMs = faults
    .filter((fault) => fault.takesLeader)
    .map((fault) => {
      const first = writes.filter((write) => write.call >= fault.atMs).sort((a, b) => a.return - b.return)[0];
      return first === undefined ? null : first.return - fault.atMs;
    });
  const successRate = workload.attempted === 0 ? 0 : workload.succeeded / workload.attempted;
  const worstFailover = failoversMs.some((value) => value === null)
    ? Number.POSITIVE_INFINITY
    : Math.max(0, ...(failoversMs as number[]));
  const slos: SloResult[] = [
    {
      name: "success rate",
      value: successRate,
      target: `>= ${experiment.slo.successRateMin}`,
      pass: successRate >= experiment.slo.successRateMin,
    },
  ];
  // Failover is measured only where a fault took a leader away.
  if (failoversMs.length > 0) {
    slos.push({
      name: "failover ms (worst)",
      value: worstFailover,
      target: `<= ${experiment.slo.failoverMsMax}`,
      pass: worstFailover <= experiment.slo.failoverMsMax,
    });
  }
  const p99 = (name: string, values: readonly number[], max: number | undefined) => {
    const value = percentile(values, 99);
    slos.push({
      name,
      value,
      target: max === undefined ? "-" : `<= ${max}`,
      pass: max === undefined || value <= max,
    });
  };
  p99("write p99 ms", workload.writeLatenciesMs, experiment.slo.writeP99MsMax);
  p99("read p99 ms", workload.readLatenciesMs, experiment.slo.readP99MsMax);
  return {
    linearizability: verdict.result,
    linearizabilityDetail,
    crashedNodes,
    audit,
    harnessErrors,
    lostWrites,
    counterexample,
    failoversMs,
    slos,
    watch,
    pass:
      verdict.result === "linearizable" &&
      watch.pass &&
      harnessErrors.length === 0 &&
      lostWrites === 0 &&
      crashedNodes.length === 0 &&
      audit.every((node) => node.pass) &&
      slos.every((slo) => slo.pass),
  };
}

function countLostWrites(
  operations: readonly RegisterOperation[],
  finalReads: readonly RegisterOperation[],
): number {
  let lost = 0;
  for (const final of finalReads) {
    const key = final.input.key;
    // Writes: puts, and check-and-sets that swapped (or may have: unknown outcome).
    const writes = operations.filter(
      (operation) =>
        operation.input.key === key &&
        (operation.input.kind === "put" || (operation.input.kind === "cas" && operation.output !== false)),
    );
    const finalWrite = writes.find(
      (operation) => operation.input.kind !== "get" && operation.input.value === final.output,
    );
    for (const write of writes) {
      if (write.return === Infinity || write === finalWrite) continue;
      // Acknowledged, and the value that survived was written entirely before it: it was lost.
      if (finalWrite === undefined ? final.output === null : finalWrite.return < write.call) lost += 1;
    }
  }
  return lost;
}
