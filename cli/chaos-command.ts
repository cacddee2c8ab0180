// `strongroom chaos run EXPERIMENT.yaml [--seed S] [--out DIR]`: runs a chaos experiment against a
// cluster of real node processes started for it (chaos/), printing one line per event and a
// verdict. Exit 0 when every check and SLO passes, 1 when one fails, 2 on a bad experiment file.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { ExperimentError, loadExperiment } from "../chaos/experiment.js";
import { runExperiment } from "../chaos/run-experiment.js";
import { integerBetween, nonNegativeInteger } from "./command-support.js";

export function registerChaosCommand(program: Command): void {
  program
    .command("chaos")
    .description("chaos experiments against real node processes")
    .command("run")
    .argument("<experiment>", "an experiment file (chaos/experiments/*.yaml)")
    .option(
      "--seed <n>",
      "the seed of the workload's choices and the faults' targets",
      nonNegativeInteger("--seed"),
      1,
    )
    .option(
      "--out <directory>",
      "where the cluster, report.json and history.jsonl go (default: a new temporary directory)",
    )
    .option(
      "--port <n>",
      "the nodes' base port (client; +1 peer, +2 HTTP)",
      integerBetween("--port", 1024, 65_533),
      39_000,
    )
    .option(
      "--host-base <n>",
      "node i listens on 127.0.0.<n+i> (5 nodes at most)",
      integerBetween("--host-base", 2, 250),
      100,
    )
    .action(async (file: string, options: { seed: number; out?: string; port: number; hostBase: number }) => {
      let experiment: ReturnType<typeof loadExperiment>;
      try {
        experiment = loadExperiment(file);
      } catch (error) {
        if (!(error instanceof ExperimentError)) throw error;
        process.stderr.write(`strongroom chaos: ${error.message}\n`);
        process.exit(2);
      }
      const out = options.out ?? mkdtempSync(join(tmpdir(), `strongroom-chaos-${experiment.name}-`));
      const report = await runExperiment(experiment, {
        seed: options.seed,
        out,
        // The nodes run this same command: the node executable with this process's own entry point.
        command: [process.execPath, ...process.execArgv, process.argv[1] ?? ""],
        basePort: options.port,
        hostBase: options.hostBase,
        log: (line) => process.stdout.write(`${line}\n`),
      });
      process.exit(report.checks.pass ? 0 : 1);
    });
}
