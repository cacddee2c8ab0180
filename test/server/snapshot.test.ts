// Backups end to end: a snapshot saved from a follower of one cluster holds no secret in the clear;
// a restore is refused when the snapshot is damaged, larger than the node takes, or the target is
// already initialized (restored twice); restored into a new cluster (through the SDK, streamed from
// a source; staged in a file on the leader, removed after) it brings every secret back behind the
// same seal (the old shares unseal it), and its revisions go on above the saved cluster's, so a
// watcher's revision from before the restore is refused as too old, not taken for a new one.

import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, expect, it } from "vitest";
import { createClient } from "../../client/index.js";
import type {
  ClusterClient,
  RestoreSnapshotResponse,
  SnapshotChunk,
} from "../../proto/gen/strongroom/v1/cluster.gen.js";
import { Consistency, type WatchEvent } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { revisionsAfterSave } from "../../server/api/snapshot-handlers.js";
import { StrongroomNode } from "../../server/node.js";
import { eventually } from "../support/eventually.js";
import { type Clients, call, clientsFor, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("snapshot");
const root = mkdtempSync(join(tmpdir(), "strongroom-snapshot-"));
const base = 33_000;
const running: StrongroomNode[] = [];
const openClients: Clients[] = [];

afterAll(async () => {
  for (const client of openClients) client.close();
  await Promise.all(running.map((node) => node.stop(500)));
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

async function startCluster(name: string, hostOffset: number, extra: Record<string, unknown> = {}) {
  const specs = nodeSpecs(3, base, hostOffset);
  const configs = writeConfigs(pki, join(root, name), specs, () => extra);
  const nodes: StrongroomNode[] = [];
  for (const spec of specs) {
    const entry = configs.get(spec.id);
    if (entry === undefined) throw new Error("no config");
    const node = await StrongroomNode.start(entry.config);
    nodes.push(node);
    running.push(node);
  }
  const clients = specs.map((spec) => clientsFor(`${spec.host}:${spec.clientPort}`, pki));
  openClients.push(...clients);
  let leader = -1;
  await eventually(() => {
    leader = nodes.findIndex((node) => node.isLeader());
    return leader >= 0;
  }, 10_000);
  return {
    nodes,
    clients,
    specs,
    /** The files restores left in each node's staging directory. */
    staged: () =>
      specs.flatMap((spec) => {
        const directory = join(configs.get(spec.id)?.config.dataDir ?? "", "restore");
        return existsSync(directory) ? readdirSync(directory) : [];
      }),
    leader: () => nodes.findIndex((node) => node.isLeader()),
    first: clients[0] as Clients,
  };
}

async function unsealAll(clients: readonly Clients[], shares: readonly string[]) {
  for (const client of clients) {
    for (const share of shares)
      await call(client.sys.unseal.bind(client.sys), { share, nonce: "", reset: false });
  }
}

function save(cluster: ClusterClient): Promise<SnapshotChunk[]> {
  return new Promise((resolve, reject) => {
    const chunks: SnapshotChunk[] = [];
    const stream = cluster.saveSnapshot({});
    stream.on("data", (chunk: SnapshotChunk) => chunks.push(chunk));
    stream.on("end", () => resolve(chunks));
    stream.on("error", reject);
  });
}

function restore(cluster: ClusterClient, chunks: readonly SnapshotChunk[]): Promise<RestoreSnapshotResponse> {
  return new Promise((resolve, reject) => {
    const stream = cluster.restoreSnapshot((error, response) =>
      error === null ? resolve(response) : reject(error),
    );
    for (const chunk of chunks) stream.write(chunk);
    stream.end();
  });
}

it("save from one cluster, restore into a new one, unseal with the old shares, read every secret", async () => {
  // The source takes restores of up to 1 MiB only (the least allowed): the backup is larger.
  const source = await startCluster("source", 100, { requests: { snapshotBytesMax: 1024 * 1024 } });
  const init = await call(source.first.sys.init.bind(source.first.sys), {
    shamir: { count: 3, threshold: 2, operatorKeys: [] },
    hsm: false,
    generateHsmKey: false,
    recovery: undefined,
  });
  for (const client of source.clients) client.useToken(init.rootToken);
  await unsealAll(source.clients, init.unsealShares.slice(0, 2));
  const marker = "plaintext-marker-7f3a9c";
  const secrets = new Map<string, Uint8Array>([
    ["app/db", new TextEncoder().encode(`${marker}-db`)],
    ["app/api", new TextEncoder().encode(`${marker}-api`)],
    // A value at the size limit still fits in one Raft entry.
    ["app/big", new Uint8Array(1024 * 1024).fill(7)],
  ]);
  let lastSourceRevision = 0;
  // With request ids: the backup holds their records, which a restore leaves out.
  for (const [position, [path, value]] of [...secrets].entries())
    ({ revision: lastSourceRevision } = await call(source.first.secrets.put.bind(source.first.secrets), {
      path,
      value,
      requestId: `saved-${position}`,
    }));

  const follower = source.clients[(source.leader() + 1) % 3] as Clients;
  const chunks = await save(follower.cluster);
  expect(chunks.length).toBeGreaterThan(1);
  const data = Buffer.concat(chunks.map((chunk) => chunk.data));
  expect(chunks[0]?.totalBytes).toBe(data.length);
  expect(chunks[0]?.appliedIndex).toBeGreaterThan(0);
  // The size in the first chunk only, the digest in the last only, and no chunk much above 1 MiB.
  expect(chunks.slice(1).every((chunk) => chunk.totalBytes === 0 && chunk.appliedIndex === 0)).toBe(true);
  expect(chunks.slice(0, -1).every((chunk) => chunk.sha256.length === 0)).toBe(true);
  expect(chunks.at(-1)?.sha256).toHaveLength(32);
  expect(Math.max(...chunks.map((chunk) => chunk.data.length))).toBeLessThan(1.5 * 1024 * 1024);
  expect(data.includes(Buffer.from(marker))).toBe(false);

  // Not larger than the node takes, and not a damaged snapshot.
  expect(data.length).toBeGreaterThan(1024 * 1024);
  const leaderOfSource = source.clients[source.leader()] as Clients;
  await expect(restore(leaderOfSource.cluster, chunks)).rejects.toMatchObject({
    code: status.RESOURCE_EXHAUSTED,
    details: `the snapshot is larger than ${1024 * 1024} bytes`,
  });

  const target = await startCluster("target", 110);
  const targetLeader = target.clients[target.leader()] as Clients;
  const damaged = chunks.map((chunk, i) =>
    i === 0
      ? { ...chunk, data: Uint8Array.from(chunk.data, (byte, j) => (j === 100 ? byte ^ 1 : byte)) }
      : chunk,
  );
  await expect(restore(targetLeader.cluster, damaged)).rejects.toMatchObject({
    code: status.INVALID_ARGUMENT,
  });
  const notLeader = target.clients[(target.leader() + 1) % 3] as Clients;
  await expect(restore(notLeader.cluster, chunks)).rejects.toMatchObject({ code: status.UNAVAILABLE });

  // Through the SDK, every node given (a follower first answers NO_LEADER; the SDK goes on), the
  // chunks streamed from a source it reads again for each node it tries.
  const followerFirst = [(target.leader() + 1) % 3, target.leader()].map(
    (i) => `${target.specs[i]?.host}:${target.specs[i]?.clientPort}`,
  );
  const files = pki.client("restorer");
  const sdk = createClient({
    endpoints: followerFirst,
    endpointOrder: "given",
    tls: { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile },
    deadlineMs: 15_000,
  });
  let reads = 0;
  const restored = await sdk
    .restoreSnapshot(async function* () {
      reads += 1;
      yield* chunks;
    })
    .finally(() => sdk.close());
  expect(reads).toBe(2);
  expect(restored.records).toBeGreaterThan(3);
  // Once only: the target is initialized now.
  await expect(restore(targetLeader.cluster, chunks)).rejects.toMatchObject({
    code: status.FAILED_PRECONDITION,
  });
  // What the leaders received was staged in a file, removed once used or refused.
  await eventually(() => target.staged().length === 0 && source.staged().length === 0, 5000);
  for (const node of target.nodes) await eventually(() => node.sealStatus().initialized, 5000);
  await unsealAll(target.clients, [init.unsealShares[2] ?? "", init.unsealShares[0] ?? ""]);
  // The restored cluster has the saved tokens too: the old root token works there.
  for (const client of target.clients) client.useToken(init.rootToken);
  for (const client of target.clients) {
    for (const [path, value] of secrets) {
      const read = await call(client.secrets.get.bind(client.secrets), {
        path,
        version: 0,
        consistency: Consistency.CONSISTENCY_LINEARIZABLE,
        maxStalenessMs: 0,
      });
      expect(Buffer.from(read.value).equals(Buffer.from(value))).toBe(true);
      expect(read.revision).toBeGreaterThanOrEqual(restored.revision);
    }
  }

  // Revisions go on above the saved cluster's, with room for the changes it made after the save.
  const savedAt = chunks[0]?.appliedIndex ?? 0;
  expect(lastSourceRevision).toBeLessThanOrEqual(savedAt);
  expect(restored.revision).toBeGreaterThan(savedAt + revisionsAfterSave);
  const secretsOf = (clients: Clients) => clients.secrets;
  const leaderSecrets = secretsOf(target.clients[target.leader()] as Clients);
  const written = await call(leaderSecrets.put.bind(leaderSecrets), {
    path: "app/after",
    value: new Uint8Array([1]),
  });
  expect(written.revision).toBeGreaterThan(restored.revision);
  // A watcher of the saved cluster resuming here is told to list again; before, its revision was
  // ahead of the new cluster's and then, once the new cluster passed it, taken as one of its own.
  const followerSecrets = secretsOf(target.clients[(target.leader() + 1) % 3] as Clients);
  const old = followerSecrets.watch({
    prefix: "app/",
    fromRevision: lastSourceRevision,
    progressNotify: false,
  });
  const refused = await new Promise<ServiceError>((resolve) => old.on("error", resolve));
  expect(refused.code).toBe(status.OUT_OF_RANGE);
  expect(refused.metadata.get("strongroom-reason")).toEqual(["HISTORY_COMPACTED"]);
  // A resume from the restore's own revision replays what came after it.
  const replayed: WatchEvent[] = [];
  const resumed = followerSecrets.watch({
    prefix: "app/",
    fromRevision: restored.revision,
    progressNotify: false,
  });
  resumed.on("data", (event: WatchEvent) => replayed.push(event));
  resumed.on("error", () => {});
  await eventually(() => replayed.length >= 1, 5000);
  expect(replayed.map((event) => [event.path, event.revision])).toEqual([["app/after", written.revision]]);
  resumed.cancel();

  // The saved cluster's request ids are its own: the same request here is a new write.
  const targetSecrets = (target.clients[target.leader()] as Clients).secrets;
  const repeated = await call(targetSecrets.put.bind(targetSecrets), {
    path: "app/db",
    value: secrets.get("app/db") ?? new Uint8Array(),
    requestId: "saved-0",
  });
  expect(repeated.version).toBe(2);

  // A backup of the restored cluster restored again goes above the restored cluster's revisions.
  const again = await save((target.clients[target.leader()] as Clients).cluster);
  const third = await startCluster("third", 120);
  const restoredAgain = await restore((third.clients[third.leader()] as Clients).cluster, again);
  expect(restoredAgain.revision).toBeGreaterThan(written.revision + revisionsAfterSave);
}, 120_000);
