// `npm run bench:snapshot-memory`: the memory a node holds for a Raft snapshot of a state of 4 KiB
// secrets (16 and 64 MiB of values), measured as live ArrayBuffer bytes (a full collection before
// each sample; the npm script gives --expose-gc). Three tables: a node's own snapshot read out of
// its state machine into its file, collected whole first (what nodes did) or part by part (what
// RaftNode does now); a follower receiving a leader's snapshot, installing and restoring it, one
// RaftNode on its segment log fed 1 MiB chunks by this script through the in-process transport; and a
// node's start (the log store's open and load) with a snapshot on disk; and a backup
// (Cluster.SaveSnapshot's handler on a grpc-js server, a grpc-js client reading it over loopback
// in the same process; without TLS, and without the read barrier, which has no cluster here).
// Run with: npm run bench:snapshot-memory

import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ClientReadableStream, credentials, Server, ServerCredentials } from "@grpc/grpc-js";
import { ClusterClient, ClusterService, type SnapshotChunk } from "../proto/gen/strongroom/v1/cluster.gen.js";
import type { Entry, Message, SnapshotMeta } from "../raft/core/index.js";
import { collectParts, InProcessNetwork, RaftNode } from "../raft/node/index.js";
import { saveSnapshotHandler } from "../server/api/snapshot-handlers.js";
import { ClusterSetupLock } from "../server/cluster-setup-lock.js";
import type { ReadBarrier } from "../server/read-barrier.js";
import { Barrier, Keyring } from "../storage/barrier/index.js";
import { SegmentLogStore } from "../storage/raft-log/segment-log-store.js";
import {
  type ApplyResult,
  encodeCommand,
  RaftSecretStateMachine,
  SecretStateMachine,
} from "../storage/state/index.js";
import { printTable } from "./table.js";

const exposedGc = (globalThis as { gc?: () => void }).gc;
if (exposedGc === undefined) {
  process.stderr.write(
    "bench:snapshot-memory: run with node --expose-gc (npm run bench:snapshot-memory does)\n",
  );
  process.exit(2);
}
const gc: () => void = exposedGc;

/** A secret state machine in `directory` with `secrets` secrets of 4 KiB (ciphertext), applied 1..secrets. */
async function filledState(directory: string, secrets: number): Promise<SecretStateMachine> {
  const machine = await SecretStateMachine.open(directory);
  const barrier = new Barrier();
  barrier.unseal(Keyring.create(Date.now()));
  const value = new Uint8Array(randomBytes(4096));
  for (let index = 1; index <= secrets; index++) {
    const path = `bench/snapshot/secret${index}`;
    const ciphertext = barrier.encrypt(path, value);
    await machine.apply(index, encodeCommand({ op: "kv.put", path, ciphertext, cas: null, at: index }));
  }
  barrier.seal();
  return machine;
}

/** Live ArrayBuffer bytes above `base`, after a full collection. */
function liveAbove(base: number): number {
  gc();
  return process.memoryUsage().arrayBuffers - base;
}

/**
 * The memory a snapshot's read-out holds on its way into its file: a state machine filled with
 * `mib` MiB of 4 KiB secrets (ciphertext), its capture read out and staged by the log store,
 * either collected whole first (as nodes did before the store took the parts) or part by part as
 * the store writes them (what RaftNode does). The peak of live ArrayBuffer bytes above the level
 * before the read-out, sampled (after a full collection) at every part.
 */
async function benchSnapshotBuildMemory(
  directory: string,
  mib: number,
): Promise<{ mib: number; stateBytes: number; whole: number; streamed: number }> {
  const secrets = (mib * 1024 * 1024) / 4096;
  const machine = await filledState(join(directory, "state"), secrets);
  const store = await SegmentLogStore.open(join(directory, "log"));
  const peaks = { whole: 0, streamed: 0 };
  let stateBytes = 0;
  try {
    // The log the snapshots stand on: an entry per apply (they are compacted by nothing here).
    const entries: Entry[] = Array.from({ length: secrets }, (_, i) => ({
      index: i + 1,
      term: 1,
      type: "normal",
      data: Uint8Array.of(1),
    }));
    await store.append(entries, { term: 1, vote: null, commit: secrets });
    let index = secrets;
    for (const how of ["whole", "streamed", "whole", "streamed"] as const) {
      // An entry per round: each snapshot is of a new applied index, with a file of its own.
      index++;
      await machine.skip(index);
      await store.append([{ index, term: 1, type: "normal", data: Uint8Array.of(1) }], {
        term: 1,
        vote: null,
        commit: index,
      });
      const meta = { index, term: 1, membership: { voters: ["n1"], learners: [] } };
      gc();
      const base = process.memoryUsage().arrayBuffers;
      let peak = 0;
      async function* sampled(
        parts: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
      ): AsyncGenerator<Uint8Array> {
        for await (const part of parts) {
          // Live bytes only: garbage waiting for a collection is not held.
          peak = Math.max(peak, liveAbove(base));
          yield part;
        }
      }
      const read = await machine.captureSnapshot();
      const stored =
        how === "whole"
          ? await store.stageSnapshot(meta, sampled([await collectParts(sampled(read()))]))
          : await store.stageSnapshot(meta, sampled(read()));
      await store.saveSnapshot(stored);
      stateBytes = stored.totalBytes;
      peaks[how] = Math.max(peaks[how], peak);
    }
  } finally {
    await machine.close();
    await store.close();
  }
  return { mib, stateBytes, ...peaks };
}

/**
 * A follower's memory while it receives a leader's snapshot (1 MiB chunks, the next sent when it
 * answers for the one before), installs it and restores its state machine from it: one RaftNode on
 * a segment log and a LevelDB secret state machine, the leader played by this script. Sampled every 10 ms.
 */
async function benchFollowerInstallMemory(
  directory: string,
  mib: number,
): Promise<{ mib: number; stateBytes: number; peak: number; seconds: number }> {
  const secrets = (mib * 1024 * 1024) / 4096;
  const source = await filledState(join(directory, "leader-state"), secrets);
  const data = await source.snapshot();
  await source.close();
  const meta: SnapshotMeta = {
    index: secrets,
    term: 1,
    membership: { voters: ["n1", "n2", "n3"], learners: [] },
  };
  const chunkBytes = 1024 * 1024;
  // The leader's chunks, copies made before the measurement starts (a real follower gets each
  // chunk as a new buffer from its gRPC stream: the old path held them and their concatenation).
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < data.length || offset === 0; offset += chunkBytes)
    chunks.push(new Uint8Array(data.subarray(offset, offset + chunkBytes)));
  const network = new InProcessNetwork();
  const leader = network.connect("n1");
  let installed = false;
  const send = (offset: number) =>
    leader.send([
      {
        type: "snapshotChunk",
        from: "n1",
        to: "n2",
        term: 1,
        meta,
        totalBytes: data.length,
        offset,
        chunk: chunks[offset / chunkBytes] ?? new Uint8Array(0),
      },
    ]);
  leader.listen((message: Message) => {
    if (message.type !== "snapshotResponse") return;
    if (message.installed) installed = true;
    else send(message.nextOffset);
  });
  const state = await SecretStateMachine.open(join(directory, "follower-state"));
  const node = await RaftNode.start<ApplyResult | null>({
    id: "n2",
    logStore: await SegmentLogStore.open(join(directory, "follower-raft")),
    transport: network.connect("n2"),
    stateMachine: new RaftSecretStateMachine(state),
    tickMs: 10,
  });
  const base = liveAbove(0);
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, liveAbove(base));
  }, 10);
  const started = performance.now();
  try {
    send(0);
    const deadline = Date.now() + 300_000;
    while (!installed || state.appliedIndex() < secrets) {
      if (Date.now() > deadline) throw new Error("the follower did not install the snapshot in 300 s");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  } finally {
    clearInterval(sampler);
    await node.stop();
    await state.close();
  }
  return { mib, stateBytes: data.length, peak, seconds: (performance.now() - started) / 1000 };
}

/**
 * A node's start with a `mib` MiB snapshot: what SegmentLogStore's open and the Raft node's load
 * hold (the snapshot checked, not kept) and how long they take, the median of three opens.
 */
async function benchStartMemory(
  directory: string,
  mib: number,
): Promise<{ mib: number; held: number; ms: number }> {
  const saving = await SegmentLogStore.open(directory);
  await saving.append([{ index: 1, term: 1, type: "normal", data: Uint8Array.of(1) }], {
    term: 1,
    vote: null,
    commit: 1,
  });
  await saving.saveSnapshot({
    meta: { index: 1, term: 1, membership: { voters: ["n1"], learners: [] } },
    data: new Uint8Array(randomBytes(mib * 2 ** 20)),
  });
  await saving.close();
  const rounds = [];
  for (let round = 0; round < 3; round++) {
    const base = liveAbove(0);
    const started = performance.now();
    const store = await SegmentLogStore.open(directory);
    const state = await store.load();
    const ms = performance.now() - started;
    const held = liveAbove(base);
    if (state.snapshot === null) throw new Error("the snapshot saved is not loaded");
    await store.close();
    rounds.push({ held, ms });
  }
  rounds.sort((a, b) => a.ms - b.ms);
  const median = rounds[1] as { held: number; ms: number };
  return { mib, ...median };
}

/**
 * The memory a backup holds while a client saves it: a state machine of `mib` MiB of 4 KiB
 * secrets, served by SaveSnapshot's handler on a grpc-js server and read by a grpc-js client on
 * loopback in this process. Live ArrayBuffer bytes sampled as each chunk arrives (the client's
 * chunks are let go as they come, so what stays is the server's and what is in flight).
 */
async function benchBackupMemory(
  directory: string,
  mib: number,
): Promise<{ mib: number; stateBytes: number; peak: number; seconds: number }> {
  const state = await filledState(join(directory, "state"), (mib * 1024 * 1024) / 4096);
  const handler = saveSnapshotHandler({
    raft: () => {
      throw new Error("a save does not use the Raft node");
    },
    state,
    keeper: null as never,
    snapshotBytesMax: 2 ** 30,
    stagingDirectory: join(directory, "restore"),
    reads: { wait: async () => {} } as unknown as ReadBarrier,
    timeoutMs: 10_000,
    systemPutAllUsable: () => true,
    setupLock: new ClusterSetupLock(),
  });
  const server = new Server();
  server.addService(ClusterService, {
    saveSnapshot: (call: Parameters<typeof handler>[0]) =>
      handler(call, {
        method: "/strongroom.v1.Cluster/SaveSnapshot",
        identity: "bench",
        token: null,
        answerBy: performance.now() + 600_000,
        forwardedBy: null,
        authorization: { caller: null, tokenUseSpent: false },
      }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) =>
      error === null ? resolve(bound) : reject(error),
    ),
  );
  const client = new ClusterClient(`127.0.0.1:${port}`, credentials.createInsecure(), {
    "grpc.max_receive_message_length": 8 * 1024 * 1024,
  });
  const base = liveAbove(0);
  let peak = 0;
  const started = performance.now();
  let stateBytes = 0;
  try {
    const stream = client.saveSnapshot({}) as ClientReadableStream<SnapshotChunk>;
    for await (const chunk of stream) {
      stateBytes += (chunk as SnapshotChunk).data.length;
      peak = Math.max(peak, liveAbove(base));
    }
  } finally {
    client.close();
    server.forceShutdown();
    await state.close();
  }
  return { mib, stateBytes, peak, seconds: (performance.now() - started) / 1000 };
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "strongroom-bench-snapshot-memory-"));
  process.stdout.write(`bench:snapshot-memory: in ${root}, node ${process.version}\n\n`);
  const builds = [];
  const installs = [];
  const starts = [];
  const backups = [];
  try {
    for (const mib of [16, 64]) builds.push(await benchSnapshotBuildMemory(join(root, `build${mib}`), mib));
    for (const mib of [16, 64])
      installs.push(await benchFollowerInstallMemory(join(root, `install${mib}`), mib));
    for (const mib of [16, 64]) starts.push(await benchStartMemory(join(root, `start${mib}`), mib));
    for (const mib of [16, 64]) backups.push(await benchBackupMemory(join(root, `backup${mib}`), mib));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  printTable(
    [
      "state (4 KiB secrets)",
      "snapshot MiB",
      "peak MiB held reading it into its file: collected whole first",
      "part by part (RaftNode)",
    ],
    builds.map((row) => [
      `${row.mib} MiB of values`,
      (row.stateBytes / 2 ** 20).toFixed(1),
      (row.whole / 2 ** 20).toFixed(1),
      (row.streamed / 2 ** 20).toFixed(1),
    ]),
  );
  process.stdout.write("\n");
  printTable(
    [
      "state (4 KiB secrets)",
      "snapshot MiB",
      "a follower's peak MiB held receiving, installing, restoring it",
      "seconds (a full GC every 10 ms)",
    ],
    installs.map((row) => [
      `${row.mib} MiB of values`,
      (row.stateBytes / 2 ** 20).toFixed(1),
      (row.peak / 2 ** 20).toFixed(1),
      row.seconds.toFixed(1),
    ]),
  );
  process.stdout.write("\n");
  printTable(
    ["a node's start with a snapshot of", "MiB held after open and load", "ms (median of 3)"],
    starts.map((row) => [`${row.mib} MiB`, (row.held / 2 ** 20).toFixed(1), row.ms.toFixed(0)]),
  );
  process.stdout.write("\n");
  printTable(
    [
      "state (4 KiB secrets)",
      "backup MiB",
      "peak MiB held serving it (SaveSnapshot)",
      "seconds (a full GC at every chunk)",
    ],
    backups.map((row) => [
      `${row.mib} MiB of values`,
      (row.stateBytes / 2 ** 20).toFixed(1),
      (row.peak / 2 ** 20).toFixed(1),
      row.seconds.toFixed(1),
    ]),
  );
}

await main();
