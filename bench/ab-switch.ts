// `npm run bench:ab-switch -- [--phases N] [--phase-seconds S] [-- CELL OPTIONS]` (`--help`):
// measures a change on ONE running cluster, switching the nodes between two behaviours every few
// seconds, because this machine's speed is not steady: the same CPU-bound loop takes 1.7 s or
// 2.7 s depending on the minute, so two runs of bench:vs-etcd, one per build, differ by up to 2x
// for no reason of theirs. Here both behaviours share the cluster, the load and the minute.
//
// It runs one strongroom cell of bench:vs-etcd (the CELL OPTIONS pick it: --entry, --mixes,
// --sizes, --clients; one of each), and once the load is on, measures the calls answered and the
// three servers' CPU per phase, sending SIGWINCH to the three servers between phases. The build
// under test flips its behaviour on that signal (docs/performance.md, "Measuring a change", has
// the few lines to add); a build without them ignores it (SIGWINCH's default), which makes an A/A
// run: what the noise alone gives. Prints each phase, then the two behaviours side by side, and
// ends with the line
//   ab-switch: B/A ops <r>x (median of pairs), cpu per op <r>x
// where A is the behaviour the nodes start with.

import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { MetricsText } from "../chaos/metrics-text.js";
import { printTable } from "./table.js";
import { strongroomMetricsUrls } from "./vs-etcd/placement.js";

const usage = `usage: npm run bench:ab-switch -- [options] [-- cell options of bench:vs-etcd]
  --phases N          phases, even, 2..200 (24): A, B, A, B, ...
  --phase-seconds S   seconds per phase, 1..60 (4)
  --settle S          seconds of the cell's load before the first phase, 3..600 (20): the
                      nodes' code compiled for it, so that A (always first in a pair) is not
                      measured on colder code than B
  cell options, passed to bench:vs-etcd (one value each): --entry, --mixes, --sizes, --clients,
  --workers, --seed; --systems, --duration, --warmup, --out, --quick and --profile are set here
`;

function refuse(problem: string): never {
  process.stderr.write(`bench:ab-switch: ${problem}\n${usage}`);
  process.exit(2);
}

const parsed = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        help: { type: "boolean", default: false },
        phases: { type: "string", default: "24" },
        "phase-seconds": { type: "string", default: "4" },
        settle: { type: "string", default: "20" },
      },
    });
  } catch (error) {
    refuse(error instanceof Error ? error.message : String(error));
  }
})();
if (parsed.values.help) {
  process.stdout.write(usage);
  process.exit(0);
}
const phases = Number(parsed.values.phases);
const phaseSeconds = Number(parsed.values["phase-seconds"]);
const settleSeconds = Number(parsed.values.settle);
if (!Number.isInteger(phases) || phases < 2 || phases > 200 || phases % 2 !== 0)
  refuse(`--phases: "${parsed.values.phases}" is not an even number from 2 to 200`);
if (!Number.isInteger(phaseSeconds) || phaseSeconds < 1 || phaseSeconds > 60)
  refuse(`--phase-seconds: "${parsed.values["phase-seconds"]}" is not a whole number from 1 to 60`);
if (!Number.isInteger(settleSeconds) || settleSeconds < 3 || settleSeconds > 600)
  refuse(`--settle: "${parsed.values.settle}" is not a whole number from 3 to 600`);
const cellOptions = parsed.positionals;
const setHere = ["--systems", "--duration", "--warmup", "--out", "--quick", "--profile", "--no-open-loop"];
for (const { name, value } of optionPairs(cellOptions)) {
  if (setHere.includes(name)) refuse(`${name} is set by bench:ab-switch, not passed on`);
  if (["--mixes", "--sizes", "--clients"].includes(name) && value?.includes(","))
    refuse(`${name}: one value, not a list: one cell is measured`);
}

/** The pass-through options as name and value, whether written `--name=value` or `--name value`. */
function optionPairs(options: readonly string[]): { name: string; value: string | null }[] {
  const pairs: { name: string; value: string | null }[] = [];
  for (let i = 0; i < options.length; i++) {
    const option = options[i] ?? "";
    const equals = option.indexOf("=");
    if (equals >= 0) pairs.push({ name: option.slice(0, equals), value: option.slice(equals + 1) });
    else if (options[i + 1] !== undefined && !options[i + 1]?.startsWith("--"))
      pairs.push({ name: option, value: options[++i] ?? null });
    else pairs.push({ name: option, value: null });
  }
  return pairs;
}

const metricsUrls = strongroomMetricsUrls();
/** Calls answered OK on the client port, over every node (a forwarded write counts once: where it entered). */
async function answered(): Promise<number> {
  const counts = await Promise.all(
    metricsUrls.map(async (url) => {
      const metrics = MetricsText.parse(
        await (await fetch(url, { signal: AbortSignal.timeout(2000) })).text(),
      );
      const handled = (method: string) =>
        metrics.sum("strongroom_grpc_server_handled_total", {
          method: `/strongroom.v1.Secrets/${method}`,
          code: "OK",
        });
      return handled("Put") + handled("Get");
    }),
  );
  return counts.reduce((a, b) => a + b, 0);
}

/** The server processes of the cluster the bench started in `directory`. */
function serverPids(directory: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const command = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ");
      if (command.includes(` server --config ${directory}/strongroom/`)) pids.push(Number(entry));
    } catch {
      // A process that ended meanwhile.
    }
  }
  return pids;
}

/** /proc/<pid>/stat counts CPU time in clock ticks of 1/100 s (USER_HZ, the same on every Linux). */
const ticksPerSecond = 100;

function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // After the command name (in parentheses, and it may hold spaces): utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / ticksPerSecond;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Phase {
  readonly variant: "A" | "B";
  readonly opsPerSecond: number;
  readonly cpuMsPerOp: number;
}

async function main(): Promise<void> {
  let output = "";
  const bench = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      new URL("./vs-etcd/main.ts", import.meta.url).pathname,
      "--systems",
      "strongroom",
      "--no-open-loop",
      // No warm-up run at another load: the phases would start in it. The first phases wait for
      // the cell's own load instead (below), and A and B alternate from there.
      "--warmup",
      "0",
      "--duration",
      // Enough for the phases and the switches between them, with room for finding the load.
      String(Math.ceil(phases * (phaseSeconds + 0.7)) + settleSeconds + 12),
      "--out",
      ".bench/ab-switch",
      ...cellOptions,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  bench.stdout.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  bench.stderr.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number>((resolve) => bench.on("exit", (code) => resolve(code ?? 1)));
  try {
    let directory: string | null = null;
    while (directory === null) {
      if (bench.exitCode !== null) throw new Error(`bench:vs-etcd did not start:\n${output}`);
      directory = /starting strongroom and etcd \(.*\) in (\S+)/.exec(output)?.[1] ?? null;
      await sleep(1000);
    }
    // The load is on once calls are answered fast for 3 s in a row (the prefill's writes come
    // first, then the cell's own ramp); then it runs for --settle seconds before the first phase.
    // A node's JIT takes about 15,000 writes to settle (docs/performance.md, sixty-third
    // session): measured from the start, the first pairs' B phases ran on warmer code than their
    // A phases (an A/A run of 4 phases of 2 s at 16 clients: B/A 1.15x).
    let fastSeconds = 0;
    for (let previous = await answered().catch(() => 0); fastSeconds < 3; ) {
      if (bench.exitCode !== null) throw new Error(`the load did not start:\n${output}`);
      await sleep(1000);
      const now = await answered().catch(() => previous);
      fastSeconds = now - previous > 50 ? fastSeconds + 1 : 0;
      previous = now;
    }
    await sleep(settleSeconds * 1000);
    const pids = serverPids(directory);
    if (pids.length !== 3) throw new Error(`found ${pids.length} server processes of ${directory}, not 3`);
    const measured: Phase[] = [];
    for (let i = 0; i < phases; i++) {
      const variant = i % 2 === 0 ? "A" : "B";
      const [ops0, cpu0, t0] = [await answered(), cpuSeconds(pids), performance.now()];
      await sleep(phaseSeconds * 1000);
      const [ops1, cpu1, t1] = [await answered(), cpuSeconds(pids), performance.now()];
      const ops = ops1 - ops0;
      const phase = {
        variant,
        opsPerSecond: ops / ((t1 - t0) / 1000),
        cpuMsPerOp: ops === 0 ? Number.NaN : ((cpu1 - cpu0) * 1000) / ops,
      } as const;
      measured.push(phase);
      process.stdout.write(
        `phase ${i + 1} ${variant}: ${phase.opsPerSecond.toFixed(0)} ops/s, ${phase.cpuMsPerOp.toFixed(2)} ms CPU per op\n`,
      );
      for (const pid of pids) process.kill(pid, "SIGWINCH");
      // Calls in flight when the switch came finish under either behaviour: not counted.
      await sleep(500);
    }
    report(measured);
  } finally {
    // The bench ends its cell by itself and stops both clusters; killed, it would leave them running.
    const code = await exited;
    if (code !== 0) process.stderr.write(`bench:vs-etcd exited with ${code}:\n${output}`);
  }
}

function report(measured: readonly Phase[]): void {
  const of = (variant: "A" | "B") => measured.filter((phase) => phase.variant === variant);
  const a = of("A");
  const b = of("B");
  const row = (variant: "A" | "B", list: readonly Phase[]) => [
    variant,
    String(list.length),
    mean(list.map((p) => p.opsPerSecond)).toFixed(0),
    median(list.map((p) => p.opsPerSecond)).toFixed(0),
    mean(list.map((p) => p.cpuMsPerOp)).toFixed(2),
    median(list.map((p) => p.cpuMsPerOp)).toFixed(2),
  ];
  printTable(
    ["behaviour", "phases", "ops/s mean", "ops/s median", "CPU ms/op mean", "CPU ms/op median"],
    [row("A", a), row("B", b)],
  );
  // Each B against the A just before it: the machine's speed drifts more slowly than a phase.
  const opsRatios = b.map((phase, i) => phase.opsPerSecond / (a[i]?.opsPerSecond ?? Number.NaN));
  const cpuRatios = b.map((phase, i) => phase.cpuMsPerOp / (a[i]?.cpuMsPerOp ?? Number.NaN));
  process.stdout.write(`B/A per pair: ${opsRatios.map((r) => r.toFixed(2)).join(" ")}\n`);
  process.stdout.write(
    `ab-switch: B/A ops ${median(opsRatios).toFixed(2)}x (median of pairs), cpu per op ${median(cpuRatios).toFixed(2)}x\n`,
  );
}

function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

await main();
