// An experiment, as an SRE writes it (YAML, validated with every problem named): the cluster, the
// workload, the fault schedule and the SLOs the run must meet. The seed (given at run time) makes
// the workload's choices and the faults' targets reproducible.

import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

export const nemeses = [
  "kill-leader",
  "kill-random",
  "pause-leader",
  "pause-random",
  /** One-way: the node hears no other node, they still hear it (chaos/partitions.ts). */
  "partition-leader-inbound",
  "partition-random-inbound",
  /** Every node in turn: SIGTERM (a leader hands over), restart, unseal - as an upgrade does. */
  "rolling-restart",
] as const;
export type NemesisName = (typeof nemeses)[number];

const experimentSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9-]{1,64}$/, "lower-case letters, digits and '-'"),
  description: z.string().max(1000).default(""),
  cluster: z
    .strictObject({
      size: z.union([z.literal(3), z.literal(5)]).default(3),
      /** Raft tick: 20 ms is the LAN profile (elections in 200-400 ms). */
      tickMs: z.number().int().min(5).max(1000).default(20),
    })
    .default({ size: 3, tickMs: 20 }),
  workload: z.strictObject({
    clients: z.number().int().min(1).max(64),
    keys: z.number().int().min(1).max(1000),
    /** The share of operations that are reads (the rest are writes). */
    readRatio: z.number().min(0).max(1),
    durationMs: z.number().int().min(1000).max(3_600_000),
    /** Each operation's deadline, the SDK's retries included. */
    timeoutMs: z.number().int().min(100).max(60_000).default(5000),
  }),
  faults: z
    .array(
      z.strictObject({
        atMs: z.number().int().min(0),
        nemesis: z.enum(nemeses),
        /** The fault is healed (the node restarted and unsealed, or resumed) after this long. */
        healAfterMs: z.number().int().min(0),
      }),
    )
    .max(1000),
  slo: z
    .strictObject({
      /** Leader lost → first successful write sent after it. */
      failoverMsMax: z.number().int().min(1).default(1000),
      /** Operations that succeeded (the SDK's retries included) over all operations. */
      successRateMin: z.number().min(0).max(1).default(0.9995),
      writeP99MsMax: z.number().int().min(1).optional(),
      readP99MsMax: z.number().int().min(1).optional(),
    })
    .default({ failoverMsMax: 1000, successRateMin: 0.9995 }),
});

export type Experiment = z.infer<typeof experimentSchema>;

export class ExperimentError extends Error {
  override readonly name = "ExperimentError";
}

export function parseExperiment(document: unknown, source: string): Experiment {
  const parsed = experimentSchema.safeParse(document);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `  - ${issue.path.join(".") || "(top)"}: ${issue.message}`,
    );
    throw new ExperimentError(`${source} has ${problems.length} problem(s):\n${problems.join("\n")}`);
  }
  const experiment = parsed.data;
  for (const [position, fault] of experiment.faults.entries()) {
    if (fault.atMs + fault.healAfterMs > experiment.workload.durationMs) {
      throw new ExperimentError(`${source}: faults.${position} is not healed before the workload ends`);
    }
  }
  return experiment;
}

export function loadExperiment(file: string): Experiment {
  let document: unknown;
  try {
    document = parseYaml(readFileSync(file, "utf8"));
  } catch (error) {
    throw new ExperimentError(`${file}: ${(error as Error).message}`);
  }
  return parseExperiment(document, file);
}
