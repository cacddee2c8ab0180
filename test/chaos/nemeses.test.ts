// The chaos harness's nemeses beyond kills and pauses, each on real node processes, each checked
// for having happened (not only for the run passing): crash points (test failpoints: the node
// SIGKILLs itself inside a Ready, is restarted, and its audit trail still verifies); symmetric
// partitions and a majority/minority split between nodes in network namespaces of their own (root);
// region latency and packet loss through the netns driver (a write pays a round trip); and a wall
// clock set a minute ahead with libfaketime (the node's audit entries carry the skewed time).

import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseExperiment } from "../../chaos/experiment.js";
import { runExperiment } from "../../chaos/run-experiment.js";
import { bundledCli } from "../server/process-cluster.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-nemeses-"));
let command: string[] = [];

beforeAll(async () => {
  command = [process.execPath, await bundledCli()];
}, 60_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Process-driver runs on 127.0.0.245-247; netns runs on 10.77.245.0/24; ports from 54000.
const where = { hostBase: 245, basePort: 54_000 };

it("crash points: nodes die inside a Ready, come back, and nothing acknowledged is lost", async () => {
  const lines: string[] = [];
  const experiment = parseExperiment(
    {
      name: "crash-points-short",
      cluster: { size: 3, tickMs: 20 },
      workload: { clients: 4, keys: 4, readRatio: 0.5, durationMs: 9000, timeoutMs: 5000 },
      // The second crash is scheduled after the first node is back (a restart and unseal took up
      // to 3.4 s on a loaded CI machine); the harness would hold it until then anyway.
      faults: [
        { atMs: 1000, nemesis: "crash-point-leader", point: "after-persist", healAfterMs: 1000 },
        { atMs: 5500, nemesis: "crash-point-random", point: "before-apply", healAfterMs: 1500 },
      ],
      // Writes in flight at a crash end with an unknown outcome: they count against the rate.
      slo: { successRateMin: 0.99 },
    },
    "crash-points-short",
  );
  const report = await runExperiment(experiment, {
    seed: 11,
    out: join(root, "crash"),
    command,
    ...where,
    log: (line) => lines.push(line),
  });
  const printed = lines.join("\n");
  expect(report.faults.map((fault) => fault.detail)).toEqual([
    "crash at after-persist; died at after-persist; restarted and unsealed",
    "crash at before-apply; died at before-apply; restarted and unsealed",
  ]);
  expect(report.checks.linearizability, printed).toBe("linearizable");
  // The harness made them die: not counted as crashes of their own.
  expect(report.checks.crashedNodes).toEqual([]);
  // Every node's trail verifies after the graceful stop at the end; the dead ones may have had
  // calls in flight.
  expect(report.checks.audit.map((audit) => audit.node)).toEqual(["n1", "n2", "n3"]);
  for (const audit of report.checks.audit) {
    expect(audit.problems, printed).toEqual([]);
    expect(audit.entries).toBeGreaterThan(0);
    if (!report.faults.some((fault) => fault.target === audit.node)) expect(audit.inFlightAtKill).toBe(0);
  }
  expect(report.checks.failoversMs).toHaveLength(1);
  expect(report.checks.pass, printed).toBe(true);
}, 120_000);

it("netns: a symmetric partition of the leader, a minority against the majority, then a bridge", async () => {
  const lines: string[] = [];
  const experiment = parseExperiment(
    {
      name: "partitions-short",
      cluster: { size: 5, tickMs: 20, driver: "netns" },
      workload: { clients: 4, keys: 4, readRatio: 0.6, durationMs: 11_500, timeoutMs: 5000 },
      faults: [
        { atMs: 1000, nemesis: "partition-leader", healAfterMs: 2500 },
        { atMs: 4500, nemesis: "partition-majority-minority", healAfterMs: 2500 },
        { atMs: 8000, nemesis: "partition-bridge", healAfterMs: 2500 },
      ],
    },
    "partitions-short",
  );
  const report = await runExperiment(experiment, {
    seed: 2,
    out: join(root, "partitions"),
    command,
    ...where,
    log: (line) => lines.push(line),
  });
  const printed = lines.join("\n");
  expect(report.checks.linearizability, printed).toBe("linearizable");
  const [isolated, split, bridged] = report.faults;
  expect(isolated?.detail).toMatch(/^cut off from every other node/);
  expect(split?.detail).toMatch(/^n\d\+n\d \| n\d\+n\d\+n\d;/);
  expect(bridged?.detail).toMatch(/^n\d\+n\d \| n\d \| n\d\+n\d; bridge removed$/);
  // While the leader was cut off, another node led: the partition was real, both ways.
  expect(
    report.leaderChanges.some(
      (change) =>
        change.atMs > (isolated?.atMs ?? 0) &&
        change.atMs < (isolated?.healedAtMs ?? 0) &&
        !["none", isolated?.target].includes(change.leader),
    ),
    printed,
  ).toBe(true);
  expect(report.checks.crashedNodes).toEqual([]);
  expect(
    report.checks.audit.every((audit) => audit.pass),
    printed,
  ).toBe(true);
  expect(report.succeeded / report.operations, printed).toBeGreaterThanOrEqual(0.99);
  // Every namespace and the bridge are gone after the run.
  expect(readdirSync("/run/netns").filter((name) => name.startsWith("sr245"))).toEqual([]);
}, 120_000);

it("netns: regions 60 ms apart make every write pay a round trip; packet loss loses nothing", async () => {
  const lines: string[] = [];
  const experiment = parseExperiment(
    {
      name: "regions-short",
      cluster: { size: 3, tickMs: 50, driver: "netns", regions: ["a", "b", "c"] },
      network: {
        links: [
          { between: ["a", "b"], rttMs: 60 },
          { between: ["b", "c"], rttMs: 60 },
          { between: ["a", "c"], rttMs: 60 },
        ],
      },
      workload: { clients: 3, keys: 4, readRatio: 0.5, durationMs: 6000, timeoutMs: 8000 },
      faults: [{ atMs: 2000, nemesis: "loss-random", percent: 20, healAfterMs: 2500 }],
    },
    "regions-short",
  );
  const report = await runExperiment(experiment, {
    seed: 4,
    out: join(root, "regions"),
    command,
    ...where,
    log: (line) => lines.push(line),
  });
  const printed = lines.join("\n");
  expect(printed).toContain("regions: n1@a n2@b n3@c; a-b 60±0 ms, b-c 60±0 ms, a-c 60±0 ms");
  expect(report.faults[0]?.detail).toMatch(/^20% of packets lost on its links/);
  // A commit needs the leader and one follower: a round trip between regions, at least.
  expect(report.latencyMs.writeP50, printed).toBeGreaterThanOrEqual(55);
  expect(report.checks.linearizability, printed).toBe("linearizable");
  expect(report.checks.crashedNodes).toEqual([]);
}, 120_000);

it("clock skew: a node's wall clock a minute ahead changes its timestamps, not what it serves", async () => {
  const lines: string[] = [];
  const experiment = parseExperiment(
    {
      name: "clock-skew-short",
      cluster: { size: 3, tickMs: 20 },
      workload: { clients: 3, keys: 4, readRatio: 0.5, durationMs: 6000, timeoutMs: 5000 },
      faults: [{ atMs: 1500, nemesis: "clock-skew-leader", skewMs: 60_000, healAfterMs: 3000 }],
    },
    "clock-skew-short",
  );
  const out = join(root, "clock");
  const started = Date.now();
  const report = await runExperiment(experiment, {
    seed: 8,
    out,
    command,
    ...where,
    log: (line) => lines.push(line),
  });
  const printed = lines.join("\n");
  expect(report.checks.linearizability, printed).toBe("linearizable");
  expect(report.checks.pass, printed).toBe(true);
  const target = report.faults[0]?.target ?? "";
  expect(target).toMatch(/^n\d$/);
  // The skewed node stamped entries a minute ahead of the real clock while the fault lasted.
  const auditDirectory = join(out, "cluster", "data", target, "audit");
  const times = readdirSync(auditDirectory)
    .filter((name) => name.endsWith(".jsonl"))
    .flatMap((name) => readFileSync(join(auditDirectory, name), "utf8").split("\n"))
    .filter((line) => line.startsWith("{"))
    .map((line) => Date.parse((JSON.parse(line) as { time?: string }).time ?? ""))
    .filter((time) => Number.isFinite(time));
  expect(times.some((time) => time > Date.now() + 30_000 && time > started + 50_000)).toBe(true);
}, 120_000);
