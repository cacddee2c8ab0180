// A node's stop waits for the client calls in flight (up to its grace), not for idle connections.
// grpc-js's tryShutdown closes the connections it has and waits until every connection is gone,
// and one accepted as the shutdown began it never closes: such a connection held a stop for its
// whole grace (seen in chaos runs, 5 s per run). An in-process node whose peers never start (no
// leader), over real mutual TLS.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect as connectHttp2 } from "node:http2";
import { connect as connectTcp, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as connectTls } from "node:tls";
import { afterAll, expect, it } from "vitest";
import { StrongroomNode } from "../../server/node.js";
import { callError, clientsFor, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("client-port-stop");
const root = mkdtempSync(join(tmpdir(), "strongroom-client-port-stop-"));
// n1 of three on 127.0.0.51; n2 and n3 never start.
const specs = nodeSpecs(3, 60_500, 50);
const configs = writeConfigs(pki, root, specs);
const [spec] = specs;
afterAll(() => {
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

async function startNode(): Promise<StrongroomNode> {
  const config = configs.get("n1")?.config;
  if (config === undefined) throw new Error("no config for n1");
  return await StrongroomNode.start(config);
}

it("closes a connection that arrived as the stop began, instead of waiting out the grace", async () => {
  if (spec === undefined) throw new Error("no spec");
  const node = await startNode();
  // Accepted by the listening socket before the stop; its TLS handshake, and so its HTTP/2
  // session, only once the shutdown has begun.
  const raw: Socket = connectTcp({ host: spec.host, port: spec.clientPort });
  await new Promise<void>((resolve, reject) => raw.once("connect", resolve).once("error", reject));
  const began = performance.now();
  const stopped = node.stop(5000);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const files = pki.client("late-client");
  const secure = connectTls({
    socket: raw,
    servername: "localhost",
    ca: readFileSync(files.caFile),
    cert: readFileSync(files.certificateFile),
    key: readFileSync(files.privateKeyFile),
    ALPNProtocols: ["h2"],
  });
  await new Promise<void>((resolve, reject) => secure.once("secureConnect", resolve).once("error", reject));
  const session = connectHttp2(`https://${spec.host}:${spec.clientPort}`, { createConnection: () => secure });
  session.on("error", () => {});
  const sessionClosed = new Promise<void>((resolve) => session.once("close", resolve));
  await stopped;
  // Well within the 5 s grace: nothing was in flight.
  expect(performance.now() - began).toBeLessThan(2500);
  await sessionClosed;
  expect(session.destroyed).toBe(true);
});

it("still lets a call in flight have its answer from the node", async () => {
  if (spec === undefined) throw new Error("no spec");
  const node = await startNode();
  const client = clientsFor(`${spec.host}:${spec.clientPort}`, pki);
  try {
    // Init runs on the leader, and there is none: the node waits for one, then says so.
    const answer = callError(client.sys.init.bind(client.sys), {
      shamir: { count: 1, threshold: 1, operatorKeys: [] },
      hsm: false,
      generateHsmKey: false,
      recovery: undefined,
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const began = performance.now();
    await node.stop(5000);
    const error = await answer;
    // The node's own answer (no leader), not a connection cut under the call.
    expect(error.reason).toBe("NO_LEADER");
    // The stop waited for it: the node waits 2 s at least for a leader.
    expect(performance.now() - began).toBeGreaterThan(1000);
  } finally {
    client.close();
  }
});
