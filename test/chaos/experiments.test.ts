// The chaos harness on real node processes: the shipped leader-kill experiment (shortened) must
// pass - a linearizable history with nothing lost and failover under a second each time - with its
// report written; the same harness must fail a cluster deliberately broken (reads without
// ReadIndex, STRONGROOM_TEST_FAULTS=stale-reads) once a node is cut off, with clients pinned to nodes; and an experiment file
// with problems is refused with each one named.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadExperiment, parseExperiment, repeatExperiment } from "../../chaos/experiment.js";
import { describeFailures, runExperiment } from "../../chaos/run-experiment.js";
import { startNode } from "../cli/cli-runner.js";
import { bundledCli } from "../server/process-cluster.js";
import { eventually } from "../support/eventually.js";

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

it("a chaos run stopped by a signal leaves no node running and no partition behind", async () => {
  // What a harness killed mid-partition left (SIGKILL leaves no time to heal): the next run on
  // these addresses removes it, or its first node would hear no other and never unseal.
  execFileSync("nft", ["-f", "-"], {
    input:
      "table inet strongroom_chaos_214_43001 { chain input { type filter hook input priority 0; policy accept; ip daddr 127.0.0.214 tcp dport 43001 drop; }; }\n",
  });
  const file = join(root, "interrupted.yaml");
  const out = join(root, "interrupted");
  writeFileSync(
    file,
    JSON.stringify({
      name: "interrupted",
      workload: { clients: 1, keys: 2, readRatio: 0.5, durationMs: 30_000 },
      faults: [{ atMs: 500, nemesis: "partition-leader-inbound", healAfterMs: 20_000 }],
    }),
  );
  const run = startNode([
    ...command.slice(1),
    "chaos",
    "run",
    file,
    "--out",
    out,
    "--port",
    "43000",
    "--host-base",
    "214",
  ]);
  // Found by what only this run has: its nodes' configs, its partition's rule (other runs may
  // hold tables of their own meanwhile).
  const nodes = () => {
    try {
      return execFileSync("pgrep", ["-f", `${out}/cluster/n`], { encoding: "utf8" }).trim();
    } catch {
      return ""; // pgrep exits 1 when nothing matches
    }
  };
  const partitioned = () =>
    /ip daddr 127\.0\.0\.21[4-6] tcp dport 43001 drop/.test(
      execFileSync("nft", ["list", "ruleset"], { encoding: "utf8" }),
    );
  try {
    await eventually(() => run.output().stdout.includes("fault partition-leader-inbound"), 60_000);
    expect(nodes().split("\n")).toHaveLength(3);
    expect(partitioned()).toBe(true);
  } finally {
    run.child.kill("SIGINT");
  }
  const { code, stderr } = await run.exited;
  expect(code, stderr).toBe(130);
  expect(stderr).toContain("strongroom chaos: SIGINT: stopping the cluster and removing every fault");
  expect(nodes()).toBe("");
  expect(partitioned()).toBe(false);
}, 90_000);

it("a chaos run whose cluster cannot start says why in one line (exit 1), not with a stack", async () => {
  // Node 1's client port taken: its node exits at start.
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(43_100, "127.0.0.217", () => resolve()));
  const file = join(root, "taken.yaml");
  writeFileSync(
    file,
    JSON.stringify({
      name: "taken",
      workload: { clients: 1, keys: 1, readRatio: 0.5, durationMs: 2000 },
      faults: [],
    }),
  );
  try {
    const run = startNode([
      ...command.slice(1),
      "chaos",
      "run",
      file,
      "--out",
      join(root, "taken"),
      "--port",
      "43100",
      "--host-base",
      "217",
    ]);
    const { code, stderr } = await run.exited;
    expect(code, stderr).toBe(1);
    expect(stderr).toContain(
      "strongroom chaos: taken could not run: n1 exited at start (code 1): strongroom server: cannot listen on 127.0.0.217:43100 (listen.client): the port is in use (another process listens there)\n",
    );
    expect(stderr).not.toMatch(/\n\s+at /);
  } finally {
    blocker.close();
  }
}, 60_000);

it("says why the workload's failed operations failed, most first", () => {
  expect(describeFailures(new Map())).toBe("");
  expect(
    describeFailures(
      new Map([
        ["NO_LEADER", 1],
        ["unknown", 2],
        ["DEADLINE_EXCEEDED", 1],
      ]),
    ),
  ).toBe("; failed: 2 of unknown outcome, 1 DEADLINE_EXCEEDED, 1 NO_LEADER");
});

it("refuses an experiment with problems, naming each", () => {
  expect(() =>
    parseExperiment(
      {
        name: "Bad Name",
        cluster: { size: 4 },
        workload: { clients: 0, keys: 1, readRatio: 2, durationMs: 5000 },
        faults: [{ atMs: 0, nemesis: "meteor", healAfterMs: 0 }],
        colour: "red",
      },
      "bad.yaml",
    ),
  ).toThrow(
    /bad\.yaml has \d+ problem\(s\):[\s\S]*name: [\s\S]*cluster\.size: must be 3 or 5\n[\s\S]*workload\.clients[\s\S]*workload\.readRatio[\s\S]*faults\.0\.nemesis/,
  );
  expect(() =>
    parseExperiment(
      {
        name: "late",
        workload: { clients: 1, keys: 1, readRatio: 0.5, durationMs: 5000 },
        faults: [{ atMs: 4000, nemesis: "kill-leader", healAfterMs: 2000 }],
      },
      "late.yaml",
    ),
  ).toThrow("late.yaml: faults.0 is not healed before the workload ends");
  // Faults run one at a time, in order: a schedule that stacks one on another is refused.
  expect(() =>
    parseExperiment(
      {
        name: "stacked",
        workload: { clients: 1, keys: 1, readRatio: 0.5, durationMs: 10_000 },
        faults: [
          { atMs: 1000, nemesis: "kill-leader", healAfterMs: 3000 },
          { atMs: 3000, nemesis: "kill-random", healAfterMs: 1000 },
          { atMs: 2000, nemesis: "pause-random", healAfterMs: 1000 },
        ],
      },
      "stacked.yaml",
    ),
  ).toThrow(
    "stacked.yaml: faults.1 comes at 3000 ms, before faults.0 is healed (4000 ms): faults run one at a time, in order; faults.2 comes at 2000 ms, before faults.1 is healed (4000 ms): faults run one at a time, in order",
  );
  // Network faults need each node in a namespace of its own; regions must name every node, and
  // links only regions that exist.
  expect(() =>
    parseExperiment(
      {
        name: "netless",
        cluster: { size: 3, regions: ["a", "b"] },
        network: { links: [{ between: ["a", "mars"], rttMs: 10 }] },
        workload: { clients: 1, keys: 1, readRatio: 0.5, durationMs: 5000 },
        faults: [{ atMs: 1000, nemesis: "partition-majority-minority", healAfterMs: 1000 }],
      },
      "netless.yaml",
    ),
  ).toThrow(
    'netless.yaml: faults.0: partition-majority-minority needs cluster.driver: netns; cluster.regions names 2 regions for 3 nodes; network needs cluster.driver: netns; network.links.0: no node is in region "mars"',
  );
  // The docker driver: no libfaketime or SoftHSM in the image; an image only for it; a preferred
  // leader region that is some node's.
  expect(() =>
    parseExperiment(
      {
        name: "boxed",
        cluster: {
          size: 3,
          driver: "docker",
          seal: "hsm",
          regions: ["a", "a", "b"],
          preferredLeaderRegion: "c",
        },
        workload: { clients: 1, keys: 1, readRatio: 0.5, durationMs: 5000 },
        faults: [{ atMs: 1000, nemesis: "clock-skew-random", healAfterMs: 1000 }],
      },
      "boxed.yaml",
    ),
  ).toThrow(
    'boxed.yaml: faults.0: clock-skew-random is not available with cluster.driver: docker; cluster.seal: hsm is not available with cluster.driver: docker (the image has no SoftHSM token); cluster.preferredLeaderRegion "c" is no node\'s region',
  );
  expect(() =>
    parseExperiment(
      {
        name: "imaged",
        cluster: { size: 3, image: "strongroom:test" },
        workload: { clients: 1, keys: 1, readRatio: 0.5, durationMs: 5000 },
        faults: [],
      },
      "imaged.yaml",
    ),
  ).toThrow("imaged.yaml: cluster.image needs cluster.driver: docker");
  // A full disk needs a disk of the node's own to fill, not the machine's.
  expect(() =>
    parseExperiment(
      {
        name: "full",
        cluster: { size: 3 },
        workload: { clients: 1, keys: 1, readRatio: 0.5, durationMs: 5000 },
        faults: [{ atMs: 0, nemesis: "disk-full-random", healAfterMs: 1000 }],
      },
      "full.yaml",
    ),
  ).toThrow(
    "full.yaml: faults.0: disk-full-random needs cluster.dataDiskMiB (each node's data on a tmpfs of its own)",
  );
  expect(() =>
    parseExperiment(
      {
        name: "nowhere",
        workload: { clients: 1, keys: 1, readRatio: 0.5, durationMs: 5000 },
        faults: [{ atMs: 1000, nemesis: "crash-point-random", point: "mid-lunch", healAfterMs: 1000 }],
      },
      "nowhere.yaml",
    ),
  ).toThrow(/nowhere\.yaml has 1 problem\(s\):\n {2}- faults\.0\.point: /);
});

it("repeats an experiment for a soak: the workload n times as long, the faults every period", () => {
  const base = parseExperiment(
    {
      name: "twice",
      workload: { clients: 1, keys: 1, readRatio: 0.5, durationMs: 10_000 },
      faults: [
        { atMs: 1000, nemesis: "kill-leader", healAfterMs: 2000 },
        { atMs: 5000, nemesis: "pause-random", healAfterMs: 1000 },
      ],
    },
    "twice.yaml",
  );
  const soak = repeatExperiment(base, 3);
  expect(soak.workload.durationMs).toBe(30_000);
  expect(soak.faults.map((fault) => [fault.atMs, fault.nemesis])).toEqual([
    [1000, "kill-leader"],
    [5000, "pause-random"],
    [11_000, "kill-leader"],
    [15_000, "pause-random"],
    [21_000, "kill-leader"],
    [25_000, "pause-random"],
  ]);
  expect(repeatExperiment(base, 1)).toEqual(base);
  expect(() => repeatExperiment(base, 0)).toThrow("repeat must be a positive integer");
});
