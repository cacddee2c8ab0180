// The chaos harness's docker driver: the same experiment machinery against containers of
// deploy/Dockerfile's image. A leader SIGKILLed (docker kill) and a node paused (docker pause),
// under load; the history must be linearizable with nothing lost, every audit trail complete, the
// failover within its SLO, and no container left behind.

import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { parseExperiment } from "../../chaos/experiment.js";
import { runExperiment } from "../../chaos/run-experiment.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-chaos-docker-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

it("runs an experiment on containers: a leader killed, a node paused; linearizable, nothing lost", async () => {
  const lines: string[] = [];
  const experiment = parseExperiment(
    {
      name: "docker-kill-pause",
      cluster: { size: 3, tickMs: 20, driver: "docker" },
      workload: { clients: 3, keys: 4, readRatio: 0.5, durationMs: 10_000, timeoutMs: 5000 },
      faults: [
        { atMs: 1500, nemesis: "kill-leader", healAfterMs: 2500 },
        { atMs: 6000, nemesis: "pause-random", healAfterMs: 2000 },
      ],
      slo: { failoverMsMax: 2000, successRateMin: 0.99 },
    },
    "docker-kill-pause",
  );
  // 127.0.0.208-210, ports 62000-62002 (the container suite's own range).
  const report = await runExperiment(experiment, {
    seed: 3,
    out: join(root, "run"),
    command: [],
    hostBase: 208,
    basePort: 62_000,
    log: (line) => lines.push(line),
  });
  const printed = lines.join("\n");
  process.stdout.write(`${printed}\n`);
  expect(report.faults.map((fault) => fault.detail)).toEqual([
    "SIGKILL; restarted and unsealed",
    "SIGSTOP; resumed",
  ]);
  expect(report.checks.linearizability, printed).toBe("linearizable");
  expect(report.checks.lostWrites, printed).toBe(0);
  expect(report.checks.pass, printed).toBe(true);
  // The driver removed its containers.
  const left = execFileSync("docker", ["ps", "--all", "--filter", "name=strongroom-chaos-62000", "--quiet"])
    .toString()
    .trim();
  expect(left).toBe("");
}, 600_000);
