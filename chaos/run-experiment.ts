// Runs one experiment: a cluster of real node processes, the workload, the faults at their times
// (targets chosen by the seed), then the heal, final reads of every key, the checks and the SLOs.
// Prints one line per event (fault, heal, leader change, verdict) and writes DIR/report.json,
// DIR/report.html and DIR/history.jsonl. The same seed gives the same workload choices and fault targets.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { StrongroomError } from "../client/index.js";
import { SeededRandom } from "../raft/core/index.js";
import type { RegisterOperation } from "./checker/index.js";
import { checkRun, type FaultEvent, percentile, type RunChecks } from "./checks.js";
import type { Experiment } from "./experiment.js";
import { Partitions } from "./partitions.js";
import { ProcessCluster } from "./process-cluster.js";
import { renderReportHtml } from "./report-html.js";
import { keyName, runWorkload } from "./workload.js";

export interface RunOptions {
  readonly seed: number;
  readonly out: string;
  /** How to run the strongroom CLI (the node executable's arguments before "server"). */
  readonly command: readonly string[];
  /** Nodes listen on 127.0.0.<hostBase + i>:<basePort..+2>. */
  readonly hostBase?: number;
  readonly basePort?: number;
  readonly log: (line: string) => void;
  /** Extra environment of the node processes (STRONGROOM_TEST_FAULTS, for the harness's own tests). */
  readonly nodeEnv?: Readonly<Record<string, string>>;
}

export interface Report {
  readonly experiment: string;
  readonly seed: number;
  readonly durationMs: number;
  readonly operations: number;
  readonly succeeded: number;
  readonly failures: Record<string, number>;
  readonly faults: readonly FaultEvent[];
  readonly leaderChanges: readonly { readonly atMs: number; readonly leader: string }[];
  readonly latencyMs: Record<string, number>;
  readonly checks: RunChecks;
}

export async function runExperiment(experiment: Experiment, options: RunOptions): Promise<Report> {
  const random = new SeededRandom(options.seed);
  mkdirSync(options.out, { recursive: true });
  const cluster = new ProcessCluster({
    directory: join(options.out, "cluster"),
    size: experiment.cluster.size,
    tickMs: experiment.cluster.tickMs,
    hostBase: options.hostBase ?? 100,
    basePort: options.basePort ?? 39_000,
    command: options.command,
    ...(options.nodeEnv === undefined ? {} : { env: options.nodeEnv }),
  });
  const partitions = new Partitions();
  const started = performance.now();
  const clock = () => performance.now() - started;
  const say = (line: string) => options.log(`${(clock() / 1000).toFixed(3).padStart(8)}s  ${line}`);
  try {
    say(`${experiment.name}: starting ${experiment.cluster.size} nodes (seed ${options.seed})`);
    await cluster.start();
    say("cluster initialized and unsealed");

    // Times in the report and the history are from here, the workload's start.
    const workloadStart = clock();
    // Leader changes, as the nodes report them.
    const leaderChanges: { atMs: number; leader: string }[] = [];
    let watching = true;
    const watchLeader = (async () => {
      let last = "";
      while (watching) {
        const leader = (await cluster.leader())?.id ?? "none";
        if (leader !== last) {
          // On the workload's clock, as the faults and the history are.
          leaderChanges.push({ atMs: clock() - workloadStart, leader });
          say(`leader: ${leader}`);
          last = leader;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();

    const faultRandom = random.fork();
    const faults: FaultEvent[] = [];
    const injections = experiment.faults.map(async (fault) => {
      await sleepUntil(clock, workloadStart + fault.atMs);
      if (fault.nemesis === "rolling-restart") {
        const atMs = clock();
        for (const node of cluster.nodes) {
          say(`rolling restart: stopping ${node.id} (SIGTERM)`);
          await cluster.terminate(node);
          await cluster.restart(node);
          say(`rolling restart: ${node.id} back, unsealed`);
        }
        faults.push({
          nemesis: fault.nemesis,
          target: "all",
          atMs: atMs - workloadStart,
          healedAtMs: clock() - workloadStart,
        });
        return;
      }
      const leader = await cluster.leader();
      const running = cluster.nodes.filter((node) => node.child !== null && !node.paused);
      const target = fault.nemesis.includes("-leader") ? leader : faultRandom.pick(running);
      if (target === null || target === undefined) {
        say(`${fault.nemesis}: no target (no leader, or no running node); skipped`);
        return;
      }
      const atMs = clock();
      const kind = fault.nemesis.split("-")[0];
      if (kind === "kill") cluster.kill(target);
      else if (kind === "pause") cluster.pause(target);
      else partitions.cutInbound(target.host, cluster.peerPort);
      say(`fault ${fault.nemesis}: ${target.id}`);
      await sleepUntil(clock, atMs + fault.healAfterMs);
      if (kind === "kill") await cluster.restart(target);
      else if (kind === "pause") cluster.resume(target);
      else partitions.heal();
      const healedAtMs = clock();
      say(
        `healed ${target.id} (${kind === "kill" ? "restarted and unsealed" : kind === "pause" ? "resumed" : "partition removed"})`,
      );
      faults.push({
        nemesis: fault.nemesis,
        target: target.id,
        atMs: atMs - workloadStart,
        healedAtMs: healedAtMs - workloadStart,
      });
    });
    const workload = await runWorkload(
      () => cluster.client(cluster.endpoints()),
      experiment.workload,
      random.fork(),
      () => clock() - workloadStart,
    );
    await Promise.all(injections);
    say(`workload done: ${workload.attempted} operations, ${workload.succeeded} succeeded`);

    // After the heal: every key read back, linearizably, as the last operations of the history.
    const reader = cluster.client(cluster.endpoints());
    const finalReads: RegisterOperation[] = [];
    try {
      for (let index = 0; index < experiment.workload.keys; index++) {
        const key = keyName(index);
        const call = clock() - workloadStart;
        let value: string | null = null;
        try {
          value = Buffer.from(
            (await reader.secrets.get({ path: key }, { deadlineMs: 30_000 })).value,
          ).toString("utf8");
        } catch (error) {
          if (!(error instanceof StrongroomError && error.reason === "NOT_FOUND")) throw error;
        }
        finalReads.push({
          id: 1_000_000_000 + index,
          client: 1_000_000_000,
          input: { kind: "get", key },
          output: value,
          call,
          return: clock() - workloadStart,
        });
      }
    } finally {
      reader.close();
    }
    watching = false;
    await watchLeader;

    const checks = checkRun(experiment, workload, finalReads, faults, cluster.crashed());
    const report: Report = {
      experiment: experiment.name,
      seed: options.seed,
      durationMs: experiment.workload.durationMs,
      operations: workload.attempted,
      succeeded: workload.succeeded,
      failures: Object.fromEntries(workload.failures),
      faults,
      leaderChanges,
      latencyMs: {
        readP50: percentile(workload.readLatenciesMs, 50),
        readP99: percentile(workload.readLatenciesMs, 99),
        readP999: percentile(workload.readLatenciesMs, 99.9),
        writeP50: percentile(workload.writeLatenciesMs, 50),
        writeP99: percentile(workload.writeLatenciesMs, 99),
        writeP999: percentile(workload.writeLatenciesMs, 99.9),
      },
      checks,
    };
    writeFileSync(join(options.out, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(
      join(options.out, "report.html"),
      renderReportHtml(report, [...workload.operations, ...finalReads]),
    );
    writeFileSync(
      join(options.out, "history.jsonl"),
      [...workload.operations, ...finalReads]
        .map((operation) =>
          JSON.stringify({ ...operation, return: operation.return === Infinity ? null : operation.return }),
        )
        .join("\n"),
    );
    say(`linearizability: ${checks.linearizability} (${checks.linearizabilityDetail})`);
    for (const slo of checks.slos)
      say(`slo ${slo.name}: ${round(slo.value)} (target ${slo.target}) ${slo.pass ? "pass" : "FAIL"}`);
    if (checks.crashedNodes.length > 0)
      say(`nodes that died by themselves: ${checks.crashedNodes.join(", ")}`);
    say(`verdict: ${checks.pass ? "PASS" : "FAIL"} (report in ${join(options.out, "report.json")})`);
    return report;
  } finally {
    partitions.heal();
    await cluster.stop();
  }
}

async function sleepUntil(clock: () => number, atMs: number): Promise<void> {
  const wait = atMs - clock();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}

function round(value: number): string {
  return Number.isFinite(value) ? String(Math.round(value * 10_000) / 10_000) : String(value);
}
