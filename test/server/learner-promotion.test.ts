// The leader's view of its members (Cluster.Members: entries behind, last contact, out of reach,
// sealed, caught up) and PromoteLearner's refusals, on real nodes over mutual TLS: a learner is
// added but not started (refused: it does not answer), started sealed (shown sealed, and caught up:
// a sealed learner replicates), stopped while writes go on (refused: behind, within the election
// timeout; then out of reach), and once started again and caught up, promoted. Only the leader
// knows the members' progress: a follower's answer says so and leaves the fields zero. Then, with
// the promoted voter stopped, the changes of the voters after which too few would answer the
// leader to make a quorum are refused, and removing the stopped one is not.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, expect, it } from "vitest";
import type { Member, MembersResponse } from "../../proto/gen/strongroom/v1/cluster.gen.js";
import { eventually } from "../support/eventually.js";
import {
  call,
  callError,
  InProcessCluster,
  metricLinesOf,
  type NodeSpec,
  nodeSpecs,
  writeConfigs,
} from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("learner-promotion");
const root = mkdtempSync(join(tmpdir(), "strongroom-learner-promotion-"));
const specs = nodeSpecs(4, 35_000, 90);
const founders = specs.slice(0, 3);
const lagMax = 3;
/** tickMs × electionTicks: how long a member may leave the leader's requests unanswered. */
const electionTimeoutMs = 2000;
const raft = { tickMs: 20, electionTicks: 100, heartbeatTicks: 1, promoteLagEntriesMax: lagMax };
const configs = writeConfigs(pki, root, founders, () => ({ raft }));
// The learner's config lists the founders and itself, and founds nothing of its own.
const joinerConfig = writeConfigs(pki, join(root, "joiner"), specs, () => ({ raft })).get("n4");
const cluster = new InProcessCluster(pki);

afterAll(async () => {
  await cluster.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

const joiner = specs[3] as NodeSpec;
const unreachable =
  "n4 does not answer this leader (not started, down, or cut off): start it, or see its peer error in cluster members";

async function membersOf(id: string): Promise<MembersResponse> {
  const api = cluster.client(id).cluster;
  return call(api.members.bind(api), {});
}

function memberOf(view: { readonly members: readonly Member[] }, id: string): Member {
  const member = view.members.find((candidate) => candidate.nodeId === id);
  if (member === undefined) throw new Error(`${id} is not listed`);
  return member;
}

/** The leader-only member gauges' samples on a node's /metrics, as `name{member="id"} value` lines. */
const memberSamplesOf = (id: string): Promise<string[]> =>
  metricLinesOf(specs.find((candidate) => candidate.id === id) as NodeSpec, "strongroom_cluster_member_");

async function startJoiner(): Promise<void> {
  if (joinerConfig === undefined) throw new Error("no config for n4");
  await cluster.start(joiner, { ...joinerConfig.config, clusterState: "existing" });
}

let leaderId = "";

it("shows the leader's view of each member and promotes a learner only once it has caught up", async () => {
  await cluster.startAll(founders, configs);
  const leader = await cluster.leaderId(15_000);
  leaderId = leader;
  const { share } = await cluster.initializeWithOneShare(leader);
  const api = cluster.client(leader).cluster;
  const promote = () => callError(api.promoteLearner.bind(api), { nodeId: "n4" });
  await call(api.addMember.bind(api), {
    nodeId: "n4",
    peerAddress: `${joiner.host}:${joiner.peerPort}`,
    clientAddress: `${joiner.host}:${joiner.clientPort}`,
    voter: false,
    region: "",
    zone: "",
  });

  // Added, not started: the leader has never heard from it, and will not promote it.
  expect(await promote()).toMatchObject({
    code: status.FAILED_PRECONDITION,
    reason: "MEMBER_UNREACHABLE",
    details: unreachable,
  });
  const seen = await membersOf(leader);
  expect(seen).toMatchObject({ answeredBy: leader, leaderView: true });
  expect(memberOf(seen, "n4")).toMatchObject({
    voter: false,
    matchIndex: 0,
    lastContactMs: -1,
    caughtUp: false,
  });
  expect(memberOf(seen, leader).matchIndex).toBeGreaterThanOrEqual(seen.commitIndex);
  for (const founder of founders) {
    const member = memberOf(seen, founder.id);
    expect(member, founder.id).toMatchObject({
      voter: true,
      unreachable: false,
      sealed: false,
      caughtUp: true,
    });
    expect(member.lastContactMs, founder.id).toBeGreaterThanOrEqual(0);
    expect(member.lastContactMs, founder.id).toBeLessThan(electionTimeoutMs);
  }
  // A follower answers with its own view: no progress, and it says it is not the leader's.
  const follower = founders.find((founder) => founder.id !== leader)?.id ?? "";
  const followerView = await membersOf(follower);
  expect(followerView).toMatchObject({ answeredBy: follower, leaderView: false });
  expect(followerView.members.map((member) => member.matchIndex)).toEqual([0, 0, 0, 0]);
  // The same as gauges for alerting, on the leader only: n4 unhealthy, and no last contact.
  const samples = await memberSamplesOf(leader);
  expect(samples).toContain(`strongroom_cluster_member_healthy{member="n4"} 0`);
  expect(samples).toContain(`strongroom_cluster_member_healthy{member="${follower}"} 1`);
  expect(samples).toContain(`strongroom_cluster_member_behind_entries{member="${leader}"} 0`);
  const contacts = samples.filter((line) =>
    line.startsWith("strongroom_cluster_member_last_contact_seconds{"),
  );
  expect(contacts.map((line) => /member="(n\d)"/.exec(line)?.[1]).sort()).toEqual(["n1", "n2", "n3"]);
  expect(await memberSamplesOf(follower)).toEqual([]);

  // Started, and sealed (Shamir): it replicates, and says it is sealed.
  await startJoiner();
  await eventually(async () => {
    const n4 = memberOf(await membersOf(leader), "n4");
    return n4.sealed && n4.caughtUp && !n4.unreachable;
  }, 15_000);
  const sys = cluster.client("n4").sys;
  await call(sys.unseal.bind(sys), { share, nonce: "", reset: false });
  await eventually(async () => !memberOf(await membersOf(leader), "n4").sealed, 5000);

  // Stopped while writes go on: within an election timeout it is behind, then out of reach.
  await cluster.nodes.get("n4")?.stop(500);
  cluster.nodes.delete("n4");
  cluster.client("n4").close();
  const stoppedAt = Date.now();
  const secrets = cluster.client(leader).secrets;
  await Promise.all(
    Array.from({ length: lagMax + 2 }, (_, i) =>
      call(secrets.put.bind(secrets), { path: `app/while-n4-is-down-${i}`, value: new Uint8Array([i]) }),
    ),
  );
  const behind = await promote();
  // Asked within the election timeout, as the test requires: else it says out of reach.
  expect(Date.now() - stoppedAt).toBeLessThan(electionTimeoutMs);
  expect(behind).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "LEARNER_BEHIND" });
  expect(behind.details).toMatch(
    new RegExp(`^n4 is \\d+ entries behind the commit index \\(at most ${lagMax} to promote it\\)`),
  );
  await eventually(async () => memberOf(await membersOf(leader), "n4").unreachable, electionTimeoutMs * 3);
  expect(await promote()).toMatchObject({ reason: "MEMBER_UNREACHABLE", details: unreachable });

  // Back, unsealed and caught up: promoted.
  await startJoiner();
  await call(cluster.client("n4").sys.unseal.bind(cluster.client("n4").sys), {
    share,
    nonce: "",
    reset: false,
  });
  await eventually(async () => memberOf(await membersOf(leader), "n4").caughtUp, 15_000);
  const promoted = await call(api.promoteLearner.bind(api), { nodeId: "n4" });
  expect(memberOf(promoted, "n4").voter).toBe(true);
  expect(await memberSamplesOf(leader)).toContain(`strongroom_cluster_member_healthy{member="n4"} 1`);
});

it("refuses a change of the voters that would leave too few answering the leader for a quorum", async () => {
  const leader = leaderId;
  expect(leader).not.toBe("");
  const api = cluster.client(leader).cluster;
  const [first, second] = founders.map((founder) => founder.id).filter((id) => id !== leader);
  await cluster.nodes.get("n4")?.stop(500);
  cluster.nodes.delete("n4");
  cluster.client("n4").close();
  await eventually(async () => memberOf(await membersOf(leader), "n4").unreachable, electionTimeoutMs * 3);

  // Four voters, n4 down: removing one that answers leaves 2 of 3 answering, a quorum.
  await call(api.removeMember.bind(api), { nodeId: first as string });
  // Three voters, n4 down: removing another would leave the leader alone of two.
  expect(await callError(api.removeMember.bind(api), { nodeId: second as string })).toMatchObject({
    code: status.FAILED_PRECONDITION,
    reason: "QUORUM_AT_RISK",
    details: `removing ${second} would leave 1 of 2 voters answering the leader, fewer than the 2 a quorum needs (not answering: n4): bring them back, or remove the ones that are gone, first`,
  });
  // Nor a new voter, which does not answer until it starts: and nothing of it is written.
  const added = await callError(api.addMember.bind(api), {
    nodeId: "n5",
    peerAddress: "127.0.0.95:35001",
    clientAddress: "127.0.0.95:35000",
    voter: true,
    region: "",
    zone: "",
  });
  expect(added).toMatchObject({ reason: "QUORUM_AT_RISK" });
  expect(added.details).toMatch(/^making n5 a voter would leave 2 of 4 voters answering/);
  expect((await membersOf(leader)).members.map((member) => member.nodeId).sort()).toEqual(
    [leader, second, "n4"].sort(),
  );
  // Removing the voter that is gone is what heals it.
  const healed = await call(api.removeMember.bind(api), { nodeId: "n4" });
  expect(healed.members.map((member) => member.nodeId).sort()).toEqual([leader, second].sort());
});
