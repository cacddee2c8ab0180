// A token is good on every node the moment its creation is answered. A follower can be behind the
// leader by the entries in flight, and so hold no record yet of a token the leader (or this very
// follower, forwarding) just created; it catches up (a ReadIndex round) before it refuses a token
// it does not know. Real processes: the follower's applies are held back by a test failpoint.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { NodeEntry, ProcessCluster } from "../../chaos/process-cluster.js";
import { createClient } from "../../client/client.js";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { leaderOf, startFailpointCluster } from "./process-cluster.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-token-catch-up-"));
// Nodes on 127.0.0.235-237, ports from 56000.
const basePort = 56_000;
let cluster: ProcessCluster | null = null;

beforeAll(async () => {
  cluster = await startFailpointCluster(root, 235, basePort);
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  rmSync(root, { recursive: true, force: true });
});

const endpointOf = (node: NodeEntry) => `${node.host}:${basePort}`;

/** The token records node `node` holds (strongroom_access_records{area="token"}). */
async function tokenRecordsOn(node: NodeEntry): Promise<number> {
  const metrics = await (await fetch(`http://${node.host}:${basePort + 2}/metrics`)).text();
  return Number(/^strongroom_access_records\{area="token"\} (\d+)$/m.exec(metrics)?.[1] ?? "-1");
}

it("a follower that has not applied a new token's creation yet catches up and accepts it", async () => {
  if (cluster === null) throw new Error("no cluster");
  const running = cluster;
  const leader = await leaderOf(running);
  const follower = running.nodes.find((node) => node !== leader) as NodeEntry;
  const operator = running.client([endpointOf(leader)]);
  await operator.secrets.put({ path: "catch-up/probe", value: new TextEncoder().encode("v") });
  // A linearizable read there: the follower has applied the probe (and every token so far).
  const operatorThere = running.client([endpointOf(follower)]);
  await operatorThere.secrets.get({
    path: "catch-up/probe",
    version: 0,
    consistency: Consistency.CONSISTENCY_LINEARIZABLE,
    maxStalenessMs: 0,
  });
  operatorThere.close();
  const before = await tokenRecordsOn(follower);

  // Every apply on the follower now waits 1.5 s first: the token's creation among them.
  await running.armFailpoints(follower, { "before-apply": { sleepMs: 1500 } });
  const created = await operator.access.createToken({
    policies: [],
    ttlMs: 60_000,
    maxTtlMs: 0,
    renewable: false,
    orphan: false,
    displayName: "catch-up",
    numUses: 0,
  });
  // The creation is answered (applied on the leader) and the follower has no record of it yet.
  expect(await tokenRecordsOn(follower)).toBe(before);

  const holder = createClient({
    endpoints: [endpointOf(follower)],
    tls: running.tls,
    token: () => created.token,
    deadlineMs: 15_000,
  });
  try {
    // A stale read: served from the follower's state without a round of its own, so what waits
    // for the follower to catch up is the token check alone.
    const read = await holder.secrets.get({
      path: "catch-up/probe",
      version: 0,
      consistency: Consistency.CONSISTENCY_STALE,
      maxStalenessMs: 60_000,
    });
    expect(new TextDecoder().decode(read.value)).toBe("v");
    expect(await tokenRecordsOn(follower)).toBe(before + 1);
    // A token nobody created is still refused there, after the same catch-up.
    const forged = createClient({
      endpoints: [endpointOf(follower)],
      tls: running.tls,
      token: () => `sr.${"A".repeat(43)}`,
      deadlineMs: 15_000,
    });
    try {
      await expect(
        forged.secrets.get({
          path: "catch-up/probe",
          version: 0,
          consistency: Consistency.CONSISTENCY_STALE,
          maxStalenessMs: 60_000,
        }),
      ).rejects.toMatchObject({ reason: "TOKEN_INVALID" });
    } finally {
      forged.close();
    }
  } finally {
    holder.close();
    operator.close();
    await running.armFailpoints(follower, {});
  }
}, 90_000);
