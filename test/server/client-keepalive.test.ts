// The node pings its client connections (requests.keepaliveIntervalMs, keepaliveTimeoutMs): one
// whose client vanished without a word - here a relay that stops moving bytes, as a crashed host
// or a cut link would - is closed, and its watch ends, giving its place back. Without the pings
// that watch would count against its identity's limit for as long as the node runs.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { SecretsClient } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { eventually } from "../support/eventually.js";
import { FreezableRelay } from "../support/freezable-relay.js";
import { type Clients, clientsFor, InProcessCluster, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("client-keepalive");
const root = mkdtempSync(join(tmpdir(), "strongroom-client-keepalive-"));
const specs = nodeSpecs(1, 39_500, 212);
const spec = specs[0] as (typeof specs)[number];
const configs = writeConfigs(pki, root, specs, () => ({
  requests: { keepaliveIntervalMs: 1000, keepaliveTimeoutMs: 1000 },
  // One watch per identity: a place held by a dead connection is seen at once.
  watch: { watchersPerIdentityMax: 1 },
}));
const running = new InProcessCluster(pki);
const cancels: (() => void)[] = [];
let rootToken = "";

beforeAll(async () => {
  await running.startAll(specs, configs);
  ({ rootToken } = await running.initializeWithOneShare(spec.id));
}, 60_000);

afterAll(async () => {
  for (const cancel of cancels) cancel();
  await running.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

/** Opens a watch; settles once the node has put it in place ("open") or refused it. */
function openWatch(secrets: SecretsClient): Promise<"open" | ServiceError> {
  const stream = secrets.watch({ prefix: "kept/", fromRevision: 0, progressNotify: false });
  cancels.push(() => stream.cancel());
  return new Promise((resolve) => {
    // The node sends its headers once the watch is in place; a refusal comes as trailers alone.
    stream.once("metadata", () => resolve("open"));
    stream.on("error", (error: ServiceError) => resolve(error));
  });
}

it("a client connection that goes silent is closed within a ping and its timeout; its watch's place is free again", async () => {
  const relay = await FreezableRelay.start({ host: spec.host, port: spec.clientPort });
  let vanished: Clients | null = null;
  try {
    // Both clients are identity "operator": the relayed one takes its only place.
    vanished = clientsFor(`${spec.host}:${relay.port}`, pki, "operator", rootToken);
    expect(await openWatch(vanished.secrets)).toBe("open");
    relay.freeze();
    const frozenAt = performance.now();
    const direct = running.client(spec.id).secrets;
    // The node has not noticed yet (its next ping is up to a second away, then a second's wait).
    expect(await openWatch(direct)).toMatchObject({ code: status.RESOURCE_EXHAUSTED });
    await eventually(async () => (await openWatch(direct)) === "open", 5000);
    const freedAfterMs = performance.now() - frozenAt;
    // Not before the ping's timeout could have run out.
    expect(freedAfterMs).toBeGreaterThanOrEqual(900);
  } finally {
    vanished?.close();
    await relay.close();
  }
});
