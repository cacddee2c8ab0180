// The chaos command itself, on real processes, and experiment files: a run stopped by a signal
// leaves nothing behind, a run whose cluster cannot start says why, and an experiment with
// problems is refused naming each. These check no SLO, so they run beside other files, where the
// experiments of experiments.test.ts have the machine to themselves.

import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseExperiment, repeatExperiment } from "../../chaos/experiment.js";
import { describeFailures } from "../../chaos/run-experiment.js";
import { startNode } from "../cli/cli-runner.js";
import { bundledCli } from "../server/process-cluster.js";
import { eventually } from "../support/eventually.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-chaos-command-"));
let command: string[] = [];

beforeAll(async () => {
  command = [process.execPath, await bundledCli()];
}, 60_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

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
  // A node its operator sealed under an HSM alone takes recovery shares to unseal: not the harness's.
  expect(() =>
    parseExperiment(
      {
        name: "hsm-sealed",
        cluster: { size: 3, seal: "hsm" },
        workload: { clients: 1, keys: 1, readRatio: 0.5, durationMs: 5000 },
        faults: [{ atMs: 0, nemesis: "seal-leader", healAfterMs: 1000 }],
      },
      "hsm-sealed.yaml",
    ),
  ).toThrow("hsm-sealed.yaml: faults.0: seal-leader needs cluster.seal: shamir");
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
  expect(() =>
    parseExperiment(
      {
        name: "usb",
        cluster: { size: 3, dataDiskMiB: 128, auditDisk: "usb" },
        workload: { clients: 1, keys: 1, readRatio: 0.5, durationMs: 5000 },
        faults: [],
      },
      "usb.yaml",
    ),
  ).toThrow(/usb\.yaml has 1 problem\(s\):\n {2}- cluster\.auditDisk: .*"data".*"own"/);
  expect(() =>
    parseExperiment(
      {
        name: "nearest",
        workload: { clients: 1, keys: 1, readRatio: 0.5, durationMs: 5000, readRouting: "nearest" },
        faults: [],
      },
      "nearest.yaml",
    ),
  ).toThrow(/nearest\.yaml has 1 problem\(s\):\n {2}- workload\.readRouting: .*"sticky".*"balanced"/);
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
