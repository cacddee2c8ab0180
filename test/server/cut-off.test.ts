// A node left alone (the two others of three stopped) refuses a call waiting for a leader at once
// with NO_LEADER "hears from too few members", so that a client goes to another node instead of
// waiting out the leader wait (2 s here) on it. It learns that from its own requests - heartbeats
// or vote requests - left unanswered (server/peer-contact.ts), not from silence alone. Three nodes
// in this process, over real sockets and mutual TLS.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, expect, it } from "vitest";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { callError, InProcessCluster, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("cut-off");
const root = mkdtempSync(join(tmpdir(), "strongroom-cut-off-"));
// 127.0.0.245-247, ports 27000-27002.
const specs = nodeSpecs(3, 27_000, 244);
const configs = writeConfigs(pki, root, specs);
const cluster = new InProcessCluster(pki);

afterAll(async () => {
  await cluster.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

it("a node whose two peers stopped refuses a read at once as cut off, well inside the leader wait", async () => {
  await cluster.startAll(specs, configs);
  await cluster.initializeWithOneShare("n1");
  const leader = await cluster.leaderId();
  const [survivor, other] = specs.map((spec) => spec.id).filter((id) => id !== leader) as [string, string];
  await cluster.nodes.get(other)?.stop(500);
  await cluster.nodes.get(leader)?.stop(500);

  const secrets = cluster.client(survivor).secrets;
  const asked = performance.now();
  const refused = await callError(secrets.get.bind(secrets), {
    path: "app/db",
    version: 0,
    consistency: Consistency.CONSISTENCY_LINEARIZABLE,
    maxStalenessMs: 0,
  });
  const waitedMs = performance.now() - asked;
  expect(refused).toMatchObject({ code: status.UNAVAILABLE, reason: "NO_LEADER" });
  expect(refused.details).toMatch(/hears from too few members to make a quorum/);
  // Its campaign (within two election timeouts of 200 ms), then an election timeout unanswered;
  // the leader wait it no longer sits out is 2 s.
  expect(waitedMs).toBeLessThan(1500);
}, 30_000);
