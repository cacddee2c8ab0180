// Regions on a real (in-process) cluster over mutual TLS: the leader moves to the preferred region
// and comes back to it after its node there was stopped and returned; members list their regions;
// the SDK with a region sends reads to the nodes of its region, not to the first endpoint it was given.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createClient } from "../../client/index.js";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { loadNodeConfig } from "../../server/config.js";
import { eventually } from "../support/eventually.js";
import { call, InProcessCluster, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("multi-region");
const root = mkdtempSync(join(tmpdir(), "strongroom-multi-region-"));
// 127.0.0.226-228, ports 63000-63002.
const specs = nodeSpecs(3, 63_000, 225);
const regionOf: Record<string, string> = { n1: "eu", n2: "us", n3: "us" };
const members = specs.map((spec) => ({
  id: spec.id,
  peerAddress: `${spec.host}:${spec.peerPort}`,
  clientAddress: `${spec.host}:${spec.clientPort}`,
  region: regionOf[spec.id],
  zone: `${regionOf[spec.id]}-1a`,
}));
const configs = writeConfigs(pki, root, specs, (spec) => ({
  region: regionOf[spec.id],
  zone: `${regionOf[spec.id]}-1a`,
  members,
  preferredLeaderRegion: "eu",
}));
const cluster = new InProcessCluster(pki);
let share = "";
let rootToken = "";

function configOf(id: string) {
  const entry = configs.get(id);
  if (entry === undefined) throw new Error(`no config for ${id}`);
  return loadNodeConfig(entry.file);
}

beforeAll(async () => {
  for (const spec of specs) await cluster.start(spec, configOf(spec.id));
  ({ share, rootToken } = await cluster.initializeWithOneShare("n2"));
}, 60_000);

afterAll(async () => {
  await cluster.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

async function leaderIs(id: string, timeoutMs: number): Promise<number> {
  const started = performance.now();
  await eventually(() => cluster.nodes.get(id)?.isLeader() === true, timeoutMs);
  return performance.now() - started;
}

it("moves the leader to the preferred region, and back to it after its node there returns", async () => {
  await leaderIs("n1", 10_000);
  const view = cluster.client("n3").cluster;
  const { members: listed } = await call(view.members.bind(view), {});
  expect(listed.map((member) => [member.nodeId, member.region, member.zone])).toEqual([
    ["n1", "eu", "eu-1a"],
    ["n2", "us", "us-1a"],
    ["n3", "us", "us-1a"],
  ]);

  // n1 stops: a node in us leads; the cluster takes writes.
  await cluster.nodes.get("n1")?.stop(500);
  cluster.nodes.delete("n1");
  const survivors = specs.filter((spec) => spec.id !== "n1");
  await eventually(() => survivors.some((spec) => cluster.nodes.get(spec.id)?.isLeader()), 10_000);
  const secrets = cluster.client("n2").secrets;
  await call(secrets.put.bind(secrets), { path: "app/while-eu-away", value: new Uint8Array([1]) });

  // n1 returns, sealed; once unsealed and caught up, leadership comes back to it.
  const n1 = specs[0];
  if (n1 === undefined) throw new Error("no n1");
  await cluster.start(n1, configOf("n1"));
  cluster.useToken(rootToken);
  const sys = cluster.client("n1").sys;
  await call(sys.unseal.bind(sys), { share, nonce: "", reset: false });
  const backMs = await leaderIs("n1", 15_000);
  process.stdout.write(
    `multi-region: leadership back in the preferred region ${Math.round(backMs)} ms after n1 was unsealed\n`,
  );
}, 60_000);

it("an SDK client with a region reads from the nodes in it, not from the first endpoint", async () => {
  const files = pki.client("operator");
  const endpoints = specs.map((spec) => `${spec.host}:${spec.clientPort}`);
  const getsOn = async (host: string, httpPort: number) => {
    const text = await (await fetch(`http://${host}:${httpPort}/metrics`)).text();
    return Number(
      /^strongroom_grpc_server_handled_total\{method="\/strongroom.v1.Secrets\/Get",code="OK"\} (\d+)$/m.exec(
        text,
      )?.[1] ?? "0",
    );
  };
  const counts = () => Promise.all(specs.map((spec) => getsOn(spec.host, spec.httpPort)));
  // The endpoints in the given order, n1 (eu) first. Sticky (the default), one node serves every
  // read: one of the region's, or without a region the first endpoint. Balanced, the second read goes to a node the first did not (one never used
  // costs nothing): with a region, both of its nodes serve, no other; without, more than one.
  for (const [region, readRouting, expected] of [
    ["us", "sticky", [["n2"], ["n3"]]],
    [undefined, "sticky", [["n1"]]],
    ["us", "balanced", [["n2", "n3"]]],
    [undefined, "balanced", null],
  ] as const) {
    const client = createClient({
      endpoints,
      endpointOrder: "given",
      tls: { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile },
      token: rootToken,
      readRouting,
      ...(region === undefined ? {} : { region }),
    });
    try {
      const before = await counts();
      for (let i = 0; i < 10; i++) {
        await client.secrets.get({
          path: "app/while-eu-away",
          version: 0,
          consistency: Consistency.CONSISTENCY_LINEARIZABLE,
          maxStalenessMs: 0,
        });
      }
      const after = await counts();
      const served = specs.filter((_, i) => (after[i] ?? 0) > (before[i] ?? 0)).map((spec) => spec.id);
      if (expected === null) expect(served.length, `served by ${served}`).toBeGreaterThan(1);
      else expect(expected, `region ${region}, ${readRouting}: served by ${served}`).toContainEqual(served);
    } finally {
      client.close();
    }
  }
}, 60_000);
