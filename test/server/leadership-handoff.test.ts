// A leader hands its leadership only to a voter that can take it (server/leadership.ts): not to
// one that is sealed - it refuses to campaign, even on TimeoutNow - nor to one out of reach, which
// would not hear the offer. A leader that sent TimeoutNow has given up its read lease for the rest
// of its term (the message could still arrive late and start an election its lease cannot see),
// and a stopping leader waited for a hand-over that would not come. Each member says with every
// batch of Raft messages whether it declines the leadership (MessageBatch.declines_leadership);
// the leader knows who left its requests unanswered (PeerContact). The hand-off of a sealed
// leader, the operator's TransferLeader, a seal's or a stop's hand-over and leader placement skip
// both.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, expect, it } from "vitest";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { eventually } from "../support/eventually.js";
import { call, callError, InProcessCluster, metricOf, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("leadership-handoff");
const root = mkdtempSync(join(tmpdir(), "strongroom-leadership-handoff-"));
const specs = nodeSpecs(3, 33_000, 30);
const configs = writeConfigs(pki, root, specs, () => ({
  // Slower ticks than most tests (an election timeout of 500 ms): while every member is sealed no
  // one can be elected, so a leader that a stalled event loop made step down would stay none.
  raft: { tickMs: 50, electionTicks: 10, heartbeatTicks: 1, leaseReads: true },
}));
const cluster = new InProcessCluster(pki);
/** The hand-off looks every two election timeouts (tickMs × electionTicks × 2). */
const handoffEveryMs = 1000;

afterAll(async () => {
  await cluster.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

const specOf = (id: string) => {
  const spec = specs.find((candidate) => candidate.id === id);
  if (spec === undefined) throw new Error(`no spec for ${id}`);
  return spec;
};
const leaseReadsOf = (id: string) => metricOf(specOf(id), "strongroom_raft_lease_reads_total");
let unsealShare = "";
const shareOf = () => {
  if (unsealShare === "") throw new Error("the cluster is not initialized yet");
  return unsealShare;
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it("a sealed leader hands the leadership to no sealed voter, and serves reads from its lease once unsealed", async () => {
  await cluster.startAll(specs, configs);
  const leader = await cluster.leaderId();
  const leaderSys = cluster.client(leader).sys;
  const { share } = await cluster.initializeSealed(leader);
  unsealShare = share;
  // Every member is sealed: several hand-off periods pass with no voter to take the leadership.
  await sleep(handoffEveryMs * 2.5);
  expect(await cluster.leaderId()).toBe(leader);

  await call(leaderSys.unseal.bind(leaderSys), { share, nonce: "", reset: false });
  const [follower] = specs.map((spec) => spec.id).filter((id) => id !== leader);
  if (follower === undefined) throw new Error("three nodes expected");
  // The operator's transfer to a sealed member is refused at once, and says why.
  const clusterApi = cluster.client(leader).cluster;
  const refused = await callError(clusterApi.transferLeader.bind(clusterApi), { nodeId: follower });
  expect(refused).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "MEMBER_SEALED" });
  expect(refused.details).toBe(
    `${follower} declines the leadership (it is sealed): unseal it before moving the leadership to it`,
  );

  for (const spec of specs) {
    if (spec.id === leader) continue;
    const sys = cluster.client(spec.id).sys;
    await call(sys.unseal.bind(sys), { share, nonce: "", reset: false });
  }
  const secrets = cluster.client(leader).secrets;
  await call(secrets.put.bind(secrets), {
    path: "app/leased",
    value: new Uint8Array([1]),
    requestId: "leased-1",
  });
  // The leader kept its read lease: linearizable reads are answered from it.
  const before = await leaseReadsOf(leader);
  await eventually(async () => {
    await call(secrets.get.bind(secrets), {
      path: "app/leased",
      version: 0,
      consistency: Consistency.CONSISTENCY_LINEARIZABLE,
      maxStalenessMs: 0,
    });
    return (await leaseReadsOf(leader)) > before;
  }, 10_000);
  expect(await cluster.leaderId()).toBe(leader);
});

it("a sealed leader hands the leadership to the first voter unsealed", async () => {
  const leader = await cluster.leaderId();
  const followers = specs.map((spec) => spec.id).filter((id) => id !== leader);
  // Every member sealed again, the leader last: with no unsealed voter its hand-over goes nowhere.
  for (const id of [...followers, leader]) {
    const sys = cluster.client(id).sys;
    await call(sys.seal.bind(sys), {});
  }
  await sleep(handoffEveryMs * 2);
  expect(await cluster.leaderId()).toBe(leader);

  const [first] = followers;
  if (first === undefined) throw new Error("three nodes expected");
  const sys = cluster.client(first).sys;
  const share = shareOf();
  await call(sys.unseal.bind(sys), { share, nonce: "", reset: false });
  // Its next batch says it takes the leadership now; the next look hands it over.
  await eventually(async () => (await cluster.leaderId()) === first, handoffEveryMs * 10);
});

it("a leader hands the leadership to no member out of reach: TransferLeader refuses it, a stopping leader picks another", async () => {
  for (const spec of specs) {
    const sys = cluster.client(spec.id).sys;
    await call(sys.unseal.bind(sys), { share: shareOf(), nonce: "", reset: false });
  }
  // Heartbeats' answers from every member after its unseal: none is still taken as sealed.
  await sleep(handoffEveryMs / 2);
  const leader = await cluster.leaderId();
  const [down, live] = specs.map((spec) => spec.id).filter((id) => id !== leader);
  if (down === undefined || live === undefined) throw new Error("three nodes expected");
  // The first other voter in the membership's order: the one a leader picked among voters as far
  // along as each other (an idle cluster's), down or not.
  await cluster.nodes.get(down)?.stop(100);
  cluster.nodes.delete(down);
  cluster.client(down).close();
  // Out of reach once it has left the leader's heartbeats unanswered for an election timeout (two
  // have passed): the transfer is refused at once, not waited out.
  await sleep(handoffEveryMs);
  const clusterApi = cluster.client(leader).cluster;
  const refused = await callError(clusterApi.transferLeader.bind(clusterApi), { nodeId: down }, 3000);
  expect(refused).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "MEMBER_UNREACHABLE" });
  expect(refused.details).toBe(
    `${down} has not answered this leader for an election timeout (down, or cut off): it cannot take the leadership now`,
  );

  // Stopping, the leader hands over to the member that answers: it leads before the leader is gone.
  // First, as the leader sees it, that member answers and no longer says it is sealed (on a
  // loaded machine its batch after the unseal can come late: it would not be a candidate).
  await eventually(async () => {
    const view = await call(clusterApi.members.bind(clusterApi), {});
    const member = view.members.find((candidate) => candidate.nodeId === live);
    return member?.caughtUp === true && !member.sealed && !member.unreachable;
  }, 5000);
  let liveLed = false;
  const watching = setInterval(() => {
    if (cluster.nodes.get(live)?.isLeader()) liveLed = true;
  }, 5);
  try {
    await cluster.nodes.get(leader)?.stop(1000);
  } finally {
    clearInterval(watching);
  }
  cluster.nodes.delete(leader);
  cluster.client(leader).close();
  expect(liveLed).toBe(true);
});
