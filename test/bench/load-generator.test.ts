// The benchmark's load generator (bench/vs-etcd/load.ts) against a stand-in strongroom node (a
// real gRPC server over mutual TLS on loopback): its worker threads connect once and keep their
// connections, and their warmed code, for every run, as an application keeps its clients; each
// run still counts only the calls that started in its own window; close() ends the threads.

import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { ServerUnaryCall, sendUnaryData } from "@grpc/grpc-js";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { afterAll, expect, it } from "vitest";
import { LoadGenerator, type RunSpec } from "../../bench/vs-etcd/load.js";
import type { TargetSpec } from "../../bench/vs-etcd/targets.js";
import {
  type GetResponse,
  type PutResponse,
  SecretsService,
} from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { StandInNodes } from "../client/stand-in-node.js";
import { TestPki } from "../server/pki-fixture.js";

const pki = new TestPki("load-generator");
const standIns = new StandInNodes(pki);
afterAll(() => standIns.stopAll());

/** A stand-in answering Put and Get at once, counting calls and the connections they came on. */
async function standIn(): Promise<{ address: string; calls: () => number; connections: Set<string> }> {
  let calls = 0;
  const connections = new Set<string>();
  const answer =
    <T>(response: T) =>
    (call: ServerUnaryCall<unknown, T>, callback: sendUnaryData<T>) => {
      calls++;
      // The client's address and port: one per HTTP/2 connection.
      connections.add(call.getPeer());
      callback(null, response);
    };
  const address = await standIns.start(SecretsService, {
    put: answer<PutResponse>({ version: 1, revision: 1 }),
    get: answer<GetResponse>({ value: new Uint8Array(64), version: 1, revision: 1, createdMs: 0 }),
  });
  return { address, calls: () => calls, connections };
}

function target(address: string): TargetSpec {
  const client = pki.client("load-generator");
  return {
    system: "strongroom",
    endpoints: [address],
    writeEndpoint: null,
    tls: { caFile: client.caFile, certFile: client.certificateFile, keyFile: client.privateKeyFile },
    token: "t".repeat(40),
    requestIds: false,
    viaSdk: false,
    sdkReadRouting: "sticky",
  };
}

const run = (changes: Partial<RunSpec>): RunSpec => ({
  serverPids: [process.pid],
  metricsUrls: null,
  mode: "closed",
  concurrency: 4,
  ratePerSecond: 0,
  readFraction: 0.5,
  valueBytes: 64,
  keys: 10,
  // Long enough that a worker slow to start on a loaded machine still begins within it.
  warmupMs: 1000,
  durationMs: 700,
  seed: 1,
  ...changes,
});

it("runs one run after another on the same workers and connections, each counted in its window alone", async () => {
  const node = await standIn();
  const generator = new LoadGenerator(target(node.address), 2);
  try {
    const closed = await generator.run(run({}));
    expect(closed.errors).toBe(0);
    expect(closed.ops).toBeGreaterThan(20);
    expect(closed.ops).toBeLessThanOrEqual(node.calls());
    expect(node.connections.size).toBe(2);

    const callsBefore = node.calls();
    const open = await generator.run(run({ mode: "open", ratePerSecond: 100, readFraction: 0 }));
    expect(open.errors).toBe(0);
    // 100 a second over a 0.7 s window: the open loop sends on its schedule, not as fast as it
    // can, and the calls of its 1 s ramp (about 100) are answered but not counted.
    expect(open.ops).toBeGreaterThanOrEqual(60);
    expect(open.ops).toBeLessThanOrEqual(72);
    expect(node.calls() - callsBefore).toBeGreaterThan(open.ops + 50);
    // Every counted call is in the second of the window it was due in: the window's only one.
    expect(open.latencyBySecond.map((second) => second.count)).toEqual([open.ops]);
    expect(open.latencyBySecond[0]?.maxMs).toBeGreaterThanOrEqual(open.p99Ms);
    // The second run came on the two connections the first one opened.
    expect(node.connections.size).toBe(2);

    // One client: one worker takes the run, on its own connection.
    const single = await generator.run(run({ concurrency: 1 }));
    expect(single.ops).toBeGreaterThan(5);
    expect(node.connections.size).toBe(2);
  } finally {
    await generator.close();
  }
});

it("reads each node's GC pauses and batching at the window's edges, and runs on without them when /metrics cannot be read", async () => {
  const node = await standIn();
  // This process stands for the node: its own prom-client series, and a node's batching series
  // under their names, served over HTTP.
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const logWrites = new Histogram({ name: "strongroom_raft_log_append_seconds", help: "h", registers });
  const applied = new Gauge({ name: "strongroom_raft_applied_index", help: "h", registers });
  const auditWrites = new Histogram({ name: "strongroom_audit_write_entries", help: "h", registers });
  const messages = new Counter({
    name: "strongroom_raft_messages_total",
    help: "h",
    labelNames: ["direction", "type"],
    registers,
  });
  const metrics = createServer((_, response) => void registry.metrics().then((text) => response.end(text)));
  await new Promise<void>((resolve) => metrics.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(metrics.address() as AddressInfo).port}/metrics`;
  // All through the run: young garbage, so that the window holds scavenges; and a "batch" each
  // time, one log write of 4 entries, one audit write of 3, one message in and two out.
  let index = 0;
  const busy = setInterval(() => {
    const objects: { i: number; name: string }[] = [];
    for (let i = 0; i < 100_000; i++) objects.push({ i, name: `object ${i}` });
    expect(objects.length).toBe(100_000);
    logWrites.observe(0.001);
    index += 4;
    applied.set(index);
    auditWrites.observe(3);
    messages.inc({ direction: "received", type: "append" });
    messages.inc({ direction: "sent", type: "appendResponse" }, 2);
  }, 20);
  const generator = new LoadGenerator(target(node.address), 1);
  try {
    const read = await generator.run(run({ metricsUrls: [url] }));
    expect(read.errors).toBe(0);
    expect(read.gcPausesByNode).toHaveLength(1);
    const pauses = read.gcPausesByNode?.[0];
    expect(pauses?.minor.count).toBeGreaterThan(0);
    expect(pauses?.minor.seconds).toBeGreaterThan(0);
    expect(pauses?.major.count).toBeGreaterThanOrEqual(0);
    expect(read.batchingByNode).toHaveLength(1);
    const batching = read.batchingByNode?.[0];
    // A batch every 20 ms or more in the 0.7 s window (each reading sees whole batches).
    expect(batching?.logWrites).toBeGreaterThan(3);
    expect(batching?.entriesApplied).toBe(4 * (batching?.logWrites ?? 0));
    expect(batching?.auditEntries).toBe(3 * (batching?.auditWrites ?? 0));
    expect(batching?.raftMessagesReceived).toBe(batching?.logWrites);

    // A node that does not answer: the run's own figures stand, its /metrics columns are left out.
    const unread = await generator.run(run({ metricsUrls: ["http://127.0.0.1:1/metrics"] }));
    expect(unread.errors).toBe(0);
    // Counted, however few this busy process answered (16 in one CI run on a loaded machine).
    expect(unread.ops).toBeGreaterThan(0);
    expect(unread.gcPausesByNode).toBeNull();
    expect(unread.batchingByNode).toBeNull();
  } finally {
    clearInterval(busy);
    await generator.close();
    await new Promise((resolve) => metrics.close(resolve));
  }
});

it("refuses a run once its workers are closed, and says a worker failed rather than hanging", async () => {
  const node = await standIn();
  const generator = new LoadGenerator(target(node.address), 1);
  await generator.run(run({ durationMs: 300 }));
  await generator.close();
  await expect(generator.run(run({}))).rejects.toThrow(/a load worker exited with 0/);
});
