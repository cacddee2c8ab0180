// `strongroom chaos run EXPERIMENT.yaml... [--seed S] [--out DIR] [--repeat N]`: runs chaos
// experiments, one after another, each against a cluster of real node processes started for it
// (chaos/), printing one line per event and a verdict, then a table of every run. Exit 0 when
// every check and SLO passes, 1 when one fails, 2 on a bad experiment file.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import type { Experiment } from "../chaos/experiment.js";
import type { SummaryRow } from "../chaos/run-summary.js";
import { failureText, integerBetween, nonNegativeInteger } from "./command-support.js";

export function registerChaosCommand(program: Command): void {
  program
    .command("chaos")
    .description("chaos experiments against real node processes")
    .command("run")
    .description(
      "start a cluster of node processes, run each experiment's workload and faults, and check its SLOs and histories (exit 1 on a failed verdict)",
    )
    .argument("<experiments...>", "experiment files (chaos/experiments/*.yaml), run one after another")
    .option(
      "--seed <n>",
      "the seed of the workload's choices and the faults' targets",
      nonNegativeInteger("--seed"),
      1,
    )
    .option(
      "--out <directory>",
      "where each run's cluster, report.json, report.html and history.jsonl go, in a folder per experiment (default: a new temporary directory)",
    )
    .option(
      "--repeat <n>",
      "run each experiment n times over on one cluster: n times the workload, the faults repeated each period (a soak)",
      integerBetween("--repeat", 1, 1000),
      1,
    )
    .option(
      "--port <n>",
      "the nodes' base port (client; +1 peer, +2 HTTP)",
      integerBetween("--port", 1024, 65_000),
      39_000,
    )
    .option(
      "--host-base <n>",
      "node i listens on 127.0.0.<n+i> (netns driver: 10.77.<n>.<i+1>)",
      integerBetween("--host-base", 2, 250),
      100,
    )
    .action(
      async (
        files: string[],
        options: { seed: number; out?: string; repeat: number; port: number; hostBase: number },
      ) => {
        // Loaded when a chaos run starts: the harness is heavy, and other commands need none of it.
        const { ExperimentError, loadExperiment, repeatExperiment } = await import("../chaos/experiment.js");
        const { abortRunningExperiments, runExperiment } = await import("../chaos/run-experiment.js");
        const { summarize, summaryTable } = await import("../chaos/run-summary.js");
        // Every file is checked before the first run starts.
        const experiments: Experiment[] = [];
        for (const file of files) {
          try {
            experiments.push(repeatExperiment(loadExperiment(file), options.repeat));
          } catch (error) {
            if (!(error instanceof ExperimentError)) throw error;
            process.stderr.write(`strongroom chaos: ${error.message}\n`);
            process.exit(2);
          }
        }
        // Stopped (Ctrl-C, a CI job's cancel, a reader of the output gone): no node, partition or
        // namespace outlives the run. A second Ctrl-C stops at once.
        const interrupt = (cause: string, code: number) => {
          process.stderr.write(`strongroom chaos: ${cause}: stopping the cluster and removing every fault\n`);
          void abortRunningExperiments().finally(() => process.exit(code));
        };
        process.once("SIGINT", () => interrupt("SIGINT", 130));
        process.once("SIGTERM", () => interrupt("SIGTERM", 143));
        process.stdout.once("error", (error: NodeJS.ErrnoException) =>
          error.code === "EPIPE"
            ? interrupt("the output's reader is gone", 141)
            : interrupt(error.message, 1),
        );
        const out = options.out ?? mkdtempSync(join(tmpdir(), "strongroom-chaos-"));
        const rows: SummaryRow[] = [];
        for (const experiment of experiments) {
          const report = await runExperiment(experiment, {
            seed: options.seed,
            out: experiments.length === 1 && options.out !== undefined ? out : join(out, experiment.name),
            // The nodes run this same command: the node executable with this process's own entry point.
            command: [process.execPath, ...process.execArgv, process.argv[1] ?? ""],
            basePort: options.port,
            hostBase: options.hostBase,
            log: (line) => process.stdout.write(`${line}\n`),
          }).catch((error: unknown) => {
            // A run that could not start (its cluster: a mount without root, a port in use).
            process.stderr.write(
              `strongroom chaos: ${experiment.name} could not run: ${failureText(error)}\n`,
            );
            process.exit(1);
          });
          rows.push(summarize(report));
        }
        if (rows.length > 1) process.stdout.write(`\n${summaryTable(rows)}\n`);
        writeFileSync(join(out, "summary.json"), `${JSON.stringify(rows, null, 2)}\n`);
        process.exit(rows.every((row) => row.pass) ? 0 : 1);
      },
    );
}
