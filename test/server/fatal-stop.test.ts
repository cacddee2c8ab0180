// A node whose data disk fills stops on the failed write (its state or Raft log), and before it
// tells its caller (`strongroom server` exits there) it ends its audit trail as a crash leaves it:
// the trail takes no more calls, and its files hold whole lines only; a stop called after it (a
// program running the node in its own process) still lets go of the stores. A leader that stops
// so tells the voter furthest along to campaign at once, and `strongroom server` exits only once
// that message has left: the cluster has a leader again well within an election timeout (nodes in
// this process, then real processes). Each data directory is a tmpfs of its own (the test runs as root, as
// CI does); the audit directories are on another disk, so that the node's writes reach the state
// and the log (with the audit on the same disk, a leader hands its leadership over first).

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { listAuditFiles } from "../../server/audit/audit-file.js";
import { verifyAuditFiles } from "../../server/audit/audit-verify.js";
import { SecretStateMachine } from "../../storage/state/index.js";
import { eventually } from "../support/eventually.js";
import {
  type Clients,
  call,
  callError,
  clientsFor,
  InProcessCluster,
  type NodeSpec,
  nodeSpecs,
  writeConfigs,
} from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";
import { NodeProcess } from "./process-cluster.js";

// One node on 127.0.0.151, ports from 43700.
const pki = new TestPki("fatal-stop");
const root = mkdtempSync(join(tmpdir(), "strongroom-fatal-stop-"));
const [spec] = nodeSpecs(1, 43_700, 150);
const cluster = new InProcessCluster(pki);
let mounted: string | null = null;
/** The three-node tests' data disks. */
const mounts: string[] = [];

afterAll(async () => {
  if (mounted !== null) execFileSync("umount", ["-l", mounted]);
  for (const directory of mounts) execFileSync("umount", ["-l", directory]);
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

it("a node that stops on a full data disk ends its audit first: no call recorded after, no torn line", async () => {
  if (spec === undefined) throw new Error("no node spec");
  const auditDirectory = join(root, "audit");
  const entry = writeConfigs(pki, root, [spec], () => ({ audit: { directories: [auditDirectory] } })).get(
    spec.id,
  );
  if (entry === undefined) throw new Error("no config");
  // Room for the Raft log's first preallocated segments (64 MiB each) and the state.
  mkdirSync(entry.config.dataDir, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=192m", "tmpfs", entry.config.dataDir]);
  mounted = entry.config.dataDir;

  let fatal: Error | null = null;
  let refusedAtFatal: Promise<{ reason: string; details: string }> | null = null;
  await cluster.start(spec, entry.config, {
    onFatal: (error) => {
      fatal = error;
      // Where `strongroom server` exits: the trail must already refuse to record a call.
      const secrets = cluster.client(spec.id).secrets;
      refusedAtFatal = callError(secrets.put.bind(secrets), { path: "app/after", value: new Uint8Array(1) });
    },
  });
  await cluster.initializeWithOneShare(spec.id);
  const secrets = cluster.client(spec.id).secrets;
  await call(secrets.put.bind(secrets), { path: "app/before", value: new Uint8Array(16) });

  fillDisk(entry.config.dataDir);
  await writeUntil(secrets, () => fatal !== null);
  expect(fatal, "the node did not stop on its full disk").not.toBeNull();
  expect(String((fatal as Error | null)?.message)).toMatch(/no space left on device|ENOSPC/i);
  expect(await refusedAtFatal).toMatchObject({
    reason: "STOPPING",
    details: "this node is stopping: it records no more calls",
  });
  const files = listAuditFiles(auditDirectory);
  for (const file of files) expect(readFileSync(file, "utf8").endsWith("\n"), file).toBe(true);
  const verification = verifyAuditFiles(files, null);
  expect(verification.problems.filter((problem) => /incomplete|not a JSON line/.test(problem))).toEqual([]);
  expect(verification.closed).toBe(false);

  // A program that runs the node in its own process stops it: the stop ends although the state
  // cannot write its applied index any more, and lets go of the stores (LevelDB's lock with them:
  // with room on the disk again, the state opens).
  await cluster.stop();
  rmSync(join(entry.config.dataDir, "filler"), { force: true });
  const state = await SecretStateMachine.open(join(entry.config.dataDir, "state"));
  await state.close();
}, 60_000);

/** Writes of 64 KiB, eight at a time, until `stopped` (bounded in count and time). */
async function writeUntil(secrets: Clients["secrets"], stopped: () => boolean): Promise<void> {
  const until = Date.now() + 15_000;
  for (let i = 0; !stopped() && i < 200 && Date.now() < until; i++) {
    await Promise.allSettled(
      Array.from({ length: 8 }, (_, j) =>
        call(secrets.put.bind(secrets), { path: `app/k${i}-${j}`, value: new Uint8Array(64 * 1024).fill(j) }),
      ),
    );
  }
}

/** Fills the data disk `directory` (a tmpfs) with a file of zeros: ENOSPC is the point. */
function fillDisk(directory: string): void {
  try {
    writeFileSync(join(directory, "filler"), Buffer.alloc(256 * 1024 * 1024));
  } catch {
    // The disk is full.
  }
}

/**
 * Three nodes on 127.0.0.151-153, ports from `basePort`, each data directory a tmpfs of its own
 * and the audit elsewhere. Election timeouts of 500-1000 ms (25 ticks of 20 ms): a follower that
 * waited for one would lead no sooner than ~480 ms after the leader's last heartbeat.
 */
function trioOnTmpfs(directory: string, basePort: number) {
  const specs = nodeSpecs(3, basePort, 150);
  const configs = writeConfigs(pki, directory, specs, (node) => ({
    audit: { directories: [join(directory, `${node.id}-audit`)] },
    raft: { tickMs: 20, electionTicks: 25, heartbeatTicks: 1 },
  }));
  for (const node of specs) {
    const dataDir = configs.get(node.id)?.config.dataDir ?? "";
    mkdirSync(dataDir, { recursive: true });
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=192m", "tmpfs", dataDir]);
    mounts.push(dataDir);
  }
  return { specs, configs };
}

it("a leader that stops on a full data disk has a follower campaign at once: a leader again well within an election timeout", async () => {
  const { specs, configs } = trioOnTmpfs(join(root, "in-process"), 43_710);
  const trio = new InProcessCluster(pki);
  const stops: { id: string; at: number }[] = [];
  try {
    for (const node of specs) {
      const config = configs.get(node.id)?.config;
      if (config === undefined) throw new Error(`no config for ${node.id}`);
      await trio.start(node, config, { onFatal: () => stops.push({ id: node.id, at: performance.now() }) });
    }
    await trio.initializeWithOneShare("n1");
    const leader = await trio.leaderId();
    fillDisk(configs.get(leader)?.config.dataDir ?? "");
    await writeUntil(trio.client(leader).secrets, () => stops.length > 0);
    const [stopped] = stops;
    expect(stopped?.id, "the leader did not stop on its full disk").toBe(leader);
    let next = "";
    await eventually(() => {
      next =
        specs.find((node) => node.id !== leader && trio.nodes.get(node.id)?.isLeader() === true)?.id ?? "";
      return next !== "";
    }, 5000);
    const tookMs = performance.now() - (stopped?.at ?? 0);
    expect(tookMs, `${next} led ${Math.round(tookMs)} ms after the stop`).toBeLessThan(250);
    // The new leader takes writes with the old one gone.
    const after = trio.client(next).secrets;
    await call(after.put.bind(after), { path: "app/after", value: new Uint8Array(16) });
  } finally {
    // Stopping a node that stopped on a fatal error while it led hands nothing over (it cannot).
    await trio.stop();
  }
}, 60_000);

it("`strongroom server` leading on a full data disk exits only once its farewell has left: a leader again within milliseconds", async () => {
  const { specs, configs } = trioOnTmpfs(join(root, "processes"), 43_720);
  const processes = specs.map((node) => new NodeProcess(node, configs.get(node.id)?.file ?? ""));
  const clients = specs.map((node) => clientsFor(`${node.host}:${node.clientPort}`, pki));
  const leads = async (node: NodeSpec): Promise<boolean> => {
    try {
      const view = (await (await fetch(`http://${node.host}:${node.httpPort}/v1/sys/health`)).json()) as {
        leader: boolean;
      };
      return view.leader;
    } catch {
      return false;
    }
  };
  const leaderIndex = async (except = -1): Promise<number> => {
    let found = -1;
    await eventually(async () => {
      const views = await Promise.all(specs.map((node, i) => (i === except ? false : leads(node))));
      found = views.indexOf(true);
      return found >= 0;
    }, 10_000);
    return found;
  };
  try {
    await Promise.all(processes.map((node) => node.start()));
    const via = clients[await leaderIndex()]?.sys;
    if (via === undefined) throw new Error("no client");
    const init = await call(via.init.bind(via), {
      shamir: { count: 1, threshold: 1, operatorKeys: [] },
      hsm: false,
      generateHsmKey: false,
      recovery: undefined,
    });
    for (const client of clients) {
      await call(client.sys.unseal.bind(client.sys), {
        share: init.unsealShares[0] ?? "",
        nonce: "",
        reset: false,
      });
      client.useToken(init.rootToken);
    }
    const leader = await leaderIndex();
    const leaderSpec = specs[leader];
    const leaderProcess = processes[leader];
    const secrets = clients[leader]?.secrets;
    if (leaderSpec === undefined || leaderProcess === undefined || secrets === undefined)
      throw new Error("no leader");
    let exitedAt = 0;
    const exitCode = leaderProcess.exited().then((code) => {
      exitedAt = performance.now();
      return code;
    });
    fillDisk(configs.get(leaderSpec.id)?.config.dataDir ?? "");
    await writeUntil(secrets, () => exitedAt > 0);
    expect(await exitCode, leaderProcess.stderr.join("")).toBe(1);
    expect(leaderProcess.stderr.join("")).toMatch(/strongroom server: stopped: .*no space left on device/i);
    await leaderIndex(leader);
    // Without the farewell, or with the process gone before it left: 500-750 ms, measured.
    const tookMs = performance.now() - exitedAt;
    expect(tookMs, `a leader ${Math.round(tookMs)} ms after the exit`).toBeLessThan(250);
  } finally {
    for (const client of clients) client.close();
    await Promise.all(processes.map((node) => node.terminate()));
  }
}, 90_000);
