// The chaos harness's nemeses that change the cluster rather than the network: the HSM going away
// while a node restarts (SoftHSM: the node stays sealed, the others serve, it unseals itself once
// the HSM is back), the HSM hanging while a node restarts (the node serves, sealed, saying why, and
// unseals itself once the HSM answers), the leader's data disk filled (another node leads; it
// serves again once there is room), and a membership change under load (a follower removed and stopped, a new node
// added as a learner, caught up and promoted) followed by a crash during a snapshot install, and
// the leader, then a random node, sealed by their operator and unsealed again.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseExperiment } from "../../chaos/experiment.js";
import { runExperiment } from "../../chaos/run-experiment.js";
import { bundledCli } from "../server/process-cluster.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-cluster-nemeses-"));
let command: string[] = [];

beforeAll(async () => {
  command = [process.execPath, await bundledCli()];
}, 60_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Nodes on 127.0.0.230-234 (n4 and n5 are the replacements), ports from 55000.
const where = { hostBase: 230, basePort: 55_000 };

it("hsm-outage, hsm-hang: a node restarted without its HSM, or with it hung, stays sealed and serves, then unseals itself; disk-full-leader: the others go on", async () => {
  const lines: string[] = [];
  const experiment = parseExperiment(
    {
      name: "hsm-outage-short",
      // Each node's data on a tmpfs of its own (the test runs as root, as CI does), for disk-full.
      cluster: { size: 3, tickMs: 20, seal: "hsm", dataDiskMiB: 128 },
      workload: { clients: 3, keys: 4, readRatio: 0.5, durationMs: 20_000, timeoutMs: 5000 },
      faults: [
        { atMs: 1000, nemesis: "hsm-outage", healAfterMs: 3000 },
        // Longer than the harness's 3 s call deadline, so that the node has said why it is sealed.
        { atMs: 6000, nemesis: "hsm-hang", healAfterMs: 5000 },
        { atMs: 12_000, nemesis: "disk-full-leader", healAfterMs: 3000 },
      ],
      slo: { successRateMin: 0.99 },
    },
    "hsm-outage-short",
  );
  const report = await runExperiment(experiment, {
    seed: 6,
    out: join(root, "hsm"),
    command,
    ...where,
    log: (line) => lines.push(line),
  });
  const printed = lines.join("\n");
  expect(report.faults[0]?.detail, printed).toMatch(
    /^HSM token gone; the node restarted; stayed sealed without the HSM; HSM back, unsealed itself \d+ ms later$/,
  );
  expect(report.faults[1]?.detail, printed).toMatch(
    /^HSM hung; the node restarted and answered in \d+ ms; served, sealed, naming the call that did not answer; HSM answering, unsealed itself \d+ ms later$/,
  );
  // The full leader stops (its state cannot be written) or hands its leadership over (its audit
  // cannot); either way another node leads, and the node serves again once there is room.
  expect(report.faults[2]?.detail, printed).toMatch(
    /^its data disk filled; (stopped on the full disk; room again, restarted and unsealed|stayed up while full \(its audit refusing calls\); room again)$/,
  );
  expect(report.checks.linearizability, printed).toBe("linearizable");
  expect(report.checks.pass, printed).toBe(true);
}, 120_000);

it("replace-member under load, then a crash during a snapshot install; nothing lost", async () => {
  const lines: string[] = [];
  const experiment = parseExperiment(
    {
      name: "membership-short",
      cluster: {
        size: 3,
        tickMs: 20,
        snapshotEveryEntries: 50,
        snapshotLogToStateRatio: 0,
        retainEntries: 10,
      },
      workload: { clients: 4, keys: 4, readRatio: 0.5, durationMs: 16000, timeoutMs: 5000 },
      // The crash comes once the replacement is over, even when the removed node took the
      // whole grace period to stop (calls in flight on it wait out their deadline).
      faults: [
        { atMs: 500, nemesis: "replace-member", healAfterMs: 5000 },
        { atMs: 11_000, nemesis: "crash-point-random", point: "during-snapshot-install", healAfterMs: 5000 },
      ],
      slo: { successRateMin: 0.99 },
    },
    "membership-short",
  );
  const report = await runExperiment(experiment, {
    seed: 9,
    out: join(root, "membership"),
    command,
    ...where,
    log: (line) => lines.push(line),
  });
  const printed = lines.join("\n");
  const [replaced, crashed] = report.faults;
  expect(replaced?.detail ?? "(no such fault in the report)", printed).toMatch(
    /^n\d removed in \d+ ms and stopped in \d+ ms; n4 joined as a learner, caught up in \d+ ms, promoted to voter$/,
  );
  expect(crashed?.detail ?? "(no such fault in the report)", printed).toMatch(
    /died at during-snapshot-install; restarted and unsealed$/,
  );
  expect(report.checks.linearizability, printed).toBe("linearizable");
  // The removed node's trail is checked too, and closes cleanly (it was stopped, not killed).
  expect(report.checks.audit.map((audit) => audit.node).sort()).toEqual(["n1", "n2", "n3", "n4"]);
  expect(
    report.checks.audit.every((audit) => audit.pass),
    printed,
  ).toBe(true);
  expect(report.checks.pass, printed).toBe(true);
}, 120_000);

it("seal-leader, seal-random: a sealed leader hands over at once, clients go elsewhere, and the node serves again once unsealed", async () => {
  const lines: string[] = [];
  const experiment = parseExperiment(
    {
      name: "seal-short",
      cluster: { size: 3, tickMs: 20, leaseReads: true },
      workload: { clients: 4, keys: 4, readRatio: 0.5, durationMs: 9000, timeoutMs: 5000 },
      faults: [
        { atMs: 1000, nemesis: "seal-leader", healAfterMs: 2000 },
        { atMs: 4500, nemesis: "seal-random", healAfterMs: 2000 },
      ],
      // The leader hands over before it seals: failover is a hand-over, well within an election.
      slo: { failoverMsMax: 1000, successRateMin: 0.99 },
    },
    "seal-short",
  );
  const report = await runExperiment(experiment, {
    seed: 4,
    out: join(root, "seal"),
    command,
    ...where,
    log: (line) => lines.push(line),
  });
  const printed = lines.join("\n");
  expect(report.faults.map((fault) => fault.detail)).toEqual([
    "sealed (Sys.Seal); unsealed with the share",
    "sealed (Sys.Seal); unsealed with the share",
  ]);
  // Only the leader's seal takes the leader away.
  expect(report.checks.failoversMs, printed).toHaveLength(1);
  expect(report.checks.linearizability, printed).toBe("linearizable");
  expect(report.leaseReads ?? 0, printed).toBeGreaterThan(0);
  expect(report.checks.pass, printed).toBe(true);
}, 120_000);
