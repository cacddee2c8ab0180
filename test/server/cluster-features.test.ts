// The cluster's record of what every member understands (server/peer/cluster-features.ts): once a
// leader has seen every member understand request ids (and atomic system writes), it records it (whether or not anything is
// written), and a later leader uses ids
// though it has not heard from a member that is down - without the record, it would leave them out
// until that member is back, and a write sent again would apply twice. Token roles, whose records
// an older member could not apply, and tokens bound to identities, whose binding it would ignore,
// are refused until every member has said it understands them. Reads from the leader's lease
// (raft.leaseReads) wait until every member withholds its vote as a lease needs.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, expect, it } from "vitest";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { peerFeatures } from "../../server/peer/peer-features.js";
import { eventually } from "../support/eventually.js";
import { call, callError, InProcessCluster, metricOf, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("cluster-features");
const root = mkdtempSync(join(tmpdir(), "strongroom-cluster-features-"));
const specs = nodeSpecs(3, 41_000, 130);
const configs = writeConfigs(pki, root, specs, () => ({
  raft: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1, leaseReads: true },
}));
const cluster = new InProcessCluster(pki);

afterAll(async () => {
  await cluster.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

const configOf = (id: string) => {
  const entry = configs.get(id);
  if (entry === undefined) throw new Error(`no config for ${id}`);
  return entry.config;
};
const specOf = (id: string) => {
  const spec = specs.find((candidate) => candidate.id === id);
  if (spec === undefined) throw new Error(`no spec for ${id}`);
  return spec;
};
const recordedFeatures = (id: string) => metricOf(specOf(id), "strongroom_cluster_features");
const readLeaseSeconds = (id: string) => metricOf(specOf(id), "strongroom_raft_read_lease_seconds");
/** readLeaseMsFor(20, 10, 0.1): 9 ticks of at least 19 ms, less a tenth. */
const leaseSeconds = 0.153;

const everyFeature =
  peerFeatures.requestIds |
  peerFeatures.systemPutAll |
  peerFeatures.tokenRoles |
  peerFeatures.tokenBinding |
  peerFeatures.readLeaseVotes;
const ciRole = (name: string) => ({
  name,
  allowedPolicies: ["ci"],
  ttlMs: 0,
  maxTtlMs: 0,
  renewable: false,
  orphan: true,
  numUses: 0,
  boundIdentities: [],
});
const boundToken = {
  policies: ["ci"],
  ttlMs: 60_000,
  maxTtlMs: 0,
  renewable: false,
  orphan: false,
  displayName: "",
  numUses: 0,
  role: "",
  boundIdentities: ["ci-*"],
};

it("a leader that has not heard from a member that is down uses request ids and token roles once the cluster recorded them", async () => {
  // n3 is not started yet: nobody has heard that it understands token roles.
  for (const spec of specs.slice(0, 2)) await cluster.start(spec, configOf(spec.id));
  const { share } = await cluster.initializeWithOneShare("n1");
  const first = cluster.client(await cluster.leaderId()).access;
  await call(first.writePolicy.bind(first), {
    name: "ci",
    document: JSON.stringify({ name: "ci", rules: [{ path: "ci/*", capabilities: ["read"] }] }),
  });
  const early = await callError(first.writeTokenRole.bind(first), ciRole("early"));
  expect(early).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "UPGRADE_PENDING" });
  expect(early.details).toMatch(/not every member .* understands token roles/);
  const bound = await callError(first.createToken.bind(first), boundToken);
  expect(bound).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "UPGRADE_PENDING" });
  expect(bound.details).toMatch(/understands tokens bound to identities/);
  // Nor does the leader read from a lease: n3 may not withhold its vote as the lease needs.
  expect(await readLeaseSeconds(await cluster.leaderId())).toBe(0);
  // An unbound token is no feature: it is made as before.
  expect((await call(first.createToken.bind(first), { ...boundToken, boundIdentities: [] })).token).toMatch(
    /^sr\./,
  );

  const third = specs[2];
  if (third === undefined) throw new Error("three nodes expected");
  await cluster.start(third, configOf(third.id));
  const thirdSys = cluster.client(third.id).sys;
  await call(thirdSys.unseal.bind(thirdSys), { share, nonce: "", reset: false });
  const leader = await cluster.leaderId();
  const value = new TextEncoder().encode("v");
  // Nothing is written: the leader records the features by itself once it has heard every member.
  await eventually(async () => {
    const recorded = await Promise.all(specs.map((spec) => recordedFeatures(spec.id)));
    if (recorded.every((features) => features === everyFeature)) return true;
    await new Promise((resolve) => setTimeout(resolve, 200));
    return false;
  }, 20_000);
  await eventually(async () => (await readLeaseSeconds(leader)) === leaseSeconds, 10_000);
  // Linearizable reads are answered from the lease now, and counted. Counted on every node: a
  // loaded machine may have moved the leadership meanwhile (an election timeout is 200 ms here),
  // and a new leader starts its lease within a second.
  const leaderSecrets = cluster.client(leader).secrets;
  await call(leaderSecrets.put.bind(leaderSecrets), { path: "app/leased", value, requestId: "leased-1" });
  const leaseReads = async () => {
    const counts = await Promise.all(
      specs.map((spec) => metricOf(spec, "strongroom_raft_lease_reads_total")),
    );
    return counts.reduce((sum, count) => sum + count, 0);
  };
  const leaseReadsBefore = await leaseReads();
  const leased = {
    path: "app/leased",
    version: 0,
    consistency: Consistency.CONSISTENCY_LINEARIZABLE,
    maxStalenessMs: 0,
  };
  await eventually(async () => {
    await call(leaderSecrets.get.bind(leaderSecrets), leased);
    return (await leaseReads()) > leaseReadsBefore;
  }, 20_000);

  // One follower down; the other restarted (it has heard from nobody) and made the leader.
  const [down, next] = specs.map((spec) => spec.id).filter((id) => id !== leader);
  if (down === undefined || next === undefined) throw new Error("three nodes expected");
  await cluster.nodes.get(down)?.stop(100);
  cluster.nodes.delete(down);
  await cluster.nodes.get(next)?.stop(100);
  cluster.client(next).close();
  await cluster.start(specOf(next), configOf(next));
  const sys = cluster.client(next).sys;
  await call(sys.unseal.bind(sys), { share, nonce: "", reset: false });
  const leaderClient = cluster.client(leader).cluster;
  await eventually(async () => {
    await call(leaderClient.transferLeader.bind(leaderClient), { nodeId: next }).catch(() => {});
    return cluster.nodes.get(next)?.isLeader() === true;
  }, 20_000);

  // Sent twice with one id: applied once.
  const secrets = cluster.client(next).secrets;
  const answers = [];
  for (let attempt = 0; attempt < 2; attempt++)
    answers.push(await call(secrets.put.bind(secrets), { path: "app/after", value, requestId: "after-1" }));
  expect(answers[1]).toEqual(answers[0]);
  const history = await call(secrets.history.bind(secrets), {
    path: "app/after",
    consistency: Consistency.CONSISTENCY_LINEARIZABLE,
  });
  expect(history.versions.map((version) => version.version)).toEqual([1]);
  // Leading with a member down, it reads from its lease: the members recorded that they can.
  await eventually(async () => (await readLeaseSeconds(next)) === leaseSeconds, 10_000);
  // And token roles, recorded as understood by every member, though one of them is down.
  const access = cluster.client(next).access;
  expect((await call(access.writeTokenRole.bind(access), ciRole("later"))).revision).toBeGreaterThan(0);
  expect((await call(access.createToken.bind(access), boundToken)).info?.boundIdentities).toEqual(["ci-*"]);
});
