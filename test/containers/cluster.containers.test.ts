// The cluster as an operator runs it from the image: three containers of deploy/Dockerfile's image
// (non-root, read-only root filesystem, no capabilities), started through testcontainers on the
// host network, each node on its own 127.0.0.x address with its config and certificates mounted
// read-only and its data on its own volume. Init and unseal through the SDK, write and read; stop
// the leader's container (SIGTERM, as an orchestrator does) and see another node take over with
// every acknowledged write; start the stopped node's container again on its data, unseal it, and
// see it rejoin and catch up.

import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GenericContainer, type StartedTestContainer, Wait } from "testcontainers";
import { afterAll, beforeAll, expect, it } from "vitest";
import { stringify } from "yaml";
import { dockerfileNodeMajor, nodeImage, requireDocker } from "../../chaos/docker-image.js";
import { createClient, type StrongroomClient } from "../../client/index.js";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { TestPki } from "../server/pki-fixture.js";
import { eventually } from "../support/eventually.js";

// The image's user: its mounted files must be readable by it.
const nodeUser = 10001;
const clientPort = 61_000;
const nodes = [1, 2, 3].map((n) => ({ id: `c${n}`, host: `127.0.0.${204 + n}` }));
const endpoints = nodes.map((node) => `${node.host}:${clientPort}`);
const root = mkdtempSync(join(tmpdir(), "strongroom-containers-"));
const pki = new TestPki("containers");
const running = new Map<string, StartedTestContainer>();
const opened: StrongroomClient[] = [];
let image = "";
let rootToken: string | null = null;
let unsealShare = "";

/** testcontainers has no switch for a read-only root filesystem; Docker's host config does. */
class NodeContainer extends GenericContainer {
  withReadOnlyRootFilesystem(): this {
    this.hostConfig.ReadonlyRootfs = true;
    return this;
  }
}

/** /etc/strongroom (config and certificates) and /var/lib/strongroom (data) of one node, on the host. */
function nodeDirectories(node: (typeof nodes)[number]): { etc: string; data: string } {
  const etc = join(root, node.id, "etc");
  const data = join(root, node.id, "data");
  mkdirSync(join(etc, "tls"), { recursive: true });
  mkdirSync(data, { recursive: true, mode: 0o700 });
  chownSync(data, nodeUser, nodeUser);
  return { etc, data };
}

function writeNodeFiles(node: (typeof nodes)[number]): void {
  const { etc } = nodeDirectories(node);
  const files = pki.node(node.id, [node.host]);
  const tls = (name: string, from: string) => {
    const target = join(etc, "tls", name);
    writeFileSync(target, readFileSync(from), { mode: 0o400 });
    chownSync(target, nodeUser, nodeUser);
    return `/etc/strongroom/tls/${name}`;
  };
  const peer = {
    caFile: tls("cluster-ca.pem", files.caFile),
    certificateFile: tls("node.pem", files.certificateFile),
    privateKeyFile: tls("node-key.pem", files.privateKeyFile),
  };
  const config = {
    nodeId: node.id,
    dataDir: "/var/lib/strongroom/data",
    listen: {
      client: `${node.host}:${clientPort}`,
      peer: `${node.host}:${clientPort + 1}`,
      http: `${node.host}:${clientPort + 2}`,
    },
    tls: { peer, client: { ...peer, caFile: tls("client-ca.pem", pki.clientCaFile()) } },
    members: nodes.map((member) => ({
      id: member.id,
      peerAddress: `${member.host}:${clientPort + 1}`,
      clientAddress: `${member.host}:${clientPort}`,
    })),
    raft: { tickMs: 50, electionTicks: 10 },
  };
  writeFileSync(join(etc, "config.yaml"), stringify(config));
}

async function startNode(node: (typeof nodes)[number]): Promise<StartedTestContainer> {
  const { etc, data } = nodeDirectories(node);
  const container = await new NodeContainer(image)
    .withName(`strongroom-containers-test-${node.id}`)
    .withNetworkMode("host")
    .withUser(`${nodeUser}:${nodeUser}`)
    .withReadOnlyRootFilesystem()
    .withTmpFs({ "/tmp": "rw,size=16m" })
    .withDroppedCapabilities("ALL")
    .withSecurityOpt("no-new-privileges:true")
    .withBindMounts([
      { source: etc, target: "/etc/strongroom", mode: "ro" },
      { source: data, target: "/var/lib/strongroom", mode: "rw" },
    ])
    .withWaitStrategy(Wait.forLogMessage(/"msg":"node started"/))
    .withStartupTimeout(60_000)
    .start();
  running.set(node.id, container);
  return container;
}

function sdk(targets: string[] = endpoints): StrongroomClient {
  const files = pki.client("operator");
  const client = createClient({
    endpoints: targets,
    tls: { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile },
    token: () => rootToken,
    deadlineMs: 20_000,
  });
  opened.push(client);
  return client;
}

async function unseal(endpoint: string): Promise<void> {
  const answer = await sdk([endpoint]).sys.unseal({ share: unsealShare, nonce: "", reset: false });
  expect(answer.sealed).toBe(false);
}

async function leaderId(): Promise<string> {
  return (await sdk().cluster.status({})).leaderId;
}

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array) => new TextDecoder().decode(value);

beforeAll(async () => {
  // The engine must answer: the suite fails, with the reason, when it does not.
  const version = await requireDocker();
  process.env.TESTCONTAINERS_RYUK_DISABLED = "true";
  image = await nodeImage((line) => process.stdout.write(`containers: ${line}\n`));
  process.stdout.write(`containers: Docker ${version}, image ${image}\n`);
  for (const node of nodes) writeNodeFiles(node);
  await Promise.all(nodes.map((node) => startNode(node)));
}, 1_200_000);

afterAll(async () => {
  for (const client of opened) client.close();
  await Promise.all([...running.values()].map((container) => container.stop({ timeout: 5_000 })));
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
}, 120_000);

it("runs the image as a cluster: init, unseal, write and read, a leader stopped and restarted", async () => {
  // The image's user and file system, as the container runs.
  const [first] = running.values();
  const whoami = await first?.exec(["id", "-u"]);
  expect(whoami?.output.trim()).toBe(String(nodeUser));
  const write = await first?.exec(["touch", "/app/written"]);
  expect(write?.exitCode).not.toBe(0);
  expect(write?.output).toMatch(/Read-only file system/);

  // The node runs on the Node line the Dockerfile names, with the young generation it sets.
  const [node] = nodes;
  if (node === undefined) throw new Error("no nodes");
  const metrics = await (await fetch(`http://${node.host}:${clientPort + 2}/metrics`)).text();
  expect(metrics).toMatch(new RegExp(`nodejs_version_info\\{[^}]*major="${dockerfileNodeMajor()}"`));
  const commands = await running
    .get(node.id)
    ?.exec(["sh", "-c", "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done"]);
  expect(commands?.output).toMatch(/node --max-semi-space-size=16 \/app\/bin\/strongroom\.js server/);

  const init = await sdk().sys.init({
    shamir: { count: 1, threshold: 1, operatorKeys: [] },
    hsm: false,
    generateHsmKey: false,
    recovery: undefined,
  });
  unsealShare = init.unsealShares[0] ?? "";
  rootToken = init.rootToken;
  for (const endpoint of endpoints) await unseal(endpoint);

  const client = sdk();
  await client.secrets.put({ path: "app/db", value: bytes("v1") });
  const read = await client.secrets.get({
    path: "app/db",
    version: 0,
    consistency: Consistency.CONSISTENCY_LINEARIZABLE,
    maxStalenessMs: 0,
  });
  expect(text(read.value)).toBe("v1");

  // Stop the leader's container as an orchestrator does: SIGTERM through tini, then wait.
  const oldLeader = await leaderId();
  const stoppedAt = performance.now();
  await running.get(oldLeader)?.stop({ timeout: 30_000 });
  running.delete(oldLeader);
  const stopMs = performance.now() - stoppedAt;
  const others = nodes.filter((node) => node.id !== oldLeader).map((node) => `${node.host}:${clientPort}`);
  const survivors = sdk(others);
  const failoverAt = performance.now();
  await survivors.secrets.put({ path: "app/db", value: bytes("v2") });
  const failoverMs = performance.now() - failoverAt;
  const newLeader = (await survivors.cluster.status({})).leaderId;
  expect(newLeader).not.toBe(oldLeader);
  expect(newLeader).not.toBe("");

  // The stopped node's container again, on its data: it starts sealed, is unsealed, catches up.
  const stopped = nodes.find((node) => node.id === oldLeader);
  if (stopped === undefined) throw new Error(`no node ${oldLeader}`);
  await startNode(stopped);
  await unseal(`${stopped.host}:${clientPort}`);
  const rejoined = sdk([`${stopped.host}:${clientPort}`]);
  // Read locally (stale reads are served by the node itself): v2 once it has caught up.
  await eventually(async () => {
    const value = await rejoined.secrets
      .get({ path: "app/db", version: 0, consistency: Consistency.CONSISTENCY_STALE, maxStalenessMs: 60_000 })
      .catch(() => null);
    return value !== null && text(value.value) === "v2";
  }, 30_000);
  const status = await rejoined.cluster.status({});
  expect(status.leaderId).toBe(newLeader);
  process.stdout.write(
    `containers: leader ${oldLeader} stopped in ${Math.round(stopMs)} ms; the next write went through ${newLeader} after ${Math.round(failoverMs)} ms; ${oldLeader} rejoined and caught up\n`,
  );
}, 300_000);
