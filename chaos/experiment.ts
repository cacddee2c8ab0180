// An experiment, as an SRE writes it (YAML, validated with every problem named): the cluster, the
// workload, the fault schedule and the SLOs the run must meet. The seed (given at run time) makes
// the workload's choices and the faults' targets reproducible.

import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { raftFailpoints } from "../raft/node/index.js";
import { checkDocument } from "../server/schema-problems.js";

export const nemeses = [
  /** SIGKILL (no shutdown, no flush), then restart from the data directory and unseal. */
  "kill-leader",
  "kill-random",
  /** A minority (1 of 3, 2 of 5) or a majority (quorum lost until the heal), all restarted at the heal. */
  "kill-minority",
  "kill-majority",
  /** SIGSTOP, then SIGCONT. */
  "pause-leader",
  "pause-random",
  /** One-way: the node hears no other node, they still hear it. */
  "partition-leader-inbound",
  "partition-random-inbound",
  /** One-way, a follower: it stops learning of writes while the others go on. */
  "partition-follower-inbound",
  /** Symmetric (netns): the leader alone on one side. */
  "partition-leader",
  /** Symmetric (netns): a random minority on one side, the majority on the other. */
  "partition-majority-minority",
  /** Symmetric (netns): two sides that reach nothing of each other, one node in the middle reaching both. */
  "partition-bridge",
  /** Packet loss on every link of the node, each way (netns; `percent`). */
  "loss-leader",
  "loss-random",
  /** More delay on every link of the node, each way (netns; `delayMs`). */
  "latency-leader",
  "latency-random",
  /** The node's wall clock off by `skewMs` (libfaketime; its monotonic clock is left alone). */
  "clock-skew-leader",
  "clock-skew-random",
  /** Every write to the Raft log takes `stallMs` longer: a slow disk (a test failpoint). */
  "disk-stall-leader",
  "disk-stall-random",
  /**
   * The node's data disk filled (a file of zeros on its own tmpfs: cluster.dataDiskMiB): it must
   * stop or refuse, never serve wrong or lose an acknowledged write; at the heal the file goes and
   * the node serves again (restarted if it stopped).
   */
  "disk-full-leader",
  "disk-full-random",
  /** The node kills itself at a crash point (`point`, or one drawn by the seed), then restarts. */
  "crash-point-leader",
  "crash-point-random",
  /** Every node in turn: SIGTERM (a leader hands over), restart, unseal - as an upgrade does. */
  "rolling-restart",
  /**
   * The node sealed by its operator (Sys.Seal): a leader hands its leadership to an unsealed voter
   * first; clients of the node go elsewhere. Healed by unsealing it with the share (seal: shamir).
   */
  "seal-leader",
  "seal-random",
  /**
   * The HSM goes away (its token's files moved) and a random node is restarted meanwhile: it must
   * stay sealed while the others serve, and unseal itself once the HSM is back (seal: hsm).
   */
  "hsm-outage",
  /**
   * The HSM hangs (a call into its module never returns: the SoftHSM token's file made a FIFO) and
   * a random node is restarted meanwhile: it must serve, sealed, while the HSM hangs, and unseal
   * itself once it answers again (seal: hsm).
   */
  "hsm-hang",
  /**
   * A random follower removed from the cluster and stopped; at the heal a new node (a new id, at
   * the removed node's address) joins as a learner, catches up and is promoted to voter (process
   * driver).
   */
  "replace-member",
] as const;
export type NemesisName = (typeof nemeses)[number];

/** Nemeses that need each node in a namespace of its own (cluster.driver: netns). */
export const netnsNemeses: ReadonlySet<NemesisName> = new Set([
  "partition-leader",
  "partition-majority-minority",
  "partition-bridge",
  "loss-leader",
  "loss-random",
  "latency-leader",
  "latency-random",
]);

/** Nemeses that take the leader away, after which failover is measured. */
export const leaderLosingNemeses: ReadonlySet<NemesisName> = new Set([
  "kill-leader",
  "disk-full-leader",
  "pause-leader",
  "partition-leader-inbound",
  "partition-leader",
  "crash-point-leader",
  "seal-leader",
]);

const experimentSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9-]{1,64}$/, "lower-case letters, digits and '-'"),
  description: z.string().max(1000).default(""),
  cluster: z
    .strictObject({
      size: z.union([z.literal(3), z.literal(5)], { error: "must be 3 or 5" }).default(3),
      /** Raft tick: 20 ms is the LAN profile (elections in 200-400 ms). */
      tickMs: z.number().int().min(5).max(1000).default(20),
      /**
       * process: child processes on 127.0.0.x; netns: each node in a network namespace of its own
       * (root); docker: each node a container of deploy/Dockerfile's image (a Docker engine, root).
       */
      driver: z.enum(["process", "netns", "docker"]).default("process"),
      /** docker: the image to run (default: built from deploy/Dockerfile, chaos/docker-image.ts). */
      image: z.string().min(1).max(256).optional(),
      /** Each node's region, in node order (netns): links between regions get `network.links`' latency. */
      regions: z.array(z.string().regex(/^[a-z0-9-]{1,32}$/)).optional(),
      /** The region the leader should be in (the nodes' preferredLeaderRegion; needs regions). */
      preferredLeaderRegion: z
        .string()
        .regex(/^[a-z0-9-]{1,32}$/)
        .optional(),
      /** The Raft log is compacted after this many entries (small: snapshot installs under load). */
      snapshotEveryEntries: z.number().int().min(10).default(10_000),
      /**
       * The nodes' raft.snapshotLogToStateRatio (absent: theirs, 2). 0 with a small
       * snapshotEveryEntries: a snapshot every that many entries, however small they are.
       */
      snapshotLogToStateRatio: z.number().min(0).max(100).optional(),
      /** Entries kept behind a snapshot (small: a node that was down catches up by a snapshot). */
      retainEntries: z.number().int().min(0).default(1000),
      /** The nodes' raft.leaseReads: the leader serves linearizable reads from its lease. */
      leaseReads: z.boolean().default(false),
      /** shamir: one unseal share entered at every start; hsm: a SoftHSM token (auto-unseal). */
      seal: z.enum(["shamir", "hsm"]).default("shamir"),
      /** Each node's data directory on a tmpfs of its own, of this many MiB (root): what disk-full-* fill. */
      dataDiskMiB: z.number().int().min(64).max(4096).optional(),
      /**
       * Where each node's audit trail is written: under its data directory (a full data disk
       * fails the audit first, and a leader hands over while it runs), or in a directory of its
       * own off that disk (a full data disk stops the node at its next state or Raft log write).
       */
      auditDisk: z.enum(["data", "own"]).default("data"),
    })
    .default({
      size: 3,
      tickMs: 20,
      driver: "process",
      snapshotEveryEntries: 10_000,
      retainEntries: 1000,
      leaseReads: false,
      seal: "shamir",
      auditDisk: "data",
    }),
  /** The latency between regions (netns): each pair's round trip and jitter. */
  network: z
    .strictObject({
      links: z
        .array(
          z.strictObject({
            between: z.tuple([z.string(), z.string()]),
            rttMs: z.number().min(0).max(5000),
            jitterMs: z.number().min(0).max(5000).default(0),
          }),
        )
        .max(100),
    })
    .optional(),
  workload: z.strictObject({
    clients: z.number().int().min(1).max(64),
    keys: z.number().int().min(1).max(1000),
    /** The share of operations that are reads (the rest are writes). */
    readRatio: z.number().min(0).max(1),
    /** The share of writes that are check-and-sets: a read, then a write on the version it saw. */
    casRatio: z.number().min(0).max(1).default(0.25),
    durationMs: z.number().int().min(1000).max(3_600_000),
    /** Each operation's deadline, the SDK's retries included. */
    timeoutMs: z.number().int().min(100).max(60_000).default(5000),
    /**
     * Each client talks to one node only (client i to node i mod size), as behind a per-node load
     * balancer: reads are served by every node, not mostly by the leader the SDK prefers.
     */
    pinned: z.boolean().default(false),
    /** The SDK clients' readRouting: sticky (the SDK's default) or balanced (docs/sdk.md). */
    readRouting: z.enum(["sticky", "balanced"]).default("sticky"),
  }),
  faults: z
    .array(
      z.strictObject({
        atMs: z.number().int().min(0),
        nemesis: z.enum(nemeses),
        /** The fault is healed (the node restarted and unsealed, or resumed) after this long. */
        healAfterMs: z.number().int().min(0),
        /** loss-*: the share of packets lost, each way (default 10). */
        percent: z.number().min(0.1).max(100).optional(),
        /** latency-*: the delay added each way (default 100). */
        delayMs: z.number().int().min(1).max(10_000).optional(),
        /** clock-skew-*: how far the node's wall clock is set off (negative: behind; default 30 s). */
        skewMs: z.number().int().min(-86_400_000).max(86_400_000).optional(),
        /** disk-stall-*: how much longer each write to the Raft log takes (default 500). */
        stallMs: z.number().int().min(1).max(60_000).optional(),
        /** crash-point-*: where the node dies; absent: one drawn by the seed (not during-snapshot-install). */
        point: z.enum(raftFailpoints).optional(),
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
  const { data: experiment, problems: schemaProblems } = checkDocument(experimentSchema, document);
  if (schemaProblems !== null)
    throw new ExperimentError(
      `${source} has ${schemaProblems.length} problem(s):\n${schemaProblems.map((problem) => `  - ${problem}`).join("\n")}`,
    );
  const problems: string[] = [];
  const { cluster } = experiment;
  for (const [position, fault] of experiment.faults.entries()) {
    if (fault.atMs + fault.healAfterMs > experiment.workload.durationMs)
      problems.push(`faults.${position} is not healed before the workload ends`);
    // Faults run one at a time (chaos/run-experiment.ts): a schedule that overlaps them would not
    // run as written.
    const previous = experiment.faults[position - 1];
    if (previous !== undefined && fault.atMs < previous.atMs + previous.healAfterMs)
      problems.push(
        `faults.${position} comes at ${fault.atMs} ms, before faults.${position - 1} is healed (${previous.atMs + previous.healAfterMs} ms): faults run one at a time, in order`,
      );
    if (netnsNemeses.has(fault.nemesis) && cluster.driver !== "netns")
      problems.push(`faults.${position}: ${fault.nemesis} needs cluster.driver: netns`);
    if ((fault.nemesis === "hsm-outage" || fault.nemesis === "hsm-hang") && cluster.seal !== "hsm")
      problems.push(`faults.${position}: ${fault.nemesis} needs cluster.seal: hsm`);
    // With an HSM alone, a node its operator sealed takes recovery shares, which the harness has not.
    if (fault.nemesis.startsWith("seal-") && cluster.seal !== "shamir")
      problems.push(`faults.${position}: ${fault.nemesis} needs cluster.seal: shamir`);
    if (fault.nemesis.startsWith("disk-full") && cluster.dataDiskMiB === undefined)
      problems.push(
        `faults.${position}: ${fault.nemesis} needs cluster.dataDiskMiB (each node's data on a tmpfs of its own)`,
      );
    if (fault.nemesis === "replace-member" && cluster.driver !== "process")
      problems.push(`faults.${position}: replace-member needs cluster.driver: process`);
    // libfaketime is preloaded into the node's process, which the container's image does not have.
    if (fault.nemesis.startsWith("clock-skew") && cluster.driver === "docker")
      problems.push(`faults.${position}: ${fault.nemesis} is not available with cluster.driver: docker`);
  }
  if (cluster.driver === "docker" && cluster.seal === "hsm")
    problems.push(
      "cluster.seal: hsm is not available with cluster.driver: docker (the image has no SoftHSM token)",
    );
  if (cluster.dataDiskMiB !== undefined && cluster.driver === "docker")
    problems.push("cluster.dataDiskMiB is not available with cluster.driver: docker");
  if (cluster.image !== undefined && cluster.driver !== "docker")
    problems.push("cluster.image needs cluster.driver: docker");
  if (cluster.regions !== undefined && cluster.regions.length !== cluster.size)
    problems.push(`cluster.regions names ${cluster.regions.length} regions for ${cluster.size} nodes`);
  if (
    cluster.preferredLeaderRegion !== undefined &&
    !cluster.regions?.includes(cluster.preferredLeaderRegion)
  )
    problems.push(
      `cluster.preferredLeaderRegion ${JSON.stringify(cluster.preferredLeaderRegion)} is no node's region`,
    );
  if (experiment.network !== undefined) {
    if (cluster.driver !== "netns") problems.push("network needs cluster.driver: netns");
    if (cluster.regions === undefined) problems.push("network needs cluster.regions");
    for (const [position, link] of experiment.network.links.entries())
      for (const region of link.between)
        if (!cluster.regions?.includes(region))
          problems.push(`network.links.${position}: no node is in region ${JSON.stringify(region)}`);
  }
  if (problems.length > 0) throw new ExperimentError(`${source}: ${problems.join("; ")}`);
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

/**
 * The experiment `times` times over, back to back on one cluster (a soak): the workload runs
 * `times` × its duration and the fault schedule repeats each period (targets drawn afresh).
 */
export function repeatExperiment(experiment: Experiment, times: number): Experiment {
  if (!Number.isInteger(times) || times < 1) throw new ExperimentError("repeat must be a positive integer");
  const period = experiment.workload.durationMs;
  return {
    ...experiment,
    workload: { ...experiment.workload, durationMs: period * times },
    faults: Array.from({ length: times }, (_, round) =>
      experiment.faults.map((fault) => ({ ...fault, atMs: fault.atMs + round * period })),
    ).flat(),
  };
}
