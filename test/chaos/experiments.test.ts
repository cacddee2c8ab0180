import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadExperiment, parseExperiment } from "../../chaos/experiment.js";
import { describeFailures, runExperiment } from "../../chaos/run-experiment.js";
import { bundledCli } from "../server/process-cluster.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-chaos-"));
let command: string[] = [];
const lines: string[] = [];

beforeAll(async () => {
  command = [process.execPath, await bundledCli()];
}, 60_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const experimentFile = (name: string) =>
  new URL(`../../chaos/experiments/${name}.yaml`, import.meta.url).pathname;

it("leader-kill: the leader SIGKILLed twice; linearizable, nothing lost, failover under a second", async () => {
  const shipped = loadExperiment(experimentFile("leader-kill"));
  const experiment = {
    ...shipped,
    workload: { ...shipped.workload, durationMs: 9000 },
    faults: [
      { atMs: 1500, nemesis: "kill-leader" as const, healAfterMs: 2000 },
      { atMs: 5000, nemesis: "kill-leader" as const, healAfterMs: 2000 },
    ],
  };
  const out = join(root, "leader-kill");
  const report = await runExperiment(experiment, {
    seed: 7,
    out,
    command,
    hostBase: 250,
    basePort: 53_000,
    log: (line) => lines.push(line),
  });
  const printed = lines.join("\n");
  expect(report.checks.linearizability, printed).toBe("linearizable");
  expect(report.faults.map((fault) => fault.nemesis)).toEqual(["kill-leader", "kill-leader"]);
  // One fault at a time: the second kill comes only once the first killed node is back, even
  // when its restart and unseal outlast the schedule (then it is late, and says so).
  const [first, second] = report.faults;
  expect(second?.atMs, printed).toBeGreaterThanOrEqual(first?.healedAtMs ?? Number.POSITIVE_INFINITY);
  expect(second?.atMs, printed).toBeGreaterThanOrEqual(5000 + (second?.lateMs ?? 0));
  if ((second?.lateMs ?? 0) > 0) expect(printed).toContain("ms late, after the fault before it healed");
  expect(report.checks.failoversMs).toHaveLength(2);
  for (const failover of report.checks.failoversMs) expect(failover, printed).toBeLessThan(1000);
  expect(report.checks.crashedNodes).toEqual([]);
  expect(report.checks.pass, printed).toBe(true);
  expect(report.operations).toBeGreaterThan(500);
  expect(printed).toMatch(/fault kill-leader: n\d/);
  expect(printed).toMatch(/verdict: PASS/);
  // Why the failed operations failed, as counted in the report.
  expect(printed).toContain(
    `workload done: ${report.operations} operations, ${report.succeeded} succeeded${describeFailures(new Map(Object.entries(report.failures)))}\n`,
  );
  const written = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as { seed: number };
  expect(written.seed).toBe(7);
  // The page for people: self-contained (no script, nothing fetched), the verdict, the charts.
  const page = readFileSync(join(out, "report.html"), "utf8");
  expect(page).toContain('leader-kill: <span class="pass">PASS</span>');
  expect(page.match(/<svg /g)).toHaveLength(2);
  expect(page).not.toMatch(/<script|https?:\/\//);
  // Leader changes on the workload's clock: one shortly after each kill.
  for (const fault of report.faults) {
    expect(
      report.leaderChanges.some((change) => change.atMs > fault.atMs && change.atMs < fault.atMs + 1500),
    ).toBe(true);
  }
  // The history: every operation that succeeded or may have, and a final read of every key.
  const history = readFileSync(join(out, "history.jsonl"), "utf8")
    .split("\n")
    .map((line) => JSON.parse(line) as { input: { kind: string } });
  expect(history.length).toBeGreaterThanOrEqual(report.succeeded + experiment.workload.keys);
  expect(history.filter((operation) => operation.input.kind === "get").length).toBeGreaterThan(
    experiment.workload.keys,
  );
  // Check-and-sets too (a quarter of the writes), some refused because another write came first.
  const casOutputs = history
    .filter((operation) => operation.input.kind === "cas")
    .map((operation) => (operation as { output?: boolean }).output);
  expect(casOutputs.filter((output) => output === true).length).toBeGreaterThan(20);
  expect(casOutputs.filter((output) => output === false).length).toBeGreaterThan(0);
}, 120_000);

const partitionLog: string[] = [];

it("partition-leader: the leader hears no other node; it steps down, a new one serves, nothing stale", async () => {
  const shipped = loadExperiment(experimentFile("partition-leader"));
  const experiment = {
    ...shipped,
    workload: { ...shipped.workload, durationMs: 6000 },
    faults: [{ atMs: 1500, nemesis: "partition-leader-inbound" as const, healAfterMs: 2500 }],
  };
  const report = await runExperiment(experiment, {
    seed: 5,
    out: join(root, "partition"),
    command,
    hostBase: 250,
    basePort: 53_000,
    log: (line) => partitionLog.push(line),
  });
  const printed = partitionLog.join("\n");
  expect(report.checks.linearizability, printed).toBe("linearizable");
  expect(report.faults).toHaveLength(1);
  // A new leader, other than the one cut off, during the partition.
  const [fault] = report.faults;
  expect(
    report.leaderChanges.some(
      (change) =>
        change.atMs > (fault?.atMs ?? 0) &&
        change.atMs < (fault?.healedAtMs ?? 0) &&
        change.leader !== fault?.target &&
        change.leader !== "none",
    ),
    printed,
  ).toBe(true);
  expect(report.checks.crashedNodes).toEqual([]);
  expect(report.succeeded / report.operations, printed).toBeGreaterThanOrEqual(0.99);
  // Clients stuck on the cut-off node move on once it gives up waiting for a leader (at most
  // 2 s): far below the 5 s call deadline they used to wait out. The experiment's own SLO (1 s)
  // holds on an idle machine (docs/chaos.md); this bound holds on a loaded CI machine too.
  const [failover] = report.checks.failoversMs;
  expect(failover, printed).not.toBeNull();
  expect(failover ?? Number.POSITIVE_INFINITY, printed).toBeLessThan(4000);
}, 120_000);

it("catches a broken node: with reads served without ReadIndex, a node cut off answers stale reads", async () => {
  const experiment = parseExperiment(
    {
      name: "stale-reads",
      cluster: { size: 3, tickMs: 20 },
      // Clients pinned to nodes, so that followers serve reads too: a follower answering from its
      // own state is behind the leader by at least a heartbeat, whether or not a fault hits.
      // Plain reads and writes only (no check-and-sets), so the stale answer is a read.
      workload: {
        clients: 6,
        keys: 2,
        readRatio: 0.7,
        casRatio: 0,
        durationMs: 7000,
        timeoutMs: 5000,
        pinned: true,
      },
      // A follower that hears no other (one-way) stops learning of writes, and with the fault it keeps
      // answering its clients' reads from its own state for as long.
      faults: [
        { atMs: 1000, nemesis: "partition-follower-inbound", healAfterMs: 2000 },
        { atMs: 4000, nemesis: "partition-follower-inbound", healAfterMs: 2000 },
      ],
    },
    "stale-reads",
  );
  const report = await runExperiment(experiment, {
    seed: 3,
    out: join(root, "stale-reads"),
    command,
    hostBase: 250,
    basePort: 53_000,
    log: () => {},
    nodeEnv: { STRONGROOM_TEST_FAULTS: "stale-reads" },
  });
  expect(report.checks.linearizability).toBe("not-linearizable");
  expect(report.checks.linearizabilityDetail).toMatch(/^key chaos\/k\d: /);
  expect(report.checks.pass).toBe(false);
  // The smallest failing history: a handful of operations (two at least: a write, then a read
  // that does not see it), among them a stale read; drawn on a timeline in the report.
  const counterexample = report.checks.counterexample;
  expect(counterexample.length).toBeGreaterThanOrEqual(2);
  expect(counterexample.length).toBeLessThanOrEqual(8);
  expect(counterexample.some((operation) => operation.input.kind === "get")).toBe(true);
  const page = readFileSync(join(root, "stale-reads", "report.html"), "utf8");
  expect(page).toContain("Not linearizable: the smallest failing history found");
  expect(page.match(/<svg /g)).toHaveLength(3);
}, 120_000);
