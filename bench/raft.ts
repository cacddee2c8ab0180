// `npm run bench:raft`: proposals per second and heap allocated per entry for an in-process
// three-node cluster, at batch sizes 1, 16 and 256 (proposals submitted together before waiting).
//  - core: the pure cores driven synchronously, messages handed over directly, persistence a no-op:
//    the cost of the consensus logic itself.
//  - node: RaftNode drivers over MemoryLogStores and the in-process network, on real timers:
//    adds the Ready loop, promises and message batching.
// Allocation is the heap growth over a further sample of 1,024 entries, with a young generation
// large enough that no garbage collection runs in between (a sample during which one did shows "gc").
// Run with: npm run bench:raft [-- --entries N] (the script sets --expose-gc and a fixed 512 MiB young generation)

import { PerformanceObserver } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { bootstrapState, type Entry, type Message, RaftCore, SeededRandom } from "../raft/core/index.js";
import { InProcessNetwork, MemoryLogStore, RaftNode, type StateMachine } from "../raft/node/index.js";
import { printTable as printRows } from "./table.js";

const gc = (globalThis as { gc?: () => void }).gc;
const entryBytes = 256;
const payload = new Uint8Array(entryBytes).fill(7);

interface Row {
  driver: string;
  batch: number;
  entries: number;
  seconds: number;
  messagesPerEntry: number;
  bytesPerEntry: number | null;
}

let gcRuns = 0;
new PerformanceObserver((list) => {
  gcRuns += list.getEntries().length;
}).observe({ entryTypes: ["gc"] });

const allocationSampleEntries = 1024;

async function measureHeapAsync<T>(work: () => Promise<T>): Promise<{ result: T; bytes: number | null }> {
  gc?.();
  // GC observer entries arrive asynchronously: let the forced collection's entry land first.
  await new Promise((resolve) => setTimeout(resolve, 20));
  const gcBefore = gcRuns;
  const before = process.memoryUsage().heapUsed;
  const result = await work();
  const bytes = process.memoryUsage().heapUsed - before;
  await new Promise((resolve) => setTimeout(resolve, 20));
  return { result, bytes: gc === undefined || gcRuns !== gcBefore ? null : bytes };
}

/** Three cores with a synchronous, lossless, instant network; persistence is free. */
class SyncCluster {
  readonly cores = new Map<string, RaftCore>();
  private queue: Message[] = [];
  messages = 0;

  constructor() {
    const ids = ["n1", "n2", "n3"];
    ids.forEach((id, i) => {
      this.cores.set(
        id,
        new RaftCore({ id, random: new SeededRandom(i + 1) }, bootstrapState({ voters: ids, learners: [] })),
      );
    });
    this.pump();
    (this.cores.get("n1") as RaftCore).campaign();
    this.pump();
  }

  pump(): void {
    for (;;) {
      let progressed = false;
      for (const core of this.cores.values()) {
        while (core.hasReady()) {
          const ready = core.ready();
          for (const message of ready.messages) this.queue.push(message);
          core.advance();
          progressed = true;
        }
      }
      if (this.queue.length === 0 && !progressed) return;
      const batch = this.queue;
      this.queue = [];
      this.messages += batch.length;
      for (const message of batch) this.cores.get(message.to)?.step(message);
    }
  }
}

async function benchCore(batch: number, entries: number): Promise<Row> {
  const cluster = new SyncCluster();
  const leader = cluster.cores.get("n1") as RaftCore;
  // Warm up the JIT on the same path before measuring.
  for (let i = 0; i < 2000; i += batch) {
    for (let j = 0; j < batch; j++) leader.propose(payload);
    cluster.pump();
  }
  const messagesBefore = cluster.messages;
  const rounds = Math.ceil(entries / batch);
  const start = performance.now();
  for (let round = 0; round < rounds; round++) {
    for (let j = 0; j < batch; j++) leader.propose(payload);
    cluster.pump();
  }
  const seconds = (performance.now() - start) / 1000;
  const messagesDuringRun = cluster.messages - messagesBefore;
  const sampleRounds = Math.ceil(allocationSampleEntries / batch);
  const { bytes } = await measureHeapAsync(async () => {
    for (let round = 0; round < sampleRounds; round++) {
      for (let j = 0; j < batch; j++) leader.propose(payload);
      cluster.pump();
    }
  });
  const total = rounds * batch;
  if (leader.hardState().commit < total) throw new Error("the benchmark cluster did not commit everything");
  return {
    driver: "core",
    batch,
    entries: total,
    seconds,
    messagesPerEntry: messagesDuringRun / total,
    bytesPerEntry: bytes === null ? null : bytes / (sampleRounds * batch),
  };
}

class CountingMachine implements StateMachine<void> {
  private applied = 0;
  apply(entry: Entry): void {
    this.applied = entry.index;
  }
  snapshot(): Uint8Array {
    return new Uint8Array(0);
  }
  restore(): void {}
  appliedIndex(): number {
    return this.applied;
  }
}

async function benchNode(batch: number, entries: number): Promise<Row> {
  const network = new InProcessNetwork();
  const ids = ["n1", "n2", "n3"];
  const nodes = await Promise.all(
    ids.map((id) =>
      RaftNode.start<void>({
        id,
        logStore: new MemoryLogStore(),
        transport: network.connect(id),
        stateMachine: new CountingMachine(),
        tickMs: 100,
        bootstrap: { voters: ids, learners: [] },
        snapshotEveryEntries: 1_000_000_000,
      }),
    ),
  );
  try {
    (nodes[0] as RaftNode<void>).campaign();
    let leader: RaftNode<void> | undefined;
    while (leader === undefined) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      leader = nodes.find((node) => node.status().role === "leader");
    }
    const run = async (count: number) => {
      for (let i = 0; i < count; i += batch) {
        await Promise.all(Array.from({ length: batch }, () => (leader as RaftNode<void>).propose(payload)));
      }
    };
    await run(2000);
    const messagesBefore = network.delivered;
    const rounds = Math.ceil(entries / batch);
    const start = performance.now();
    await run(rounds * batch);
    const seconds = (performance.now() - start) / 1000;
    const messagesDuringRun = network.delivered - messagesBefore;
    const sampleRounds = Math.ceil(allocationSampleEntries / batch);
    const { bytes } = await measureHeapAsync(() => run(sampleRounds * batch));
    const total = rounds * batch;
    return {
      driver: "node",
      batch,
      entries: total,
      seconds,
      messagesPerEntry: messagesDuringRun / total,
      bytesPerEntry: bytes === null ? null : bytes / (sampleRounds * batch),
    };
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
  }
}

function printTable(rows: Row[]): void {
  const header = [
    "driver",
    "batch",
    "entries",
    "proposals/s",
    "µs/entry",
    "messages/entry",
    "heap bytes/entry",
  ];
  const lines = rows.map((row) => [
    row.driver,
    String(row.batch),
    String(row.entries),
    Math.round(row.entries / row.seconds).toLocaleString("en-US"),
    ((row.seconds * 1e6) / row.entries).toFixed(2),
    row.messagesPerEntry.toFixed(3),
    row.bytesPerEntry === null ? "gc" : Math.round(row.bytesPerEntry).toLocaleString("en-US"),
  ]);
  printRows(header, lines);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { entries: { type: "string" } } });
  const entries = values.entries === undefined ? 50_000 : Number(values.entries);
  if (!Number.isSafeInteger(entries) || entries <= 0) {
    process.stderr.write(`bench:raft: --entries must be a positive integer, got "${values.entries}"\n`);
    process.exit(2);
  }
  if (gc === undefined) process.stderr.write("bench:raft: run with --expose-gc to measure allocation\n");
  process.stdout.write(
    `bench:raft: 3 voters in one process, ${entryBytes}-byte entries, ${entries} entries per row, node ${process.version}\n\n`,
  );
  const rows: Row[] = [];
  for (const batch of [1, 16, 256]) rows.push(await benchCore(batch, entries));
  for (const batch of [1, 16, 256]) rows.push(await benchNode(batch, Math.min(entries, 10_000)));
  printTable(rows);
}

await main();
