// Runs one experiment: a cluster of real node processes, the workload, the faults at their times
// (targets chosen by the seed), then the heal, final reads of every key, the checks and the SLOs.
// Prints one line per event (fault, heal, leader change, verdict) and writes DIR/report.json,
// DIR/report.html and DIR/history.jsonl. The same seed gives the same workload choices and fault targets.

import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { StrongroomError } from "../client/index.js";
import { SeededRandom } from "../raft/core/index.js";
import { checkAuditTrail } from "./audit-check.js";
import type { RegisterOperation } from "./checker/index.js";
import { checkRun, type FaultEvent, percentile, type RunChecks } from "./checks.js";
import { dockerDriver } from "./docker-driver.js";
import { nodeImage, requireDocker } from "./docker-image.js";
import type { Experiment } from "./experiment.js";
import { type FaultContext, injectFault } from "./nemeses.js";
import { NetnsNetwork } from "./netns-network.js";
import { Partitions } from "./partitions.js";
import { ProcessCluster } from "./process-cluster.js";
import { renderReportHtml } from "./report-html.js";
import { checkWatches, WatchRecorder } from "./watch-check.js";
import { keyName, keyPrefix, runWorkload, type WorkloadResult } from "./workload.js";

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
  /**
   * With regions and pinned clients (client i on node i mod n): each region's read and write
   * latencies, as its clients saw them.
   */
  readonly latencyByRegionMs?: Record<string, Record<string, number>>;
  /** With raft.leaseReads: the reads the nodes still running at the end answered from a lease. */
  readonly leaseReads?: number;
  readonly checks: RunChecks;
}

/**
 * How to tear down each run in progress, for a `chaos run` stopped by a signal (Ctrl-C, a CI
 * job's cancel): without it, node processes (some stopped by SIGSTOP), a partition's nftables
 * table and the netns driver's namespaces would outlive the harness.
 */
const runsInProgress = new Set<() => Promise<void>>();

/**
 * Stops every run in progress now: every partition removed, every node killed (paused ones
 * too), the network and the containers taken down. Their reports are not written.
 */
export async function abortRunningExperiments(): Promise<void> {
  await Promise.allSettled([...runsInProgress].map((tearDown) => tearDown()));
}

export async function runExperiment(experiment: Experiment, options: RunOptions): Promise<Report> {
  const random = new SeededRandom(options.seed);
  // Absolute: the nodes' configs name their files, and a node reads a relative path from its config's folder.
  const out = resolve(options.out);
  mkdirSync(out, { recursive: true });
  const hostBase = options.hostBase ?? 100;
  const basePort = options.basePort ?? 39_000;
  const nemesesUsed = new Set(experiment.faults.map((fault) => fault.nemesis));
  const network =
    experiment.cluster.driver === "netns"
      ? new NetnsNetwork({
          size: experiment.cluster.size,
          tag: hostBase,
          clientPort: basePort,
          peerPort: basePort + 1,
          httpPort: basePort + 2,
          proxyBasePort: basePort + 10,
          // Its own generator from the seed, so the workload's and the faults' draws stay as they were.
          random: (() => {
            const jitter = new SeededRandom(options.seed ^ 0x5eed);
            return () => jitter.nextFloat();
          })(),
        })
      : null;
  if (experiment.cluster.driver === "docker") await requireDocker();
  const docker =
    experiment.cluster.driver === "docker"
      ? dockerDriver({
          image: experiment.cluster.image ?? (await nodeImage((line) => options.log(`docker: ${line}`))),
          directory: join(out, "cluster"),
          runId: String(basePort),
          environment: ["STRONGROOM_TEST_FAILPOINTS", ...Object.keys(options.nodeEnv ?? {})],
        })
      : null;
  docker?.removeAll(experiment.cluster.size);
  const cluster = new ProcessCluster({
    directory: join(out, "cluster"),
    size: experiment.cluster.size,
    tickMs: experiment.cluster.tickMs,
    hostBase,
    basePort,
    // The image's entrypoint runs the CLI.
    command: docker === null ? options.command : [],
    snapshotEveryEntries: experiment.cluster.snapshotEveryEntries,
    ...(experiment.cluster.snapshotLogToStateRatio === undefined
      ? {}
      : { snapshotLogToStateRatio: experiment.cluster.snapshotLogToStateRatio }),
    retainEntries: experiment.cluster.retainEntries,
    leaseReads: experiment.cluster.leaseReads,
    seal: experiment.cluster.seal,
    ...(experiment.cluster.dataDiskMiB === undefined ? {} : { dataDiskMiB: experiment.cluster.dataDiskMiB }),
    auditDisk: experiment.cluster.auditDisk,
    ...(experiment.cluster.regions === undefined ? {} : { regions: experiment.cluster.regions }),
    ...(experiment.cluster.preferredLeaderRegion === undefined
      ? {}
      : { nodeConfig: { preferredLeaderRegion: experiment.cluster.preferredLeaderRegion } }),
    ...(options.nodeEnv === undefined ? {} : { env: options.nodeEnv }),
    ...(network === null ? {} : { hosts: network.hosts, launcher: (index) => network.launcher(index) }),
    ...(docker === null ? {} : { launcher: docker.launcher, signaller: docker.signaller }),
    failpoints: [...nemesesUsed].some(
      (name) => name.startsWith("disk-stall") || name.startsWith("crash-point"),
    ),
    ...([...nemesesUsed].some((name) => name.startsWith("clock-skew"))
      ? { faketimeLibrary: requireFaketimeLibrary() }
      : {}),
  });
  const partitions = new Partitions(hostBase, basePort + 1);
  partitions.removeLeftover();
  let tornDown: Promise<void> | null = null;
  const tearDown = () => {
    tornDown ??= (async () => {
      await partitions.heal();
      await cluster.close();
      await network?.destroy();
      docker?.removeAll(experiment.cluster.size);
    })();
    return tornDown;
  };
  runsInProgress.add(tearDown);
  const started = performance.now();
  const clock = () => performance.now() - started;
  const say = (line: string) => options.log(`${(clock() / 1000).toFixed(3).padStart(8)}s  ${line}`);
  let watchers: WatchRecorder[] = [];
  try {
    say(
      `${experiment.name}: starting ${experiment.cluster.size} nodes (seed ${options.seed}, driver ${experiment.cluster.driver})`,
    );
    if (network !== null) {
      await network.create();
      applyRegionLatency(experiment, network, say);
    }
    await cluster.start();
    say("cluster initialized and unsealed");
    // Watchers of the workload's keys, one first on each node, in place before the first write.
    watchers = cluster.endpoints().map((_, first, endpoints) => {
      const rotated = [...endpoints.slice(first), ...endpoints.slice(0, first)];
      return new WatchRecorder(`watcher ${first + 1}`, cluster.client(rotated), keyPrefix);
    });
    await waitFor(() => watchers.every((watcher) => watcher.opened), 10_000, "the watchers to open");

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

    const faultContext: FaultContext = { cluster, network, partitions, random: random.fork(), say };
    const faults: FaultEvent[] = [];
    /** `previousHealedAt`: when the fault before it was healed (on the run's clock). */
    const injectAndHeal = async (fault: (typeof experiment.faults)[number], previousHealedAt: number) => {
      await sleepUntil(clock, workloadStart + fault.atMs);
      // Late by the previous heal's overrun only; a timer's few ms of jitter are not lateness.
      const lateMs = Math.max(0, Math.round(previousHealedAt - workloadStart - fault.atMs));
      if (lateMs > 0) {
        // Late, it still runs while the workload does (its heal may end after it); past the
        // workload's end there is nothing left for it to disturb or for the SLOs to measure.
        if (fault.atMs + lateMs >= experiment.workload.durationMs)
          throw new Error(
            `the fault before it healed ${lateMs} ms after this one's time, after the workload's ${experiment.workload.durationMs} ms`,
          );
        say(`${fault.nemesis}: ${lateMs} ms late, after the fault before it healed`);
      }
      const before = clock();
      const injected = await injectFault(fault, faultContext);
      // From when the fault took effect (finding the leader takes a moment); a fault whose
      // injection takes long (restarts, a member's removal) from its start.
      const fromStart =
        ["rolling-restart", "replace-member", "hsm-outage"].includes(fault.nemesis) ||
        fault.point === "during-snapshot-install";
      const atMs = fromStart ? before : clock();
      if (injected === null) {
        say(`${fault.nemesis}: no target (no leader, or no running node); skipped`);
        return;
      }
      say(`fault ${fault.nemesis}: ${injected.target} (${injected.detail})`);
      await sleepUntil(clock, atMs + fault.healAfterMs);
      const healing = await injected.heal();
      say(`healed ${injected.target}: ${healing}`);
      faults.push({
        nemesis: fault.nemesis,
        target: injected.target,
        detail: `${injected.detail}; ${healing}`,
        takesLeader: injected.takesLeader,
        atMs: atMs - workloadStart,
        lateMs,
        healedAtMs: clock() - workloadStart,
      });
    };
    // One fault at a time, in the schedule's order: a fault whose time comes while the one before
    // it is still healing (a killed node's restart and unseal took 3.5 s on a slow machine) waits
    // for that heal. Otherwise two faults meant to follow each other add up to one the experiment
    // did not ask for (two of three nodes down: no quorum), and the SLOs time that instead.
    // A nemesis that fails (a membership change that never went through) fails the run, with its
    // reason; it does not stop the run.
    const harnessErrors: string[] = [];
    const injections = (async () => {
      let previousHealedAt = 0;
      for (const [position, fault] of experiment.faults.entries()) {
        try {
          await injectAndHeal(fault, previousHealedAt);
        } catch (error) {
          const message = `faults.${position} (${fault.nemesis}): ${(error as Error).message}`;
          harnessErrors.push(message);
          say(`fault failed: ${message}`);
        }
        previousHealedAt = clock();
      }
    })();
    const workload = await runWorkload(
      (index) => {
        const endpoints = cluster.endpoints();
        const { readRouting } = experiment.workload;
        // Client i tries node i mod size first, as applications in their own random orders would
        // spread (the SDK's default), but the same in every replay of the run.
        const first = index % endpoints.length;
        const rotated = [...endpoints.slice(first), ...endpoints.slice(0, first)];
        if (!experiment.workload.pinned) return cluster.client(rotated, readRouting);
        // Pinned: client i is next to node i mod size; with regions, it reaches its region's nodes
        // (as a client in a region does), so a write from a region without the leader is forwarded.
        const home = index % endpoints.length;
        const regions = experiment.cluster.regions;
        return cluster.client(
          regions === undefined
            ? [endpoints[home] ?? ""]
            : endpoints.filter((_, node) => regions[node] === regions[home]),
          readRouting,
        );
      },
      experiment.workload,
      random.fork(),
      () => clock() - workloadStart,
    );
    await injections;
    say(
      `workload done: ${workload.attempted} operations, ${workload.succeeded} succeeded${describeFailures(workload.failures)}`,
    );

    // After the heal: every key read back, linearizably, as the last operations of the history.
    const reader = cluster.client(cluster.endpoints());
    const finalReads: RegisterOperation[] = [];
    // Each key's version at the end (0: never written), what every watcher must have delivered.
    const finalVersions = new Map<string, number>();
    try {
      for (let index = 0; index < experiment.workload.keys; index++) {
        const key = keyName(index);
        const call = clock() - workloadStart;
        let value: string | null = null;
        finalVersions.set(key, 0);
        try {
          const answer = await reader.secrets.get({ path: key }, { deadlineMs: 30_000 });
          value = Buffer.from(answer.value).toString("utf8");
          finalVersions.set(key, answer.version);
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
    // The watchers catch up (a watch on a node that was paused moves on after its pings' timeout).
    const caughtUp = () =>
      watchers.every(
        (watcher) =>
          watcher.problems.length > 0 ||
          [...finalVersions].every(([key, version]) => watcher.lastVersion(key) >= version),
      );
    // One still behind after that is not an error of the harness: the check below names what it lacks.
    await waitFor(caughtUp, 30_000, "the watchers to catch up").catch(() => undefined);
    for (const watcher of watchers) watcher.close();
    const watch = checkWatches(watchers, finalVersions);
    say(
      `watch: ${watch.watchers} watchers, ${watch.events} events, reconnections ${JSON.stringify(watch.reconnections)}: ${watch.pass ? "every version of every key once, in order" : `FAIL: ${watch.problems.slice(0, 3).join("; ")}`}`,
    );

    // A run that leases reads must have had some answered from a lease, or it tested nothing of
    // it (the lease starts only once every member said it withholds its vote as the lease needs).
    // Counted on the nodes running now: a node killed took its count with it.
    let leaseReads: number | undefined;
    if (experiment.cluster.leaseReads) {
      const counts = await Promise.all(
        cluster.running().map((node) => cluster.metricOf(node, "strongroom_raft_lease_reads_total")),
      );
      leaseReads = counts.reduce((sum, count) => sum + count, 0);
      say(`lease: ${leaseReads} reads answered from a lease by the nodes running at the end`);
      if (leaseReads === 0)
        harnessErrors.push(
          "raft.leaseReads is on, but no running node answered a read from its lease: the run did not test the lease",
        );
    }

    // Every node stopped gracefully (its audit trail closed), then every trail checked.
    const crashed = cluster.crashed();
    const auditKey = await cluster.auditKey();
    const forced = await cluster.stopGracefully();
    if (forced.length > 0) say(`nodes that did not stop on SIGTERM in 10 s: ${forced.join(", ")}`);
    const audits = [...cluster.nodes, ...cluster.retired].map((node) =>
      checkAuditTrail(node.id, cluster.auditDirectory(node), auditKey, cluster.killed.has(node.id)),
    );
    auditKey.fill(0);
    for (const audit of audits) {
      say(
        `audit ${audit.node}: ${audit.entries} entries, ${audit.pass ? "complete" : `FAIL: ${audit.problems.slice(0, 3).join("; ")}`}${audit.inFlightAtKill > 0 ? ` (${audit.inFlightAtKill} requests in flight when it was killed)` : ""}`,
      );
    }

    const checks = checkRun(experiment, workload, finalReads, faults, crashed, audits, watch, harnessErrors);
    const byRegion = latencyByRegion(experiment, workload);
    for (const [region, figures] of Object.entries(byRegion ?? {})) {
      say(
        `region ${region}: reads p50/p99 ${figures.readP50}/${figures.readP99} ms, writes p50/p99 ${figures.writeP50}/${figures.writeP99} ms`,
      );
    }
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
      ...(byRegion === undefined ? {} : { latencyByRegionMs: byRegion }),
      ...(leaseReads === undefined ? {} : { leaseReads }),
      checks,
    };
    writeFileSync(join(out, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(
      join(out, "report.html"),
      renderReportHtml(report, [...workload.operations, ...finalReads]),
    );
    writeFileSync(
      join(out, "history.jsonl"),
      [...workload.operations, ...finalReads]
        .map((operation) =>
          JSON.stringify({ ...operation, return: operation.return === Infinity ? null : operation.return }),
        )
        .join("\n"),
    );
    say(`linearizability: ${checks.linearizability} (${checks.linearizabilityDetail})`);
    for (const slo of checks.slos)
      say(`slo ${slo.name}: ${round(slo.value)} (target ${slo.target}) ${slo.pass ? "pass" : "FAIL"}`);
    for (const error of checks.harnessErrors) say(`harness error: ${error}`);
    if (checks.crashedNodes.length > 0)
      say(`nodes that died by themselves: ${checks.crashedNodes.join(", ")}`);
    say(`verdict: ${checks.pass ? "PASS" : "FAIL"} (report in ${join(out, "report.json")})`);
    return report;
  } finally {
    for (const watcher of watchers) watcher.close();
    runsInProgress.delete(tearDown);
    await tearDown();
  }
}

/** Each pair of nodes in different regions gets its regions' round trip (or none if not listed). */
function applyRegionLatency(
  experiment: Experiment,
  network: NetnsNetwork,
  say: (line: string) => void,
): void {
  const regions = experiment.cluster.regions;
  const links = experiment.network?.links ?? [];
  if (regions === undefined || links.length === 0) return;
  for (const [a, regionA] of regions.entries()) {
    for (const [b, regionB] of regions.entries()) {
      if (b <= a) continue;
      const link = links.find(
        ({ between: [x, y] }) => (x === regionA && y === regionB) || (x === regionB && y === regionA),
      );
      if (link !== undefined) network.setLinkLatency(a, b, link.rttMs, link.jitterMs);
    }
  }
  say(
    `regions: ${regions.map((region, index) => `n${index + 1}@${region}`).join(" ")}; ${links
      .map((link) => `${link.between.join("-")} ${link.rttMs}±${link.jitterMs} ms`)
      .join(", ")}`,
  );
}

const faketimeLibraries = [
  "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
  "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
] as const;

function requireFaketimeLibrary(): string {
  const found = faketimeLibraries.find((path) => existsSync(path));
  if (found === undefined)
    throw new Error("clock skew needs libfaketime: apt-get install -y libfaketime (Debian's package)");
  return found;
}

/** Resolves once `condition` holds; rejects after `timeoutMs`, naming what it waited for. */
async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function sleepUntil(clock: () => number, atMs: number): Promise<void> {
  const wait = atMs - clock();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}

function round(value: number): string {
  return Number.isFinite(value) ? String(Math.round(value * 10_000) / 10_000) : String(value);
}

/** Each region's latencies, when clients are pinned to nodes (client i on node i mod n) with regions. */
function latencyByRegion(
  experiment: Experiment,
  workload: WorkloadResult,
): Record<string, Record<string, number>> | undefined {
  const regions = experiment.cluster.regions;
  if (regions === undefined || experiment.workload.pinned !== true) return undefined;
  const grouped = new Map<string, { reads: number[]; writes: number[] }>();
  for (const [clientId, own] of workload.latenciesByClient) {
    const region = regions[clientId % regions.length] ?? "";
    const group = grouped.get(region) ?? { reads: [], writes: [] };
    // A loop, not push(...): one client's latencies in a long run are more arguments than a call takes.
    for (const latency of own.reads) group.reads.push(latency);
    for (const latency of own.writes) group.writes.push(latency);
    grouped.set(region, group);
  }
  const round = (value: number) => Math.round(value * 10) / 10;
  return Object.fromEntries(
    [...grouped].map(([region, group]) => [
      region,
      {
        reads: group.reads.length,
        readP50: round(percentile(group.reads, 50)),
        readP99: round(percentile(group.reads, 99)),
        writes: group.writes.length,
        writeP50: round(percentile(group.writes, 50)),
        writeP99: round(percentile(group.writes, 99)),
      },
    ]),
  );
}

/**
 * Why the operations that failed did, most first: "; failed: 2 of unknown outcome, 1 NO_LEADER"
 * (nothing when none did). A write of unknown outcome was in flight on a node that died: the SDK
 * cannot retry it, and the history keeps it as possibly applied.
 */
export function describeFailures(failures: ReadonlyMap<string, number>): string {
  if (failures.size === 0) return "";
  const counts = [...failures].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  return `; failed: ${counts.map(([reason, count]) => `${count} ${reason === "unknown" ? "of unknown outcome" : reason}`).join(", ")}`;
}
