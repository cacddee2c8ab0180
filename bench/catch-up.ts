// `npm run bench:catch-up [-- --state-mib 16,64 --rate 200 --snapshot-every 1000]`: how long a new
// member takes to catch up with a cluster that keeps writing (docs/raft.md, snapshots). Three
// `strongroom server` processes (mutual TLS, LevelDB, fsync on, Shamir sealed) are filled with
// 4 KiB secrets up to each state size; one client then writes 256 B values at a fixed rate, and a
// follower is replaced as an operator does (docs/operations.md): removed and stopped, a new node
// added as a learner, started and unsealed. Its log is empty and the leader's compacted, so it
// catches up by a snapshot install. Caught up: the learner has applied what the leader had
// committed 100 ms before; timed from the membership change that adds it. Prints a table.

import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type NodeEntry, ProcessCluster } from "../chaos/process-cluster.js";
import type { StrongroomClient } from "../client/index.js";
import { builtServerCommand } from "./built-server.js";
import { printTable } from "./table.js";

const { values } = parseArgs({
  options: {
    "state-mib": { type: "string", default: "16,64" },
    rate: { type: "string", default: "200" },
    "snapshot-every": { type: "string", default: "1000" },
    "timeout-s": { type: "string", default: "120" },
  },
});
const stateSizes = String(values["state-mib"]).split(",").map(Number);
const rate = Number(values.rate);
const snapshotEvery = Number(values["snapshot-every"]);
const timeoutMs = Number(values["timeout-s"]) * 1000;
if (
  stateSizes.some((size) => !Number.isInteger(size) || size < 1 || size > 1024) ||
  !Number.isInteger(rate) ||
  rate < 1 ||
  rate > 2000 ||
  !Number.isInteger(snapshotEvery) ||
  snapshotEvery < 10 ||
  !Number.isFinite(timeoutMs) ||
  timeoutMs < 1000 ||
  timeoutMs > 600_000
) {
  process.stderr.write(
    "bench:catch-up: --state-mib N[,N...] (1..1024), --rate 1..2000 writes/s, --snapshot-every at least 10, --timeout-s 1..600\n",
  );
  process.exit(2);
}

const hostBase = 150;
const basePort = 7400;
const fillValueBytes = 4096;
const fillWriters = 32;
/** Writes of the steady load in flight at most (a slow cluster is not buried under them). */
const loadInFlightMax = 64;

interface Measured {
  stateMiB: number;
  fillSeconds: number;
  snapshotBytes: number;
  caughtUpMs: number | null;
  chunksReceived: number;
  chunksSent: number;
  loadWritesPerSecond: number;
  loadFailures: number;
}

async function fill(client: StrongroomClient, stateMiB: number): Promise<number> {
  const count = (stateMiB * 1024 * 1024) / fillValueBytes;
  const started = performance.now();
  let next = 0;
  const writer = async () => {
    while (next < count) {
      const key = next++;
      await client.secrets.put(
        { path: `fill/${key}`, value: randomBytes(fillValueBytes) },
        { deadlineMs: 30_000 },
      );
    }
  };
  await Promise.all(Array.from({ length: fillWriters }, writer));
  return (performance.now() - started) / 1000;
}

/** Writes `rate` values a second until stopped; counts what succeeded and failed. */
function steadyLoad(client: StrongroomClient): { stop(): Promise<{ ok: number; failed: number }> } {
  let ok = 0;
  let failed = 0;
  let inFlight = 0;
  let sent = 0;
  const started = performance.now();
  const pending = new Set<Promise<void>>();
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - started) / 1000) * rate);
    while (sent < due && inFlight < loadInFlightMax) {
      const key = sent++ % 100;
      inFlight++;
      const write = client.secrets
        .put({ path: `load/${key}`, value: randomBytes(256) }, { deadlineMs: 10_000 })
        .then(
          () => {
            ok++;
          },
          () => {
            failed++;
          },
        )
        .finally(() => {
          inFlight--;
          pending.delete(write);
        });
      pending.add(write);
    }
  }, 5);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all(pending);
      return { ok, failed };
    },
  };
}

async function status(cluster: ProcessCluster, node: NodeEntry) {
  const client = cluster.client([`${node.host}:${basePort}`]);
  try {
    return await client.cluster.status({}, { deadlineMs: 1000 });
  } catch {
    return null; // Starting, or busy installing a snapshot.
  } finally {
    client.close();
  }
}

/** Replaces a follower with a new learner; resolves with how long the learner took to catch up. */
async function replaceFollower(
  cluster: ProcessCluster,
): Promise<{ learner: NodeEntry; leader: NodeEntry; caughtUpMs: number | null }> {
  const leader = await cluster.leader();
  const target = cluster.running().find((node) => node !== leader);
  if (leader === null || target === undefined) throw new Error("no leader, or no follower to replace");
  await cluster.changeMembership(
    (client) => client.cluster.removeMember({ nodeId: target.id }),
    (members) => !members.some((member) => member.nodeId === target.id),
  );
  await cluster.terminate(target);
  cluster.retire(target);
  const started = performance.now();
  const learner = await cluster.addLearner(target);
  try {
    await cluster.unseal(learner, timeoutMs);
  } catch (error) {
    // Busy with the leader's snapshot, it did not answer the unseal in time: not caught up.
    process.stderr.write(`${learner.id} was not unsealed in ${timeoutMs / 1000} s: ${String(error)}\n`);
    return { learner, leader, caughtUpMs: null };
  }
  let committedBefore = Number.POSITIVE_INFINITY;
  while (performance.now() - started < timeoutMs) {
    const [leaderStatus, learnerStatus] = await Promise.all([
      status(cluster, leader),
      status(cluster, learner),
    ]);
    if (learnerStatus !== null && learnerStatus.appliedIndex >= committedBefore)
      return { learner, leader, caughtUpMs: performance.now() - started };
    committedBefore = leaderStatus?.commitIndex ?? Number.POSITIVE_INFINITY;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { learner, leader, caughtUpMs: null };
}

async function measure(stateMiB: number, command: readonly string[]): Promise<Measured> {
  const directory = mkdtempSync(join(tmpdir(), "strongroom-bench-catch-up-"));
  const cluster = new ProcessCluster({
    directory,
    size: 3,
    tickMs: 50,
    hostBase,
    basePort,
    command,
    snapshotEveryEntries: snapshotEvery,
    // A snapshot every --snapshot-every entries, as the run says, however small they are.
    snapshotLogToStateRatio: 0,
    // The default per-identity rate limit would cap the fill, not the server.
    nodeConfig: { auth: { rateLimits: [{ prefix: "", perSecond: 1_000_000, burst: 1_000_000 }] } },
    logLevel: "warn",
  });
  try {
    await cluster.start();
    const client = cluster.client(cluster.endpoints());
    try {
      process.stderr.write(`${stateMiB} MiB: filling\n`);
      const fillSeconds = await fill(client, stateMiB);
      process.stderr.write(`${stateMiB} MiB: filled in ${fillSeconds.toFixed(1)} s; replacing a follower\n`);
      const load = steadyLoad(client);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const loadStarted = performance.now();
      const { learner, leader, caughtUpMs } = await replaceFollower(cluster);
      const { ok, failed } = await load.stop();
      const loadSeconds = (performance.now() - loadStarted) / 1000 + 2;
      return {
        stateMiB,
        fillSeconds,
        snapshotBytes: await cluster.metricOf(learner, "strongroom_raft_snapshot_bytes"),
        caughtUpMs,
        chunksReceived: (await cluster.metricsOf(learner)).sum("strongroom_raft_messages_total", {
          direction: "received",
          type: "snapshotChunk",
        }),
        chunksSent: (await cluster.metricsOf(leader)).sum("strongroom_raft_messages_total", {
          direction: "sent",
          type: "snapshotChunk",
        }),
        loadWritesPerSecond: ok / loadSeconds,
        loadFailures: failed,
      };
    } finally {
      client.close();
    }
  } finally {
    await cluster.stop();
    rmSync(directory, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const command = builtServerCommand();
  const results: Measured[] = [];
  for (const stateMiB of stateSizes) {
    const result = await measure(stateMiB, command);
    process.stderr.write(`${JSON.stringify(result)}\n`);
    results.push(result);
  }
  process.stdout.write(
    `\nA new learner catching up (snapshot every ${snapshotEvery} entries, ${rate} writes/s of 256 B meanwhile)\n\n`,
  );
  printTable(
    [
      "state MiB",
      "snapshot MiB",
      "caught up in s",
      "chunks received",
      "chunks sent (leader)",
      "load writes/s",
      "load failures",
    ],
    results.map((result) => [
      String(result.stateMiB),
      (result.snapshotBytes / 1024 / 1024).toFixed(1),
      result.caughtUpMs === null ? `not in ${timeoutMs / 1000}` : (result.caughtUpMs / 1000).toFixed(2),
      String(result.chunksReceived),
      String(result.chunksSent),
      result.loadWritesPerSecond.toFixed(0),
      String(result.loadFailures),
    ]),
  );
}

await main();
