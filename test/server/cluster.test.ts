// A three-node cluster in this process, over real sockets, mutual TLS and LevelDB: the life of a
// new cluster as operators and clients meet it. Init through a follower, every node sealed until
// unsealed with its shares, writes through a follower forwarded to the leader, linearizable reads
// on another follower, the errors a client relies on (sealed, CAS conflict, bad path, too large),
// and the health endpoint's codes.

import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import {
  type ClientDuplexStream,
  loadPackageDefinition,
  makeGenericClientConstructor,
  type ServiceClientConstructor,
  type ServiceDefinition,
  status,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { service as healthService } from "grpc-health-check";
import { afterAll, expect, it } from "vitest";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { StrongroomNode } from "../../server/node.js";
import { type DialTls, dialTls } from "../../server/tls/credentials.js";
import { TlsFiles } from "../../server/tls/tls-files.js";
import { eventually } from "../support/eventually.js";
import { call, callError, InProcessCluster, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("cluster");
const root = mkdtempSync(join(tmpdir(), "strongroom-cluster-"));
const specs = nodeSpecs(3, 17_000);
const configs = writeConfigs(pki, root, specs);
const cluster = new InProcessCluster(pki);
const client = (id: string) => cluster.client(id);
const leaderId = () => cluster.leaderId();
/** A Get of the newest version, read linearizably. */
const linearizable = (path: string) => ({
  path,
  version: 0,
  consistency: Consistency.CONSISTENCY_LINEARIZABLE,
  maxStalenessMs: 0,
});

afterAll(async () => {
  await cluster.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

it("a new cluster: init through a follower, unseal every node, write and read through followers", async () => {
  await cluster.startAll(specs, configs);
  const leader = await leaderId();
  const [followerA, followerB] = specs.map((spec) => spec.id).filter((id) => id !== leader) as [
    string,
    string,
  ];

  const uninitialized = await callError(client(followerA).secrets.get.bind(client(followerA).secrets), {
    path: "app/db",
    version: 0,
    consistency: Consistency.CONSISTENCY_UNSPECIFIED,
    maxStalenessMs: 0,
  });
  expect(uninitialized).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "NOT_INITIALIZED" });

  const init = await call(client(followerA).sys.init.bind(client(followerA).sys), {
    shamir: { count: 3, threshold: 2, operatorKeys: [] },
    hsm: false,
    generateHsmKey: false,
    recovery: undefined,
  });
  expect(init.unsealShares).toHaveLength(3);
  expect(init.unsealThreshold).toBe(2);
  expect(init.rootToken).toMatch(/^sr\.[A-Za-z0-9_-]{43}$/);
  const again = await callError(client(followerB).sys.init.bind(client(followerB).sys), {
    shamir: { count: 3, threshold: 2, operatorKeys: [] },
    hsm: false,
    generateHsmKey: false,
    recovery: undefined,
  });
  expect(again).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "ALREADY_INITIALIZED" });

  // Every node is initialized and sealed; a sealed node refuses secrets.
  for (const spec of specs) {
    await eventually(() => [...cluster.nodes.values()].every((node) => node.sealStatus().initialized), 5000);
    const sealStatus = await call(client(spec.id).sys.sealStatus.bind(client(spec.id).sys), {});
    expect(sealStatus).toMatchObject({
      initialized: true,
      sealed: true,
      threshold: 2,
      shares: 3,
      sealTypes: ["shamir"],
    });
  }
  // Readiness (Kubernetes): not ready while sealed, the body says why.
  const sealedReady = await fetch(`http://${specs[0]?.host}:${specs[0]?.httpPort}/v1/sys/ready`);
  expect(sealedReady.status).toBe(503);
  expect(await sealedReady.json()).toMatchObject({ ready: false, initialized: true, sealed: true });
  const sealed = await callError(client(followerB).secrets.put.bind(client(followerB).secrets), {
    path: "app/db",
    value: new TextEncoder().encode("hunter2"),
  });
  expect(sealed).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "SEALED" });

  const address = `${specs[0]?.host}:${specs[0]?.clientPort}`;
  const probe = dialTls(new TlsFiles(pki.client("probe")), address);
  expect(await healthOf(address, probe)).toBe("NOT_SERVING");

  // Unseal each node with two shares (a different pair on each).
  for (const [position, spec] of specs.entries()) {
    const sys = client(spec.id).sys;
    const first = await call(sys.unseal.bind(sys), {
      share: init.unsealShares[position] ?? "",
      nonce: "",
      reset: false,
    });
    expect(first).toMatchObject({ sealed: true, progress: 1, threshold: 2 });
    const second = await call(sys.unseal.bind(sys), {
      share: init.unsealShares[(position + 1) % 3] ?? "",
      nonce: first.nonce,
      reset: false,
    });
    expect(second).toMatchObject({ sealed: false, unsealedBy: "shamir" });
  }

  // Without a token or a binding for its identity, a client may do nothing; with the root token, anything.
  const anonymous = await callError(client(followerA).secrets.put.bind(client(followerA).secrets), {
    path: "app/db",
    value: new TextEncoder().encode("hunter2"),
  });
  expect(anonymous).toMatchObject({ code: status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" });
  expect(anonymous.details).toBe("operator may not create app/db");
  cluster.useToken(init.rootToken);

  // A write through one follower, a linearizable read through the other.
  const writer = client(followerA).secrets;
  const put = await call(writer.put.bind(writer), {
    path: "app/db",
    value: new TextEncoder().encode("hunter2"),
  });
  expect(put.version).toBe(1);
  const reader = client(followerB).secrets;
  const read = await call(reader.get.bind(reader), linearizable("app/db"));
  expect(new TextDecoder().decode(read.value)).toBe("hunter2");
  expect(read.version).toBe(1);
  expect(read.revision).toBeGreaterThanOrEqual(put.revision);

  // Every answer names the leader (a trailer), so a client can send its next write there.
  const leaderNamed = await new Promise<string>((resolve, reject) => {
    const pending = writer.put({ path: "app/trailer", value: new Uint8Array([1]) }, (error) => {
      if (error !== null) reject(error);
    });
    pending.on("status", (answer) => resolve(String(answer.metadata.get("strongroom-leader")[0] ?? "")));
  });
  expect(leaderNamed).toBe(await leaderId());

  // A bounded-stale read on a follower that heard from its leader within the bound.
  const stale = await call(reader.get.bind(reader), {
    path: "app/db",
    version: 0,
    consistency: Consistency.CONSISTENCY_STALE,
    maxStalenessMs: 5000,
  });
  expect(new TextDecoder().decode(stale.value)).toBe("hunter2");

  // Check-and-set: a stale expectation is ABORTED, the right one writes version 2.
  const conflict = await callError(writer.put.bind(writer), {
    path: "app/db",
    value: new Uint8Array([1]),
    cas: 0,
  });
  expect(conflict).toMatchObject({ code: status.ABORTED, reason: "CAS_MISMATCH" });
  const second = await call(writer.put.bind(writer), { path: "app/db", value: new Uint8Array([2]), cas: 1 });
  expect(second.version).toBe(2);

  // Bad input: a bad path and a value over the limit, each with its reason.
  const badPath = await callError(writer.put.bind(writer), {
    path: "../etc/passwd",
    value: new Uint8Array([1]),
  });
  expect(badPath).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_ARGUMENT" });
  expect(badPath.details).toMatch(/invalid path/);
  const tooLarge = await callError(writer.put.bind(writer), {
    path: "app/big",
    value: new Uint8Array(1024 * 1024 + 1),
  });
  expect(tooLarge).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "VALUE_TOO_LARGE" });
  // A destroy's versions: numbered from 1, no more of them than a secret keeps, none not written
  // yet. Each list names versions 1 or 2 too, and neither is destroyed.
  for (const [versions, details] of [
    [[1, 0], "versions are numbered from 1: got 0"],
    [
      Array.from({ length: 1001 }, (_, i) => i + 1),
      "1001 versions named; one request names at most 1000 (the most a secret keeps)",
    ],
    [[2, 3, 7], "app/db has no version 3, 7: its newest is 2"],
  ] as const) {
    const refused = await callError(writer.destroy.bind(writer), { path: "app/db", versions: [...versions] });
    expect(refused).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_ARGUMENT", details });
  }
  for (const version of [1, 2])
    expect((await call(writer.get.bind(writer), { ...linearizable("app/db"), version })).version).toBe(
      version,
    );
  // Custom metadata: replaced with replace_custom; given without it, refused (it was ignored, and
  // the call answered as if it had been written); with an empty map, cleared.
  const metadataChange = (custom: Record<string, string>, replaceCustom: boolean) => ({
    path: "app/db",
    custom,
    replaceCustom,
    generator: undefined,
    clearGenerator: false,
  });
  const customOf = async () =>
    (
      await call(writer.getMetadata.bind(writer), {
        path: "app/db",
        consistency: Consistency.CONSISTENCY_LINEARIZABLE,
      })
    ).custom;
  await call(writer.updateMetadata.bind(writer), metadataChange({ team: "payments" }, true));
  expect(await customOf()).toEqual({ team: "payments" });
  expect(
    await callError(writer.updateMetadata.bind(writer), metadataChange({ team: "search" }, false)),
  ).toMatchObject({
    code: status.INVALID_ARGUMENT,
    details:
      "custom is given without replace_custom: set replace_custom to replace the secret's custom metadata with it (with an empty custom, it clears them)",
  });
  expect(await customOf()).toEqual({ team: "payments" });
  await call(writer.updateMetadata.bind(writer), metadataChange({}, true));
  expect(await customOf()).toEqual({});

  // gRPC health and reflection on the client port, with the same client certificate.
  expect(await healthOf(address, probe)).toBe("SERVING");
  const reflectionDefinition = loadPackageDefinition(
    loadSync("grpc/reflection/v1/reflection.proto", {
      includeDirs: [new URL("../../node_modules/@grpc/reflection/build/proto", import.meta.url).pathname],
    }),
  ) as unknown as { grpc: { reflection: { v1: { ServerReflection: ServiceClientConstructor } } } };
  const reflection = new reflectionDefinition.grpc.reflection.v1.ServerReflection(
    address,
    probe.credentials,
    probe.options,
  ) as unknown as {
    ServerReflectionInfo(): ClientDuplexStream<
      unknown,
      { listServicesResponse?: { service: { name: string }[] } }
    >;
    close(): void;
  };
  const services = await new Promise<string[]>((resolve, reject) => {
    const stream = reflection.ServerReflectionInfo();
    stream.on("data", (response: { listServicesResponse?: { service: { name: string }[] } }) => {
      resolve((response.listServicesResponse?.service ?? []).map((entry) => entry.name));
      stream.end();
    });
    stream.on("error", reject);
    stream.write({ listServices: "" });
  });
  reflection.close();
  expect(services).toEqual(
    expect.arrayContaining(["strongroom.v1.Secrets", "strongroom.v1.Sys", "strongroom.v1.Cluster"]),
  );

  // Metrics: calls by method and code (the writer's node saw the CAS conflict), Raft and seal state.
  const writerSpec = specs.find((spec) => spec.id === followerA);
  const metrics = await (await fetch(`http://${writerSpec?.host}:${writerSpec?.httpPort}/metrics`)).text();
  expect(metrics).toMatch(
    /^strongroom_grpc_server_handled_total\{method="\/strongroom.v1.Secrets\/Put",code="OK"\} [2-9]/m,
  );
  expect(metrics).toMatch(
    /^strongroom_grpc_server_handled_total\{method="\/strongroom.v1.Secrets\/Put",code="ABORTED"\} 1$/m,
  );
  expect(metrics).toMatch(
    /^strongroom_grpc_server_handling_seconds_count\{method="\/strongroom.v1.Secrets\/Put"\} \d+/m,
  );
  expect(metrics).toMatch(/^strongroom_raft_term [1-9]/m);
  expect(metrics).toMatch(/^strongroom_raft_leader_changes_total [1-9]/m);
  expect(metrics).toMatch(/^strongroom_raft_log_append_seconds_count [1-9]/m);
  // The writes above were replicated in appends: sent by a leader and answered, or received and
  // answered by a follower.
  expect(metrics).toMatch(
    /^strongroom_raft_messages_total\{direction="(sent|received)",type="append"\} [1-9]/m,
  );
  expect(metrics).toMatch(
    /^strongroom_raft_messages_total\{direction="(received|sent)",type="appendResponse"\} [1-9]/m,
  );
  expect(metrics).toMatch(/^strongroom_seal_sealed 0$/m);
  expect(metrics).not.toContain("hunter2");
  // Nodes sharing a process (these) leave the process's own figures out: they would not be the node's.
  expect(metrics).not.toMatch(/^process_resident_memory_bytes/m);

  // Health: the leader 200, followers 429. Readiness: every unsealed member 200.
  for (const spec of specs) {
    const response = await fetch(`http://${spec.host}:${spec.httpPort}/v1/sys/health`);
    expect(response.status).toBe(spec.id === (await leaderId()) ? 200 : 429);
    const ready = await fetch(`http://${spec.host}:${spec.httpPort}/v1/sys/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      ready: true,
      sealed: false,
      removed: false,
      leaderKnown: true,
    });
  }
});

/** The gRPC health status of strongroom.v1.Secrets at `address`. */
async function healthOf(address: string, dial: DialTls): Promise<string> {
  const HealthClient = makeGenericClientConstructor(healthService as ServiceDefinition, "Health");
  const health = new HealthClient(address, dial.credentials, dial.options) as unknown as {
    check(
      request: { service: string },
      callback: (error: Error | null, response: { status: string }) => void,
    ): void;
    close(): void;
  };
  try {
    const checked = await new Promise<{ status: string }>((resolve, reject) =>
      health.check({ service: "strongroom.v1.Secrets" }, (error, response) =>
        error === null ? resolve(response) : reject(error),
      ),
    );
    return checked.status;
  } finally {
    health.close();
  }
}

it("a write sent again with its request id, through any node, applies once and gets the first answer", async () => {
  const leader = await leaderId();
  const ids = specs.map((spec) => spec.id);
  const value = new TextEncoder().encode("s3cret");
  const answers = [];
  // Through a follower, then the other, then the leader: forwarded or not, one version.
  for (const id of [...ids.filter((other) => other !== leader), leader]) {
    const secrets = client(id).secrets;
    answers.push(await call(secrets.put.bind(secrets), { path: "app/retried", value, requestId: "put-1" }));
  }
  expect(answers[0]?.version).toBe(1);
  expect(answers.slice(1)).toEqual([answers[0], answers[0]]);
  const secrets = client(ids[0] ?? "").secrets;
  const history = await call(secrets.history.bind(secrets), {
    path: "app/retried",
    consistency: Consistency.CONSISTENCY_LINEARIZABLE,
  });
  expect(history.versions.map((version) => version.version)).toEqual([1]);

  // The same id with another value is the client's mistake, refused; the first write stands.
  const reused = await callError(secrets.put.bind(secrets), {
    path: "app/retried",
    value: new TextEncoder().encode("other"),
    requestId: "put-1",
  });
  expect(reused).toMatchObject({ code: status.ALREADY_EXISTS, reason: "REQUEST_ID_REUSED" });
  expect(reused.details).toMatch(
    /^request id put-1 was used by a different request \(the write at revision \d+\)/,
  );
  const malformed = await callError(secrets.put.bind(secrets), { path: "app/retried", value, requestId: "" });
  expect(malformed).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_ARGUMENT" });
  expect(malformed.details).toMatch(/^a request id is 1 to 128 characters/);

  // Deletes and metadata changes too: the retry answers the first one's revision.
  const deleted = await call(secrets.delete.bind(secrets), {
    path: "app/retried",
    versions: [1],
    requestId: "del-1",
  });
  const deletedAgain = await call(secrets.delete.bind(secrets), {
    path: "app/retried",
    versions: [1],
    requestId: "del-1",
  });
  expect(deletedAgain.revision).toBe(deleted.revision);
  const undeleted = await call(secrets.undelete.bind(secrets), {
    path: "app/retried",
    versions: [1],
    requestId: "und-1",
  });
  expect(undeleted.revision).toBeGreaterThan(deleted.revision);
  // The delete's retry, after the undelete: not applied again, so version 1 stays readable.
  await call(secrets.delete.bind(secrets), { path: "app/retried", versions: [1], requestId: "del-1" });
  const read = await call(secrets.get.bind(secrets), linearizable("app/retried"));
  expect(new TextDecoder().decode(read.value)).toBe("s3cret");
});

it("keyring rotations at once each make their own term; values written meanwhile stay readable", async () => {
  const ids = specs.map((spec) => spec.id);
  const paths = Array.from({ length: 6 }, (_, index) => `keyring/v${index}`);
  // One rotation through each node (all run on the leader) and writes through each, together.
  const [rotations] = await Promise.all([
    Promise.all(ids.map((id) => call(client(id).sys.rotateKeyring.bind(client(id).sys), {}))),
    Promise.all(
      paths.map((path, index) => {
        const secrets = client(ids[index % ids.length] ?? "").secrets;
        return call(secrets.put.bind(secrets), { path, value: new TextEncoder().encode(path) });
      }),
    ),
  ]);
  // Three terms in a row: no rotation made the same term as another with a key of its own,
  // which would have taken away the key of values written under the other's.
  const terms = rotations.map((rotation) => rotation.term).sort((a, b) => a - b);
  const first = terms[0] ?? 0;
  expect(terms).toEqual([first, first + 1, first + 2]);
  for (const [index, path] of paths.entries()) {
    const secrets = client(ids[(index + 1) % ids.length] ?? "").secrets;
    const read = await call(secrets.get.bind(secrets), linearizable(path));
    expect(new TextDecoder().decode(read.value)).toBe(path);
  }
});

it("each node says which strongroom and which Node.js it runs", async () => {
  const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  for (const spec of specs) {
    const metrics = await (await fetch(`http://${spec.host}:${spec.httpPort}/metrics`)).text();
    expect(metrics, spec.id).toContain(
      `strongroom_build_info{version="${version}",node_version="${process.versions.node}"} 1`,
    );
  }
});

it("rotates the client-port certificate without a restart: new connections see the new one", async () => {
  const spec = specs[0];
  const entry = configs.get(spec?.id ?? "");
  if (spec === undefined || entry === undefined) throw new Error("no node");
  const serialNow = () =>
    new Promise<string>((resolve, reject) => {
      const client = pki.client("rotation-probe");
      const socket = tlsConnect({
        host: spec.host,
        port: spec.clientPort,
        ca: readFileSync(client.caFile),
        cert: readFileSync(client.certificateFile),
        key: readFileSync(client.privateKeyFile),
        ALPNProtocols: ["h2"],
        servername: "localhost",
      });
      socket.once("secureConnect", () => {
        resolve(socket.getPeerCertificate().serialNumber);
        socket.destroy();
      });
      socket.once("error", reject);
    });
  const before = await serialNow();
  const next = pki.node(spec.id, [spec.host, "localhost"]);
  copyFileSync(next.certificateFile, entry.config.tls.client.certificateFile);
  copyFileSync(next.privateKeyFile, entry.config.tls.client.privateKeyFile);
  const expected = new X509Certificate(readFileSync(next.certificateFile)).serialNumber;
  expect(expected).not.toBe(before);
  const deadline = Date.now() + 10_000;
  let seen = before;
  while (seen !== expected && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    seen = await serialNow();
  }
  expect(seen.toUpperCase()).toBe(expected.toUpperCase());
});

it("a start that fails (its port is taken) releases everything: the same data directory starts next time", async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", () => resolve()));
  const taken = (blocker.address() as AddressInfo).port;
  const lone = nodeSpecs(1, 0, 200)[0];
  const entry = writeConfigs(pki, join(root, "lone"), lone === undefined ? [] : [lone]).get("n1");
  if (entry === undefined) throw new Error("no config");
  const busy = { ...entry.config, listen: { client: `127.0.0.1:${taken}`, peer: "127.0.0.1:0" } };
  // Named by its config field and address (grpc-js says "No address added out of total 1 ...").
  await expect(StrongroomNode.start(busy)).rejects.toThrow(
    `cannot listen on 127.0.0.1:${taken} (listen.client): the port is in use (another process listens there)`,
  );
  blocker.close();
  const node = await StrongroomNode.start({
    ...busy,
    listen: { client: "127.0.0.1:0", peer: "127.0.0.1:0" },
  });
  // A second node on the same data directory: refused, saying why (LevelDB's reason was in a
  // cause under abstract-level's "Database failed to open").
  await expect(
    StrongroomNode.start({ ...busy, listen: { client: "127.0.0.1:0", peer: "127.0.0.1:0" } }),
  ).rejects.toThrow(
    `cannot open the secret store in ${join(busy.dataDir, "state")}: another process has ${join(busy.dataDir, "state")} open (is a node already running with this dataDir?)`,
  );
  await node.stop(100);
});
