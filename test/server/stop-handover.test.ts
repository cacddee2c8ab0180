// A leader stopped with SIGTERM hands the leadership over before it exits, and waits until the new
// leader leads, not only until it stepped down itself: it steps down on the target's vote request
// and writes that vote to disk before sending it. A stop that closed the transport meanwhile lost
// the vote, and with the third voter down the target never had a quorum: the cluster was left
// without a leader (seen as a flaky test/server/leadership-handoff.test.ts on loaded CI machines).
// Real processes; the stopping leader's disk writes are slowed by a test failpoint.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ProcessCluster } from "../../chaos/process-cluster.js";
import { leaderOf, startFailpointCluster } from "./process-cluster.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-stop-handover-"));
// Nodes on 127.0.0.105-107, ports from 31000.
const basePort = 31_000;
let cluster: ProcessCluster | null = null;

beforeAll(async () => {
  cluster = await startFailpointCluster(root, 105, basePort);
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  rmSync(root, { recursive: true, force: true });
});

it("with one voter down, a leader stopping on SIGTERM leaves the other leading, its own disk however slow", async () => {
  if (cluster === null) throw new Error("no cluster");
  const running = cluster;
  const leader = await leaderOf(running);
  const [down, live] = running.nodes.filter((node) => node !== leader);
  if (down === undefined || live === undefined) throw new Error("three nodes expected");
  running.kill(down);
  // Out of reach once it has left the leader's heartbeats unanswered for an election timeout
  // (200 ms here): the hand-over goes to the live member only.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  // Each of the leader's disk writes now waits 100 ms first, its vote for the live member among
  // them: longer than the stop took to close the transport, shorter than an election timeout
  // (200-400 ms here: a slower vote would reach a candidate that gave up, in every term).
  await running.armFailpoints(leader, { "before-persist": { sleepMs: 100 } });

  // The live member alone has no quorum once the leader is gone, and steps down an election
  // timeout or two later: watched while the leader stops.
  const watcher = running.client([`${live.host}:${basePort}`]);
  let liveLed = false;
  let stopping = true;
  const watching = (async () => {
    while (stopping) {
      const status = await watcher.cluster.status({}, { deadlineMs: 500 }).catch(() => null);
      if (status?.role === "leader") liveLed = true;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  try {
    await running.terminate(leader);
  } finally {
    stopping = false;
    await watching;
    watcher.close();
  }
  expect(liveLed).toBe(true);
}, 60_000);
