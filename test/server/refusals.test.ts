// What the client port refuses, on a real node over real TLS: no client certificate, a
// certificate of another CA, an expired one, a peer (node) certificate, a request larger than the
// limit, and a malformed request; and the cluster operations: a learner added, promoted and a voter
// removed, leadership transferred, and a rekey that keeps every node unsealed.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClusterClient } from "../../proto/gen/strongroom/v1/cluster.gen.js";
import {
  ChangeKind,
  Consistency,
  SecretsClient,
  type WatchEvent,
} from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { dialIdentity, dialTls } from "../../server/tls/credentials.js";
import { createCertificateAuthority, issueClientCertificate } from "../../server/tls/dev-pki.js";
import { type TlsFilePaths, TlsFiles } from "../../server/tls/tls-files.js";
import { eventually } from "../support/eventually.js";
import { call, callError, InProcessCluster, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("refusals");
const root = mkdtempSync(join(tmpdir(), "strongroom-refusals-"));
const specs = nodeSpecs(4, 25_000, 60);
const founders = specs.slice(0, 3);
const configs = writeConfigs(pki, root, founders);
// The fourth node joins later: its config lists the founders and itself.
const joinerConfigs = writeConfigs(pki, join(root, "joiner"), specs);
const running = new InProcessCluster(pki);
const nodes = running.nodes;
const clientOf = (id: string) => running.client(id);
const leaderId = () => running.leaderId();
let shares: string[] = [];

async function unseal(id: string): Promise<void> {
  const sys = clientOf(id).sys;
  for (const share of shares.slice(0, 2))
    await call(sys.unseal.bind(sys), { share, nonce: "", reset: false });
}

beforeAll(async () => {
  for (const spec of founders) {
    const entry = configs.get(spec.id);
    if (entry === undefined) throw new Error(`no config for ${spec.id}`);
    await running.start(spec, entry.config);
  }
  await leaderId();
  const sys = clientOf("n1").sys;
  const init = await call(sys.init.bind(sys), {
    shamir: { count: 3, threshold: 2, operatorKeys: [] },
    hsm: false,
    generateHsmKey: false,
    recovery: undefined,
  });
  shares = init.unsealShares;
  running.useToken(init.rootToken);
  for (const spec of founders) await unseal(spec.id);
}, 60_000);

afterAll(async () => {
  await running.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

/** A Get with some credentials; resolves to the gRPC error (or null on success). */
async function getWith(address: string, paths: TlsFilePaths | null): Promise<ServiceError | null> {
  const tls = paths === null ? null : new TlsFiles(paths);
  // Without a client certificate, the node is checked and named as dialTls does.
  const byHand = dialIdentity(address);
  const dial =
    tls === null
      ? {
          credentials: credentials.createSsl(
            Buffer.from(pki.clusterCa.certificatePem),
            null,
            null,
            byHand.verify,
          ),
          options: byHand.options,
        }
      : dialTls(tls, address);
  const secrets = new SecretsClient(address, dial.credentials, dial.options);
  try {
    await call(
      secrets.get.bind(secrets),
      {
        path: "app/x",
        version: 0,
        consistency: Consistency.CONSISTENCY_UNSPECIFIED,
        maxStalenessMs: 0,
      },
      3000,
    );
    return null;
  } catch (error) {
    return error as ServiceError;
  } finally {
    secrets.close();
    tls?.close();
  }
}

describe("the client port refuses", () => {
  const address = () => `${founders[0]?.host}:${founders[0]?.clientPort}`;

  it("a client without a certificate, with another CA's, with an expired one, and a node's certificate", async () => {
    expect((await getWith(address(), null))?.code).toBe(status.UNAVAILABLE);
    const otherCa = createCertificateAuthority("another client CA");
    const foreign = pki.write(
      "foreign-client",
      issueClientCertificate(otherCa, { name: "mallory" }),
      pki.clusterCa,
    );
    expect((await getWith(address(), foreign))?.code).toBe(status.UNAVAILABLE);
    const expired = pki.client("late", {
      notBefore: new Date("2020-01-01"),
      notAfter: new Date("2021-01-01"),
    });
    // Our own TlsFiles refuses to load an expired certificate: build the credentials by hand.
    const { createSecureContext } = await import("node:tls");
    const { readFileSync } = await import("node:fs");
    // The node checked and named as dialTls does.
    const byHand = dialIdentity(address());
    const expiredClient = new SecretsClient(
      address(),
      credentials.createFromSecureContext(
        createSecureContext({
          ca: readFileSync(expired.caFile),
          cert: readFileSync(expired.certificateFile),
          key: readFileSync(expired.privateKeyFile),
        }),
        byHand.verify,
      ),
      byHand.options,
    );
    const expiredError = await call(
      expiredClient.get.bind(expiredClient),
      {
        path: "app/x",
        version: 0,
        consistency: Consistency.CONSISTENCY_UNSPECIFIED,
        maxStalenessMs: 0,
      },
      3000,
    ).catch((error: ServiceError) => error);
    expiredClient.close();
    expect((expiredError as ServiceError).code).toBe(status.UNAVAILABLE);
    // A node certificate is from the cluster CA, which the client port does not trust.
    expect((await getWith(address(), pki.node("n9")))?.code).toBe(status.UNAVAILABLE);
    // The right certificate passes the handshake: access control answers (alice holds no token).
    const alice = await getWith(address(), pki.client("alice"));
    expect(alice?.code).toBe(status.PERMISSION_DENIED);
    expect(alice?.details).toBe("alice may not read app/x");
  });

  it("a request over the size limit, and a malformed one", async () => {
    const secrets = clientOf("n1").secrets;
    const oversized = await callError(secrets.put.bind(secrets), {
      path: "app/huge",
      value: new Uint8Array(3 * 1024 * 1024),
    });
    expect(oversized.code).toBe(status.RESOURCE_EXHAUSTED);
    // Bytes that are not a PutRequest, sent through a raw client.
    const tls = new TlsFiles(pki.client("raw"));
    const dial = dialTls(tls, address());
    const raw = new ClusterClient(address(), dial.credentials, dial.options);
    const malformed = await new Promise<ServiceError | null>((resolve) => {
      raw.makeUnaryRequest(
        "/strongroom.v1.Secrets/Put",
        (value: Buffer) => value,
        (value: Buffer) => value,
        Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]),
        (error) => resolve(error),
      );
    });
    raw.close();
    tls.close();
    expect(malformed?.code).toBe(status.INTERNAL);
  });
});

describe("cluster operations", () => {
  it("adds a learner that catches up, promotes it, removes a voter, and transfers leadership", async () => {
    const secrets = clientOf("n1").secrets;
    await call(secrets.put.bind(secrets), { path: "ops/before-join", value: new TextEncoder().encode("v1") });
    const joiner = specs[3];
    const joinerConfig = joinerConfigs.get("n4");
    if (joiner === undefined || joinerConfig === undefined) throw new Error("no joiner");
    const cluster = clientOf("n2").cluster;
    const added = await call(cluster.addMember.bind(cluster), {
      nodeId: "n4",
      peerAddress: `${joiner.host}:${joiner.peerPort}`,
      clientAddress: `${joiner.host}:${joiner.clientPort}`,
      voter: false,
      region: "eu-west",
      zone: "eu-west-1b",
    });
    // Every member's addresses, the answering node's own included.
    for (const member of added.members) {
      expect(member.peerAddress, member.nodeId).toMatch(/^127\.0\.0\.\d+:\d+$/);
      expect(member.clientAddress, member.nodeId).toMatch(/^127\.0\.0\.\d+:\d+$/);
    }
    // Its location is replicated with its addresses: every node lists it.
    expect(added.members.find((member) => member.nodeId === "n4")).toMatchObject({
      voter: false,
      region: "eu-west",
      zone: "eu-west-1b",
    });
    // The joiner founds nothing of its own: it learns the log, membership included, from the leader.
    await running.start(joiner, { ...joinerConfig.config, clusterState: "existing" });
    await eventually(() => nodes.get("n4")?.sealStatus().initialized === true, 10_000);
    await unseal("n4");
    const read = await call(clientOf("n4").secrets.get.bind(clientOf("n4").secrets), {
      path: "ops/before-join",
      version: 0,
      consistency: Consistency.CONSISTENCY_LINEARIZABLE,
      maxStalenessMs: 0,
    });
    expect(new TextDecoder().decode(read.value)).toBe("v1");

    const promoted = await call(cluster.promoteLearner.bind(cluster), { nodeId: "n4" });
    expect(
      promoted.members
        .filter((member) => member.voter)
        .map((member) => member.nodeId)
        .sort(),
    ).toEqual(["n1", "n2", "n3", "n4"]);

    const target = "n4";
    const transferred = await call(cluster.transferLeader.bind(cluster), { nodeId: target });
    expect(transferred.leaderId).toBe(target);
    expect(await leaderId()).toBe(target);

    // A watch on the node about to be removed: once it knows, its state moves no more.
    const onRemoved = clientOf("n3").secrets.watch({ prefix: "ops/", fromRevision: 0, progressNotify: true });
    const watchEnded = new Promise<ServiceError>((resolve) => onRemoved.on("error", resolve));
    await new Promise((resolve) => onRemoved.once("metadata", resolve));
    const removed = await call(cluster.removeMember.bind(cluster), { nodeId: "n3" });
    expect(removed.members.map((member) => member.nodeId).sort()).toEqual(["n1", "n2", "n4"]);
    const ended = await watchEnded;
    expect(ended.code).toBe(status.UNAVAILABLE);
    expect(ended.metadata.get("strongroom-reason")).toEqual(["REMOVED"]);
    const refused = clientOf("n3").secrets.watch({ prefix: "ops/", fromRevision: 0, progressNotify: false });
    expect(await new Promise<ServiceError>((resolve) => refused.on("error", resolve))).toMatchObject({
      code: status.UNAVAILABLE,
      details: "this node was removed from the cluster: watch through another member",
    });
    const unknown = await callError(cluster.removeMember.bind(cluster), { nodeId: "n7" });
    expect(unknown).toMatchObject({ code: status.INVALID_ARGUMENT, details: "n7 is not a member" });
    // n3 may still run on its old log: its id does not come back.
    const again = await callError(cluster.addMember.bind(cluster), {
      nodeId: "n3",
      peerAddress: "127.0.0.1:1",
      clientAddress: "127.0.0.1:2",
      voter: false,
      region: "",
      zone: "",
    });
    expect(again).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: "n3 was removed from the cluster; add the new node under a new id",
    });
  });

  it("rekeys through the leader: new shares work, old ones do not, every node stays unsealed", async () => {
    const sys = clientOf("n1").sys;
    // New share options that could not make shares are refused with the first share, which is
    // not taken: the attempt has not started.
    const impossible = await callError(sys.rekey.bind(sys), {
      share: shares[0] ?? "",
      nonce: "",
      newShares: { count: 1, threshold: 2, operatorKeys: [] },
      reset: false,
    });
    expect(impossible).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: "the threshold must be an integer from 1 to the share count (1), got 2",
    });
    const first = await call(sys.rekey.bind(sys), {
      share: shares[0] ?? "",
      nonce: "",
      newShares: { count: 4, threshold: 3, operatorKeys: [] },
      reset: false,
    });
    expect(first).toMatchObject({ complete: false, progress: 1, threshold: 2 });
    const done = await call(sys.rekey.bind(sys), {
      share: shares[1] ?? "",
      nonce: first.nonce,
      newShares: undefined,
      reset: false,
    });
    expect(done.complete).toBe(true);
    expect(done.shares).toHaveLength(4);
    for (const id of ["n1", "n2", "n4"]) {
      await eventually(() => nodes.get(id)?.sealStatus().sealed === false, 5000);
      const status = await call(clientOf(id).sys.sealStatus.bind(clientOf(id).sys), {});
      expect(status).toMatchObject({ sealed: false, shares: 4, threshold: 3 });
    }
    // Sealing one node: the old shares no longer open it, the new ones do.
    const n2 = clientOf("n2").sys;
    // Its watches end at once (SEALED), not at the next change: their clients move to another node.
    const watch = clientOf("n2").secrets.watch({ prefix: "quiet/", fromRevision: 0, progressNotify: false });
    const watchEnded = new Promise<ServiceError>((resolve) => watch.on("error", resolve));
    await new Promise((resolve) => watch.on("metadata", resolve));
    await call(n2.seal.bind(n2), {});
    const ended = await Promise.race([
      watchEnded,
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 2000)),
    ]);
    expect(ended?.metadata.get("strongroom-reason")).toEqual(["SEALED"]);
    expect(ended?.details).toBe("this node was sealed: watch through another node, or once it is unsealed");
    const old = await callError(n2.unseal.bind(n2), { share: shares[0] ?? "", nonce: "", reset: false });
    expect(old).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "SHARE_MISMATCH" });
    for (const share of done.shares.slice(1))
      await call(n2.unseal.bind(n2), { share, nonce: "", reset: false });
    expect((await call(n2.sealStatus.bind(n2), {})).sealed).toBe(false);

    // Sealing the leader: it hands leadership over first, so another node leads when Seal returns.
    const leader = await leaderId();
    const leaderSys = clientOf(leader).sys;
    await call(leaderSys.seal.bind(leaderSys), {});
    expect(nodes.get(leader)?.isLeader()).toBe(false);
    expect([...nodes.entries()].filter(([id, node]) => id !== leader && node.isLeader())).toHaveLength(1);
    for (const share of done.shares.slice(0, 3)) {
      await call(leaderSys.unseal.bind(leaderSys), { share, nonce: "", reset: false });
    }
  });
});

describe("watch", () => {
  it("streams changes under a prefix from another node, and resumes from a revision", async () => {
    const events: WatchEvent[] = [];
    const n2 = clientOf("n2").secrets;
    const stream = n2.watch({ prefix: "watched/", fromRevision: 0, progressNotify: false });
    stream.on("data", (event: WatchEvent) => events.push(event));
    stream.on("error", () => {});
    // The node sends its headers once the watch is in place: changes from then on reach it.
    await new Promise((resolve) => stream.once("metadata", resolve));
    const n1 = clientOf("n1").secrets;
    const first = await call(n1.put.bind(n1), { path: "watched/a", value: new Uint8Array([1]) });
    await call(n1.put.bind(n1), { path: "elsewhere/b", value: new Uint8Array([1]) });
    const second = await call(n1.put.bind(n1), { path: "watched/a", value: new Uint8Array([2]) });
    await eventually(() => events.length >= 2, 5000);
    expect(events).toEqual([
      { revision: first.revision, path: "watched/a", kind: ChangeKind.CHANGE_KIND_PUT, version: 1 },
      { revision: second.revision, path: "watched/a", kind: ChangeKind.CHANGE_KIND_PUT, version: 2 },
    ]);
    stream.cancel();

    // Resume after the first event: only the second is replayed.
    const resumed: WatchEvent[] = [];
    const again = n2.watch({ prefix: "watched/", fromRevision: first.revision, progressNotify: false });
    again.on("data", (event: WatchEvent) => resumed.push(event));
    again.on("error", () => {});
    await eventually(() => resumed.length >= 1, 5000);
    expect(resumed.map((event) => event.revision)).toEqual([second.revision]);
    again.cancel();

    // Resumed on a follower from the revision a write just answered: the follower may not have
    // applied it yet, and waits until it has, so that it replays nothing the client saw.
    const third = await call(n1.put.bind(n1), { path: "watched/a", value: new Uint8Array([3]) });
    const fromLatest: WatchEvent[] = [];
    const latest = n2.watch({ prefix: "watched/", fromRevision: third.revision, progressNotify: false });
    latest.on("data", (event: WatchEvent) => fromLatest.push(event));
    latest.on("error", () => {});
    await new Promise((resolve) => latest.once("metadata", resolve));
    const fourth = await call(n1.put.bind(n1), { path: "watched/a", value: new Uint8Array([4]) });
    await eventually(() => fromLatest.length >= 1, 5000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(fromLatest.map((event) => event.revision)).toEqual([fourth.revision]);
    latest.cancel();

    // A revision the cluster has not reached is refused, not waited for: it comes from another
    // cluster, and changes up to it would be skipped.
    const ahead = n2.watch({
      prefix: "watched/",
      fromRevision: fourth.revision + 1_000_000,
      progressNotify: false,
    });
    const refused = await new Promise<ServiceError>((resolve) => ahead.on("error", resolve));
    expect(refused.code).toBe(status.OUT_OF_RANGE);
    expect(refused.metadata.get("strongroom-reason")).toEqual(["REVISION_AHEAD"]);
    expect(refused.details).toMatch(/^revision \d+ is ahead of this cluster \(at \d+\)/);
  }, 60_000);

  it("a node that stops ends its watches and its peers' streams at once, not at the end of a grace: its clients move on", async () => {
    const [id, node] = [...nodes.entries()].find(([, candidate]) => !candidate.isLeader()) ?? [];
    if (id === undefined || node === undefined) throw new Error("no follower");
    const watch = clientOf(id).secrets.watch({ prefix: "stopping/", fromRevision: 0, progressNotify: false });
    const ended = new Promise<ServiceError>((resolve) => watch.on("error", resolve));
    await new Promise((resolve) => watch.on("metadata", resolve));
    const started = performance.now();
    // A grace far longer than a stop takes: a watch holding the shutdown would show.
    await node.stop(20_000);
    // Nor do the streams its peers keep open to it: the peer listener waited a full second for
    // them at every stop before they were answered as the transport closed.
    expect(performance.now() - started).toBeLessThan(900);
    const error = await ended;
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(error.metadata.get("strongroom-reason")).toEqual(["STOPPING"]);
    expect(error.details).toBe("this node is stopping: watch through another node");
  }, 60_000);
});
