// Real node processes on 127.0.0.x: a three-node Shamir cluster under a write load loses its
// leader to SIGKILL. Writes must continue after the election, every acknowledged write must be
// readable afterwards on every node, and the killed node, restarted, must come back sealed (its
// shares are needed again) and catch up once unsealed. The failover time is printed.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { eventually } from "../support/eventually.js";
import { type Clients, call, clientsFor, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";
import { NodeProcess } from "./process-cluster.js";

const pki = new TestPki("failover");
const root = mkdtempSync(join(tmpdir(), "strongroom-failover-"));
const specs = nodeSpecs(3, 21_000, 40);
const configs = writeConfigs(pki, root, specs);
const processes = specs.map((spec) => new NodeProcess(spec, configs.get(spec.id)?.file ?? ""));
const clients = new Map(
  specs.map((spec) => [spec.id, clientsFor(`${spec.host}:${spec.clientPort}`, pki)] as const),
);

beforeAll(async () => {
  await Promise.all(processes.map((node) => node.start()));
}, 60_000);

afterAll(async () => {
  for (const client of clients.values()) client.close();
  await Promise.all(processes.map((node) => node.kill()));
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

/** The cluster's unseal shares, from the first test's init. */
let unsealShares: readonly string[] = [];
/** The node the SIGTERM test stopped. */
let stoppedBySigterm = "";

function clientOf(id: string): Clients {
  const found = clients.get(id);
  if (found === undefined) throw new Error(`no client for ${id}`);
  return found;
}

async function leaderOf(ids: readonly string[]): Promise<string> {
  const leader = "";
  await eventually(() => leader !== "", 0).catch(() => {});
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    for (const id of ids) {
      const cluster = clientOf(id).cluster;
      const view = await call(cluster.status.bind(cluster), {}, 1000).catch(() => null);
      if (view?.role === "leader") return id;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("no leader");
}

async function unseal(id: string, shares: readonly string[]): Promise<void> {
  const sys = clientOf(id).sys;
  for (const share of shares) await call(sys.unseal.bind(sys), { share, nonce: "", reset: false });
}

it("a server process exports its own metrics beside the node's: memory, heap, GC, event loop", async () => {
  for (const spec of specs) {
    const metrics = await (await fetch(`http://${spec.host}:${spec.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^process_resident_memory_bytes [1-9]\d*$/m);
    expect(metrics).toMatch(/^nodejs_heap_size_used_bytes [1-9]/m);
    expect(metrics).toMatch(/^nodejs_heap_space_size_used_bytes\{space="new"\} \d/m);
    expect(metrics).toMatch(/^nodejs_eventloop_lag_p99_seconds \d/m);
    expect(metrics).toMatch(/^# TYPE nodejs_gc_duration_seconds histogram$/m);
    expect(metrics).toMatch(/^strongroom_raft_term [1-9]/m);
  }
});

it("SIGKILL of the leader under load: writes continue, nothing acknowledged is lost, the node comes back sealed and catches up", async () => {
  const ids = specs.map((spec) => spec.id);
  const firstLeader = await leaderOf(ids);
  const sys = clientOf(ids[0] ?? "").sys;
  const init = await call(sys.init.bind(sys), {
    shamir: { count: 3, threshold: 2, operatorKeys: [] },
    hsm: false,
    generateHsmKey: false,
    recovery: undefined,
  });
  unsealShares = init.unsealShares;
  const shares = init.unsealShares.slice(0, 2);
  for (const id of ids) clientOf(id).useToken(init.rootToken);
  for (const id of ids) await unseal(id, shares);

  // Writers: one per node, each sending through its node; an acknowledged write is recorded.
  const acknowledged = new Map<string, string>();
  /** When each acknowledged write was sent and when it was acknowledged. */
  const acks: { sentAt: number; ackedAt: number }[] = [];
  let stopLoad = false;
  let killedAt = 0;
  const writer = async (id: string) => {
    for (let i = 0; !stopLoad && i < 5000; i++) {
      if (killedAt > 0 && id === firstLeader) return;
      const path = `load/${id}/k${i}`;
      const value = `${id}-${i}-${Date.now()}`;
      const secrets = clientOf(id).secrets;
      const sentAt = Date.now();
      try {
        await call(secrets.put.bind(secrets), { path, value: new TextEncoder().encode(value) }, 3000);
        acknowledged.set(path, value);
        acks.push({ sentAt, ackedAt: Date.now() });
      } catch (error) {
        const code = (error as ServiceError).code;
        // Unavailable or timed out during the failover: not acknowledged, so not recorded.
        expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.FAILED_PRECONDITION]).toContain(code);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  const load = Promise.all(ids.map((id) => writer(id)));
  await eventually(() => acknowledged.size >= 60, 20_000);

  const leaderProcess = processes.find((node) => node.spec.id === firstLeader);
  // Writers through the leader stop now; the clock starts once the process is gone.
  killedAt = Number.MAX_SAFE_INTEGER - 1;
  await leaderProcess?.kill();
  killedAt = Date.now();
  const before = acknowledged.size;
  // Failover time: from the kill to the first acknowledgement of a write sent after it.
  const afterKill = () => acks.filter((ack) => ack.sentAt > killedAt);
  await eventually(() => afterKill().length > 0, 20_000);
  const failoverMs = Math.min(...afterKill().map((ack) => ack.ackedAt)) - killedAt;
  await eventually(() => acknowledged.size >= before + 60, 20_000);
  stopLoad = true;
  await load;
  process.stdout.write(
    `failover: first acknowledged write ${failoverMs} ms after SIGKILL of leader ${firstLeader}; ${acknowledged.size} writes acknowledged\n`,
  );
  expect(failoverMs).toBeLessThan(5000);

  const survivors = ids.filter((id) => id !== firstLeader);
  // The survivors say why they cannot reach the dead node: the connection it reset when it died, or
  // its refusal of new ones.
  // Asked of the new leader, which keeps trying to reach the dead node.
  const survivorCluster = clientOf(await leaderOf(survivors)).cluster;
  const deadline = Date.now() + 15_000;
  let cause = "";
  const dead = /refuses connections|closed the connection/;
  while (!dead.test(cause) && Date.now() < deadline) {
    const members = await call(survivorCluster.members.bind(survivorCluster), {});
    cause = members.members.find((member) => member.nodeId === firstLeader)?.connectionError ?? "";
    if (!dead.test(cause)) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(cause).toMatch(new RegExp(`^${firstLeader} at .* (refuses connections|closed the connection)`));

  const readAll = async (id: string) => {
    const secrets = clientOf(id).secrets;
    for (const [path, value] of acknowledged) {
      const read = await call(secrets.get.bind(secrets), {
        path,
        version: 0,
        consistency: Consistency.CONSISTENCY_LINEARIZABLE,
        maxStalenessMs: 0,
      });
      expect(new TextDecoder().decode(read.value), `${path} on ${id}`).toBe(value);
    }
  };
  for (const id of survivors) await readAll(id);

  // The killed node restarts sealed (Shamir: its shares are needed again), then catches up.
  await leaderProcess?.start();
  expect(await leaderProcess?.healthStatus()).toBe(503);
  const sealedRead = await call(clientOf(firstLeader).secrets.get.bind(clientOf(firstLeader).secrets), {
    path: "load/none",
    version: 0,
    consistency: Consistency.CONSISTENCY_LINEARIZABLE,
    maxStalenessMs: 0,
  }).catch((error: ServiceError) => error);
  expect((sealedRead as ServiceError).code).toBe(status.FAILED_PRECONDITION);
  await unseal(firstLeader, [init.unsealShares[2] ?? "", init.unsealShares[0] ?? ""]);
  await readAll(firstLeader);
}, 120_000);

it("SIGTERM of the leader: it hands leadership over, exits 0, and every acknowledged write survives", async () => {
  const ids = specs.map((spec) => spec.id);
  const leader = await leaderOf(ids);
  const others = ids.filter((id) => id !== leader);
  const acknowledged = new Map<string, string>();
  let stop = false;
  const writer = async (id: string) => {
    for (let i = 0; !stop && i < 5000; i++) {
      const path = `term/${id}/k${i}`;
      const secrets = clientOf(id).secrets;
      try {
        await call(secrets.put.bind(secrets), { path, value: new TextEncoder().encode(path) }, 3000);
        acknowledged.set(path, path);
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  const load = Promise.all(others.map((id) => writer(id)));
  await eventually(() => acknowledged.size >= 30, 20_000);
  const leaderProcess = processes.find((node) => node.spec.id === leader);
  const exitCode = await leaderProcess?.terminate();
  expect(exitCode).toBe(0);
  stoppedBySigterm = leader;
  // Handed over before it exited: a survivor already leads (an election would take 200-400 ms).
  const views = await Promise.all(
    others.map((id) => call(clientOf(id).cluster.status.bind(clientOf(id).cluster), {})),
  );
  expect(views.filter((view) => view.role === "leader")).toHaveLength(1);
  const before = acknowledged.size;
  await eventually(() => acknowledged.size >= before + 30, 20_000);
  stop = true;
  await load;
  for (const id of others) {
    const secrets = clientOf(id).secrets;
    for (const path of acknowledged.keys()) {
      const read = await call(secrets.get.bind(secrets), {
        path,
        version: 0,
        consistency: Consistency.CONSISTENCY_LINEARIZABLE,
        maxStalenessMs: 0,
      });
      expect(new TextDecoder().decode(read.value)).toBe(path);
    }
  }
}, 120_000);

it("a node removed while it was stopped learns it from the members once restarted, and refuses calls", async () => {
  const removed = stoppedBySigterm;
  expect(removed).not.toBe("");
  const members = specs.map((spec) => spec.id).filter((id) => id !== removed);
  const leader = await leaderOf(members);
  const cluster = clientOf(leader).cluster;
  const after = await call(cluster.removeMember.bind(cluster), { nodeId: removed });
  expect(after.members.map((member) => member.nodeId).sort()).toEqual(members.sort());
  const { term } = await call(cluster.status.bind(cluster), {});

  // Its log does not hold its removal: restarted and unsealed, it campaigns, and the first member
  // it reaches over the peer port answers that it was removed.
  const node = processes.find((process) => process.spec.id === removed);
  await node?.start();
  await unseal(removed, unsealShares.slice(0, 2));
  const secrets = clientOf(removed).secrets;
  const removedMessage = `${removed} was removed from the cluster; ask another member`;
  // Set inside the polled condition (a cast keeps TypeScript from narrowing it to null here).
  let refusal = null as ServiceError | null;
  // Each read waits for a leader before it fails, so the polling paces itself. On a timeout the
  // assertions below show the last answer.
  await eventually(async () => {
    refusal = await call(secrets.get.bind(secrets), {
      path: "term/none",
      version: 0,
      consistency: Consistency.CONSISTENCY_LINEARIZABLE,
      maxStalenessMs: 0,
    }).then(
      () => null,
      (error: ServiceError) => error,
    );
    return refusal?.details === removedMessage;
  }, 20_000).catch(() => {});
  expect(refusal?.code).toBe(status.UNAVAILABLE);
  expect(refusal?.details).toBe(removedMessage);
  // A load balancer's readiness probe takes it out too.
  const spec = specs.find((candidate) => candidate.id === removed);
  const ready = await fetch(`http://${spec?.host}:${spec?.httpPort}/v1/sys/ready`);
  expect(ready.status).toBe(503);
  expect(await ready.json()).toMatchObject({ ready: false, removed: true });
  // The members were not disturbed by its elections: the same leader, in the same term.
  expect(await call(cluster.status.bind(cluster), {})).toMatchObject({ role: "leader", term });
  const put = clientOf(leader).secrets;
  await call(put.put.bind(put), { path: "after/removal", value: new TextEncoder().encode("ok") });
}, 60_000);
