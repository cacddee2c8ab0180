// `npm run bench:failover [-- --rounds N --tick-ms T --nodes 3|5 --fault kill|pause --writers
// node|sdk]`: leader failover time of a real cluster. Three (or five) `strongroom server` processes
// on 127.0.0.201-205 (mutual TLS, LevelDB, fsync on), Shamir sealed. Writers keep writing: one per
// node through its node (`node`, as clients pinned to a node behind a load balancer), or one per
// node with every endpoint (`sdk`, as applications using the SDK, which send writes to the
// leader). Each round SIGKILLs the leader (or SIGSTOPs it: a hung process, whose
// connections stay open) and measures, from the moment the process is gone (or stopped), the time
// to the first acknowledged write that was sent after it; then restarts and unseals the node (or
// resumes it) before the next round, timing the restart from the spawn to the unseal's answer.
// Prints a table per round, with the terms the new leader's election took (more than one: a split
// vote or another election lost) and the restart's time, and the median, 99th percentile and
// maximum of the failovers (the median and maximum of the restarts).

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { stringify } from "yaml";
import { createClient, type StrongroomClient } from "../client/index.js";
import "./ip-servername-warning.js";
import {
  createCertificateAuthority,
  issueClientCertificate,
  issueNodeCertificate,
  type PemPair,
} from "../server/tls/dev-pki.js";
import { builtServerCommand } from "./built-server.js";
import { printTable } from "./table.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "20" },
    "tick-ms": { type: "string", default: "50" },
    nodes: { type: "string", default: "3" },
    fault: { type: "string", default: "kill" },
    writers: { type: "string", default: "node" },
  },
});
const rounds = Number(values.rounds);
const tickMs = Number(values["tick-ms"]);
const size = Number(values.nodes);
const fault = values.fault;
const writersKind = values.writers;
if (
  !Number.isInteger(rounds) ||
  rounds < 1 ||
  rounds > 100 ||
  !Number.isInteger(tickMs) ||
  tickMs < 5 ||
  (size !== 3 && size !== 5) ||
  (fault !== "kill" && fault !== "pause") ||
  (writersKind !== "node" && writersKind !== "sdk")
) {
  process.stderr.write(
    "bench:failover: --rounds 1..100, --tick-ms at least 5, --nodes 3 or 5, --fault kill or pause, --writers node or sdk\n",
  );
  process.exit(2);
}

const root = mkdtempSync(join(tmpdir(), "strongroom-bench-failover-"));
const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
const host = (i: number) => `127.0.0.${201 + i}`;
const port = 7300;
const [node = process.execPath, ...cli] = builtServerCommand();

function writePem(pair: PemPair, name: string): { certificateFile: string; privateKeyFile: string } {
  writeFileSync(join(root, `${name}.pem`), pair.certificatePem);
  writeFileSync(join(root, `${name}-key.pem`), pair.privateKeyPem, { mode: 0o600 });
  return { certificateFile: join(root, `${name}.pem`), privateKeyFile: join(root, `${name}-key.pem`) };
}

const clusterCa = createCertificateAuthority("bench cluster CA");
const clientCa = createCertificateAuthority("bench client CA");
writeFileSync(join(root, "cluster-ca.pem"), clusterCa.certificatePem);
writeFileSync(join(root, "client-ca.pem"), clientCa.certificatePem);
const client = writePem(issueClientCertificate(clientCa, { name: "bench" }), "client");
const members = ids.map((id, i) => ({
  id,
  peerAddress: `${host(i)}:${port + 1}`,
  clientAddress: `${host(i)}:${port}`,
}));
const configFiles = ids.map((id, i) => {
  const files = writePem(issueNodeCertificate(clusterCa, { nodeId: id, hosts: [host(i)] }), id);
  const file = join(root, `${id}.yaml`);
  writeFileSync(
    file,
    stringify({
      nodeId: id,
      dataDir: join(root, "data", id),
      listen: {
        client: `${host(i)}:${port}`,
        peer: `${host(i)}:${port + 1}`,
        http: `${host(i)}:${port + 2}`,
      },
      tls: {
        peer: { caFile: join(root, "cluster-ca.pem"), ...files },
        client: { caFile: join(root, "client-ca.pem"), ...files },
      },
      members,
      raft: { tickMs, electionTicks: 10, heartbeatTicks: 1 },
      log: { level: "error" },
    }),
  );
  return file;
});
mkdirSync(join(root, "data"), { recursive: true });

const processes = new Map<string, ChildProcess>();
async function startNode(i: number): Promise<void> {
  const id = ids[i] ?? "";
  const child = spawn(node, [...cli, "server", "--config", configFiles[i] ?? ""], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  processes.set(id, child);
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await fetch(`http://${host(i)}:${port + 2}/v1/sys/live`, { signal: AbortSignal.timeout(500) });
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${id} did not start`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

async function kill(id: string): Promise<void> {
  const child = processes.get(id);
  if (child === undefined) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
  processes.delete(id);
}

let rootToken: string | null = null;
// One SDK client per node, so each writer stays on its node (as separate applications would).
const connections = ids.map((_, i) =>
  createClient({
    endpoints: [`${host(i)}:${port}`],
    tls: {
      caFile: join(root, "cluster-ca.pem"),
      certFile: client.certificateFile,
      keyFile: client.privateKeyFile,
    },
    token: () => rootToken,
  }),
);
const connectionOf = (id: string): StrongroomClient => connections[ids.indexOf(id)] as StrongroomClient;
// --writers sdk: as many applications, each an SDK client of every node.
const sdkWriters =
  writersKind === "sdk"
    ? ids.map(() =>
        createClient({
          endpoints: ids.map((_, i) => `${host(i)}:${port}`),
          tls: {
            caFile: join(root, "cluster-ca.pem"),
            certFile: client.certificateFile,
            keyFile: client.privateKeyFile,
          },
          token: () => rootToken,
        }),
      )
    : [];

async function leader(): Promise<{ readonly id: string; readonly term: number }> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    for (const id of processes.keys()) {
      const status = await connectionOf(id)
        .cluster.status({}, { deadlineMs: 1000 })
        .catch(() => null);
      if (status?.role === "leader") return { id, term: Number(status.term) };
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error("no leader");
}

async function unseal(id: string, share: string): Promise<void> {
  await connectionOf(id).sys.unseal({ share, nonce: "", reset: false }, { deadlineMs: 30_000 });
}

try {
  for (let i = 0; i < ids.length; i++) await startNode(i);
  await leader();
  const init = await connectionOf("n1").sys.init(
    {
      shamir: { count: 1, threshold: 1, operatorKeys: [] },
      hsm: false,
      generateHsmKey: false,
      recovery: undefined,
    },
    { deadlineMs: 30_000 },
  );
  const share = init.unsealShares[0] ?? "";
  rootToken = init.rootToken;
  for (const id of ids) await unseal(id, share);

  const results: string[][] = [];
  const measured: number[] = [];
  const restarts: number[] = [];
  let repeated = 0;
  for (let round = 1; round <= rounds; round++) {
    const { id: victim, term } = await leader();
    const acks: { sentAt: number; ackedAt: number }[] = [];
    let stop = false;
    let sequence = 0;
    const writer = async (writing: StrongroomClient) => {
      while (!stop) {
        const sentAt = Date.now();
        try {
          await writing.secrets.put(
            { path: `bench/k${sequence++}`, value: new Uint8Array(64) },
            { deadlineMs: 3000 },
          );
          acks.push({ sentAt, ackedAt: Date.now() });
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
    };
    const writers =
      writersKind === "sdk"
        ? sdkWriters.map((writing) => writer(writing))
        : ids.filter((id) => id !== victim).map((id) => writer(connectionOf(id)));
    await new Promise((resolve) => setTimeout(resolve, 500));
    if (fault === "kill") await kill(victim);
    else processes.get(victim)?.kill("SIGSTOP");
    const killedAt = Date.now();
    const deadline = killedAt + 30_000;
    while (!acks.some((ack) => ack.sentAt >= killedAt) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    stop = true;
    await Promise.all(writers);
    const first = Math.min(...acks.filter((ack) => ack.sentAt >= killedAt).map((ack) => ack.ackedAt));
    const failoverMs = first - killedAt;
    measured.push(failoverMs);
    // The write acknowledged means a leader of the new term, which may already be a later one.
    const elected = await leader();
    const terms = elected.term - term;
    if (terms > 1) repeated++;
    if (fault === "kill") {
      const spawnedAt = Date.now();
      await startNode(ids.indexOf(victim));
      await unseal(victim, share);
      restarts.push(Date.now() - spawnedAt);
    } else {
      processes.get(victim)?.kill("SIGCONT");
      // Resumed, it still says it leads until it hears of the new term: the next round must not
      // take it for the leader.
      const followsBy = Date.now() + 30_000;
      for (;;) {
        const view = await connectionOf(victim)
          .cluster.status({}, { deadlineMs: 1000 })
          .catch(() => null);
        if (view !== null && view.role !== "leader") break;
        if (Date.now() > followsBy) throw new Error(`${victim} still says it leads after it was resumed`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    const restartMs = restarts.length === round ? String(restarts.at(-1)) : "-";
    results.push([String(round), victim, elected.id, String(terms), String(failoverMs), restartMs]);
  }
  const sorted = [...measured].sort((a, b) => a - b);
  // Nearest rank: with fewer than 100 rounds the 99th percentile is the maximum.
  const percentileOf = (values: readonly number[], p: number) =>
    values[Math.max(0, Math.ceil((p / 100) * values.length) - 1)];
  const percentile = (p: number) => percentileOf(sorted, p);
  process.stdout.write(
    `failover of a ${size}-node cluster on loopback, the leader ${fault === "kill" ? "SIGKILLed" : "SIGSTOPped"}, writers ${writersKind === "sdk" ? "SDK clients of every node" : "each through its node"}, tick ${tickMs} ms, election timeout ${10 * tickMs}-${20 * tickMs} ms\n`,
  );
  printTable(
    [
      "round",
      fault === "kill" ? "killed leader" : "paused leader",
      "new leader",
      "terms",
      "failover ms",
      "restart ms",
    ],
    results,
  );
  process.stdout.write(
    `p50 ${percentile(50)} ms, p99 ${percentile(99)} ms, max ${sorted.at(-1)} ms over ${rounds} rounds; ${repeated} took more than one term\n`,
  );
  if (restarts.length > 0) {
    // The killed node's way back, while the others serve the writers: spawn to unsealed.
    const restartsSorted = [...restarts].sort((a, b) => a - b);
    process.stdout.write(
      `restart of the killed node to unsealed: p50 ${percentileOf(restartsSorted, 50)} ms, max ${restartsSorted.at(-1)} ms\n`,
    );
  }
} finally {
  for (const connection of [...connections, ...sdkWriters]) connection.close();
  for (const id of [...processes.keys()]) await kill(id);
  rmSync(root, { recursive: true, force: true });
}
