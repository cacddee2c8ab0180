// `npm run sim`: runs the deterministic simulator over many seeds, or replays one with a trace.
//   npm run sim -- --seeds N [--steps M] [--nodes 3|5] [--bug NAME]
//   npm run sim -- --seed S [--trace] [--steps M] [--nodes 3|5] [--bug NAME]
// Ends with "sim: <N> seeds, <steps> steps, <V> violations" and exits non-zero when V > 0.

import { parseArgs } from "node:util";
import { runSimulation, type SimBug, type SimResult, simBugs } from "./simulator.js";

const usage = `usage: npm run sim -- (--seeds N [--from F] [--stop-on-violation] | --seed S [--trace]) [--steps M] [--nodes 3|5] [--learners K] [--bug ${simBugs.join("|")}]`;

function fail(message: string): never {
  process.stderr.write(`sim: ${message}\n${usage}\n`);
  process.exit(2);
}

function positiveInteger(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed <= 0)
    fail(`--${name} must be a positive integer, got "${value}"`);
  return parsed;
}

function main(): void {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof optionsSpec }>>;
  const optionsSpec = {
    seeds: { type: "string" },
    seed: { type: "string" },
    from: { type: "string" },
    steps: { type: "string" },
    nodes: { type: "string" },
    learners: { type: "string" },
    bug: { type: "string" },
    trace: { type: "boolean" },
    "stop-on-violation": { type: "boolean" },
  } as const;
  try {
    parsed = parseArgs({ options: optionsSpec, strict: true, allowPositionals: false });
  } catch (error) {
    fail((error as Error).message);
  }
  const values = parsed.values;
  if ((values.seeds === undefined) === (values.seed === undefined))
    fail("give exactly one of --seeds N or --seed S");
  if (values.trace === true && values.seed === undefined)
    fail("--trace replays one seed: use it with --seed S");
  const steps = positiveInteger("steps", values.steps, 3000);
  const nodes = positiveInteger("nodes", values.nodes, 3);
  if (nodes !== 3 && nodes !== 5) fail(`--nodes must be 3 or 5, got ${nodes}`);
  const learners = values.learners === undefined ? undefined : Number(values.learners);
  if (learners !== undefined && (!Number.isSafeInteger(learners) || learners < 0 || learners > 2)) {
    fail(`--learners must be 0, 1 or 2, got "${values.learners}"`);
  }
  const bug = values.bug;
  if (bug !== undefined && !(simBugs as readonly string[]).includes(bug)) fail(`unknown bug "${bug}"`);
  const first =
    values.seed !== undefined
      ? positiveInteger("seed", values.seed, 1)
      : positiveInteger("from", values.from, 1);
  const count = values.seed !== undefined ? 1 : positiveInteger("seeds", values.seeds, 1);

  const write = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  let violations = 0;
  let totalSteps = 0;
  const started = performance.now();
  for (let seed = first; seed < first + count; seed++) {
    const result: SimResult = runSimulation({
      seed,
      steps,
      voters: nodes,
      ...(learners === undefined ? {} : { learners }),
      ...(bug === undefined ? {} : { bug: bug as SimBug }),
      ...(values.trace === true ? { trace: write } : {}),
    });
    totalSteps += result.stats.timeUnits;
    if (values.trace === true) write(`stats: ${JSON.stringify(result.stats)}`);
    if (result.violation !== null) {
      violations++;
      const replay = [`npm run sim -- --seed ${seed} --trace --steps ${steps} --nodes ${nodes}`];
      if (learners !== undefined) replay.push(`--learners ${learners}`);
      if (bug !== undefined) replay.push(`--bug ${bug}`);
      write(`seed ${seed}: VIOLATION of ${result.violation.property}: ${result.violation.detail}`);
      write(`  replay: ${replay.join(" ")}`);
      if (values["stop-on-violation"] === true) break;
    }
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stderr.write(`sim: ${seconds}s\n`);
  write(`sim: ${count} seeds, ${totalSteps} steps, ${violations} violations`);
  process.exitCode = violations === 0 ? 0 : 1;
}

main();
