// `npm run bench:storage`: the durable Raft log on this machine's disk — synced appends per second
// and the process's CPU per append, for the segment files nodes keep (one O_DSYNC write each) and
// the LevelDB store older nodes kept (one batch with sync: true), at batch sizes 1, 16 and 128 of
// 256 B and 4 KiB entries, compacted behind a snapshot every 4,096 entries as a node's log is —,
// the secret state machine's applies per second and CPU per apply (16 a turn, as a node's Raft loop
// hands them over), and the barrier's AES-256-GCM cost per 256 B and 4 KiB value, and the disk's
// own price of one synced 256 B write (appending, as the audit files and LevelDB's log do, or into
// a preallocated file). For the applies it also counts the scavenges (the npm script fixes the
// young generation at 16 MiB, so each is 16 MiB allocated) and measures what one cached metadata
// record holds in memory by the secret's version number, and what a full cache of 50,000 holds
// (they need --expose-gc, which the npm script gives). Last, how long the Raft loop waits in
// saveSnapshot for a 5 and a 40 MiB snapshot, with the file written there or staged beside the loop
// first (what a node does: RaftNode stages, then saves). How long a restart takes to open and load
// a log of 100,000 entries of 4 KiB, applied or not, and to open an audit trail whose last file is
// full. What the audit trail costs a call (its request and response entries). And what a LevelDB
// batch costs the event loop per operation, written as abstract-level's array batch or as our
// writeBatch (a chained batch), which every store uses.
// Run with: npm run bench:storage [-- --seconds S]

import { randomBytes, randomUUID } from "node:crypto";
import {
  closeSync,
  constants,
  fdatasyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type PerformanceEntry, PerformanceObserver } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { Registry } from "prom-client";
import type { Entry } from "../raft/core/index.js";
import type { LogStore } from "../raft/node/index.js";
import { AuditFile } from "../server/audit/audit-file.js";
import { AuditTrail } from "../server/audit/audit-trail.js";
import type { RequestContext } from "../server/request.js";
import { Barrier, Keyring } from "../storage/barrier/index.js";
import { type LevelBatch, openBinaryLevel, writeBatch } from "../storage/leveldb.js";
import { LevelLogStore } from "../storage/raft-log/level-log-store.js";
import { SegmentLogStore } from "../storage/raft-log/segment-log-store.js";
import { encodeCommand, SecretStateMachine } from "../storage/state/index.js";
import {
  decodeMetadata,
  emptyMetadata,
  encodeMetadataTransient,
  storedVersions,
} from "../storage/state/metadata-record.js";
import { metadataCacheMax } from "../storage/state/secret-state.js";
import { printTable } from "./table.js";

const entryBytes = 256;
/** The secrets benchApplies writes in turn (their version numbers grow with the run's length). */
const appliedSecrets = 512;
/**
 * Applies benchApplies makes per turn of the event loop, as a node's Raft loop hands over
 * committed entries: the state machine's LevelDB writes behind the applies run between turns, as
 * on a node (in one unbroken run of applies they waited for its end, and each key's last value
 * alone was written).
 */
const appliesPerTurn = 16;

/** The Raft log stores compared: the nodes' own, and the LevelDB one older nodes kept. */
const logStores = {
  segment: (directory: string): Promise<LogStore> => SegmentLogStore.open(directory),
  leveldb: (directory: string): Promise<LogStore> => LevelLogStore.open(directory),
} as const;
/** As a node does, the log is compacted behind a snapshot every this many entries. */
const compactEvery = 4096;

async function benchAppends(
  directory: string,
  storeName: keyof typeof logStores,
  valueBytes: number,
  batch: number,
  seconds: number,
) {
  const store = await logStores[storeName](directory);
  const data = new Uint8Array(valueBytes).fill(1);
  let next = 1;
  let batches = 0;
  let compactedThrough = 0;
  const latencies: number[] = [];
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    const entries: Entry[] = Array.from({ length: batch }, (_, i) => ({
      index: next + i,
      term: 1,
      type: "normal",
      data,
    }));
    const before = performance.now();
    await store.append(entries, { term: 1, vote: null, commit: next - 1 });
    latencies.push(performance.now() - before);
    next += batch;
    batches++;
    if (next - 1 - compactedThrough >= compactEvery) {
      const through = next - 1 - compactEvery / 4;
      await store.saveSnapshot({
        meta: { index: through, term: 1, membership: { voters: ["n1"], learners: [] } },
        data: Uint8Array.of(1),
      });
      await store.compact({ index: through, term: 1 });
      compactedThrough = through;
    }
  }
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  await store.close();
  latencies.sort((a, b) => a - b);
  const quantile = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    store: storeName,
    valueBytes,
    batch,
    // The process's CPU, its thread pool and LevelDB's compaction thread included.
    cpuMicrosPerAppend: (cpu.user + cpu.system) / batches,
    batchesPerSecond: batches / elapsed,
    entriesPerSecond: (next - 1) / elapsed,
    p50: quantile(0.5),
    p99: quantile(0.99),
  };
}

function benchBarrier(valueBytes: number, seconds: number) {
  const barrier = new Barrier();
  barrier.unseal(Keyring.create(Date.now()));
  const value = new Uint8Array(randomBytes(valueBytes));
  const path = "secret/bench/value";
  // Warm up, then time encrypt and decrypt separately.
  for (let i = 0; i < 1000; i++) barrier.decrypt(path, barrier.encrypt(path, value));
  let encrypted = barrier.encrypt(path, value);
  let count = 0;
  let start = performance.now();
  while (performance.now() - start < (seconds * 1000) / 2) {
    encrypted = barrier.encrypt(path, value);
    count++;
  }
  const encryptMicros = ((performance.now() - start) * 1000) / count;
  count = 0;
  start = performance.now();
  while (performance.now() - start < (seconds * 1000) / 2) {
    barrier.decrypt(path, encrypted);
    count++;
  }
  const decryptMicros = ((performance.now() - start) * 1000) / count;
  barrier.seal();
  return { valueBytes, encryptMicros, decryptMicros };
}

/** Applies of put commands (256 B values, through the barrier) to the state machine, unsynced as in production. */
async function benchApplies(directory: string, seconds: number) {
  const machine = await SecretStateMachine.open(directory);
  const barrier = new Barrier();
  barrier.unseal(Keyring.create(Date.now()));
  const value = new Uint8Array(randomBytes(256));
  // Commands are built before timing: applying is what is measured, not encrypting.
  const commands = Array.from({ length: 4096 }, (_, i) => {
    const path = `bench/app${i % 64}/secret${i % appliedSecrets}`;
    return encodeCommand({ op: "kv.put", path, ciphertext: barrier.encrypt(path, value), cas: null, at: i });
  });
  let index = 0;
  let scavenges = 0;
  let gcMs = 0;
  const gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcMs += entry.duration;
      if ((entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === 1) scavenges++;
    }
  });
  gc.observe({ entryTypes: ["gc"] });
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  while (performance.now() - start < seconds * 1000) {
    index++;
    await machine.apply(index, commands[index % commands.length] as Uint8Array);
    if (index % appliesPerTurn === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  // The observer is told asynchronously: let the last entries arrive.
  await new Promise((resolve) => setTimeout(resolve, 20));
  gc.disconnect();
  const flushStart = performance.now();
  await machine.flush();
  const flushMs = performance.now() - flushStart;
  await machine.close();
  barrier.seal();
  return {
    applies: index,
    elapsed,
    appliesPerSecond: index / elapsed,
    cpuMicrosPerApply: (cpu.user + cpu.system) / index,
    flushMs,
    scavenges,
    gcMs,
  };
}

/**
 * What a state machine holds once its metadata cache is full: `metadataCacheMax` secrets (the
 * cache's size) written three times each, 16 applies per turn, then flushed; V8's heap and the
 * memory outside it that ArrayBuffers hold, after full GCs, open against closed and dropped. Null
 * without --expose-gc.
 */
async function benchFullCacheMemory(directory: string) {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return null;
  const barrier = new Barrier();
  barrier.unseal(Keyring.create(Date.now()));
  const value = new Uint8Array(randomBytes(256));
  let machine: SecretStateMachine | null = await SecretStateMachine.open(directory);
  let index = 0;
  for (let round = 0; round < 3; round++) {
    for (let secret = 0; secret < metadataCacheMax; secret++) {
      const path = `bench/app${secret % 64}/secret${secret}`;
      index++;
      const ciphertext = barrier.encrypt(path, value);
      await machine.apply(index, encodeCommand({ op: "kv.put", path, ciphertext, cas: null, at: index }));
      if (index % appliesPerTurn === 0) await new Promise((resolve) => setImmediate(resolve));
    }
  }
  await machine.flush();
  // V8 frees the memory of dead ArrayBuffers on a helper thread after a GC: give it time.
  const settled = async () => {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 200));
    gc();
    return process.memoryUsage();
  };
  const held = await settled();
  await machine.close();
  machine = null;
  const released = await settled();
  barrier.seal();
  return {
    heapBytes: held.heapUsed - released.heapUsed,
    outsideBytes: held.arrayBuffers - released.arrayBuffers,
  };
}

/**
 * Bytes one decoded metadata record holds (10 versions kept) by the secret's current version: what
 * each of the state machine's 50,000 cached records costs. Null without --expose-gc.
 */
function benchMetadataMemory(): { version: number; bytes: number }[] | null {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return null;
  return [10, 100, 400, 900, 5000].map((current) => {
    const versions = Array.from(
      { length: 10 },
      (_, i): [number, { created: number; deleted: null; destroyed: boolean }] => [
        current - 9 + i,
        { created: 1_795_000_000_000 + i, deleted: null, destroyed: false },
      ],
    );
    const bytes = Uint8Array.from(
      encodeMetadataTransient({ ...emptyMetadata(1, 10), current, versions: storedVersions(versions) }),
    );
    const held: unknown[] = [];
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 10_000; i++) held.push(decodeMetadata(bytes));
    gc();
    return { version: current, bytes: (process.memoryUsage().heapUsed - before) / held.length };
  });
}

/**
 * Microseconds per synced 256-byte write: appended (the file grows, so each sync also commits the
 * file system's metadata) or written over a preallocated file; by O_DSYNC or by fdatasync after
 * each write. At most 2,000 writes and `seconds` per row.
 */
function benchDiskSync(directory: string, seconds: number) {
  const chunk = Buffer.alloc(entryBytes, 0x61);
  const writesMax = 2000;
  const rows: { how: string; micros: number }[] = [];
  for (const preallocated of [false, true]) {
    for (const dsync of [true, false]) {
      const file = join(directory, `sync-${preallocated}-${dsync}`);
      writeFileSync(file, preallocated ? Buffer.alloc(writesMax * entryBytes) : Buffer.alloc(0));
      const fd = openSync(file, constants.O_WRONLY | (dsync ? constants.O_DSYNC : 0));
      if (preallocated) fdatasyncSync(fd);
      const start = performance.now();
      let writes = 0;
      // At least one write, however short the time given.
      do {
        writeSync(fd, chunk, 0, entryBytes, writes * entryBytes);
        if (!dsync) fdatasyncSync(fd);
        writes++;
      } while (writes < writesMax && performance.now() - start < seconds * 1000);
      rows.push({
        how: `${preallocated ? "into a preallocated file" : "appended"}, ${dsync ? "O_DSYNC" : "write + fdatasync"}`,
        micros: ((performance.now() - start) * 1000) / writes,
      });
      closeSync(fd);
      rmSync(file);
    }
  }
  return rows;
}

/**
 * The Raft loop's wait in saveSnapshot, the median of three: the snapshot's file written (and
 * fsynced) there, or staged beside the loop by stageSnapshot first so that saving only records it.
 */
async function benchSnapshotSave(
  directory: string,
): Promise<{ mib: number; written: number; staged: number }[]> {
  const store = await SegmentLogStore.open(directory);
  const rows = [];
  let index = 0;
  try {
    for (const mib of [5, 40]) {
      const waits = { written: [] as number[], staged: [] as number[] };
      for (let round = 0; round < 3; round++) {
        for (const how of ["written", "staged"] as const) {
          index++;
          await store.append([{ index, term: 1, type: "normal", data: Uint8Array.of(1) }], {
            term: 1,
            vote: null,
            commit: index,
          });
          const snapshot = {
            meta: { index, term: 1, membership: { voters: ["n1"], learners: [] } },
            data: new Uint8Array(randomBytes(mib * 1024 * 1024)),
          };
          const saved =
            how === "staged" ? await store.stageSnapshot(snapshot.meta, [snapshot.data]) : snapshot;
          const start = performance.now();
          await store.saveSnapshot(saved);
          waits[how].push(performance.now() - start);
        }
      }
      rows.push({ mib, written: median(waits.written), staged: median(waits.staged) });
    }
  } finally {
    await store.close();
  }
  return rows;
}

/**
 * A restart's open and load of a log of 100,000 entries of 4 KiB (400 MiB, what 128 MiB of
 * raft.snapshotLogBytesMax and more would keep), the median of three: with every entry applied
 * (what a node does: load({ dataFrom }) leaves them on disk) and with none applied (every entry
 * read back with its data: a node whose state machine starts empty).
 */
async function benchRestart(
  directory: string,
): Promise<{ applied: string; ms: number; cpuMs: number; loadedMiB: number }[]> {
  const entries = 100_000;
  let store = await SegmentLogStore.open(directory);
  const data = new Uint8Array(randomBytes(4096));
  for (let index = 1; index <= entries; index += 100) {
    const batch = Array.from({ length: 100 }, (_, i) => ({
      index: index + i,
      term: 1,
      type: "normal" as const,
      data,
    }));
    await store.append(batch, { term: 1, vote: null, commit: index + 99 });
  }
  await store.close();
  const rows = [];
  for (const applied of ["all", "none"]) {
    const runs: { ms: number; cpuMs: number; loadedMiB: number }[] = [];
    for (let round = 0; round < 3; round++) {
      const start = performance.now();
      const cpu = process.cpuUsage();
      store = await SegmentLogStore.open(directory);
      const state = await store.load(applied === "all" ? { dataFrom: entries + 1 } : {});
      const used = process.cpuUsage(cpu);
      runs.push({
        ms: performance.now() - start,
        cpuMs: (used.user + used.system) / 1000,
        loadedMiB: state.entries.reduce((sum, entry) => sum + entry.data.length, 0) / 2 ** 20,
      });
      await store.close();
    }
    rows.push({
      applied,
      ms: median(runs.map((run) => run.ms)),
      cpuMs: median(runs.map((run) => run.cpuMs)),
      loadedMiB: median(runs.map((run) => run.loadedMiB)),
    });
  }
  return rows;
}

/**
 * A restart's open of an audit trail whose last file is full (audit.maxFileBytes, 64 MiB by
 * default, of 300-byte lines): the sink finds the last line to go on from. The median of five.
 */
async function benchAuditOpen(directory: string): Promise<{ mib: number; ms: number }> {
  mkdirSync(directory, { recursive: true });
  const line = (seq: number) =>
    JSON.stringify({
      v: 2,
      seq,
      time: new Date(0).toISOString(),
      node: "n1",
      prev: "0".repeat(64),
      type: "request",
      requestId: randomUUID(),
      identity: "alice",
      method: "/strongroom.v1.Secrets/Put",
      path: `app/k${seq}`,
    });
  const count = Math.floor((64 * 1024 * 1024) / (line(1).length + 1));
  const file = join(directory, "audit-000001.jsonl");
  writeFileSync(file, `${Array.from({ length: count }, (_, i) => line(i + 1)).join("\n")}\n`);
  const runs: number[] = [];
  for (let round = 0; round < 5; round++) {
    const start = performance.now();
    const sink = AuditFile.open({
      directory,
      node: "n1",
      auditKey: null,
      maxFileBytes: 64 * 1024 * 1024,
      checkpointEvery: 1000,
      durability: "disk",
      syncIntervalMs: 1000,
    });
    runs.push(performance.now() - start);
    await sink.abandon();
    // The file each open starts goes, so that every round finds the full one last.
    for (const name of readdirSync(directory))
      if (name !== "audit-000001.jsonl") rmSync(join(directory, name));
  }
  return { mib: statSync(file).size / 2 ** 20, ms: median(runs) };
}

/**
 * What the audit trail costs a call: a request entry and a response entry each (`Put` and `Get`
 * in turn, a third of them forwarded, the caller's token and a `Put`'s value recorded as HMACs),
 * 32 calls in flight, one file sink with durability "os" (the disk's own wait is the synced-write
 * row's). CPU of every thread per call, and calls per second.
 */
async function benchAuditCalls(directory: string, seconds: number) {
  const rootKey = new Uint8Array(randomBytes(32));
  const trail = new AuditTrail({
    node: "n1",
    directories: [directory],
    maxFileBytes: 64 * 1024 * 1024,
    checkpointEvery: 1000,
    durability: "os",
    syncIntervalMs: 1000,
    rootKey: () => rootKey,
    registry: new Registry(),
  });
  const token = `sr.${"t".repeat(43)}`;
  const value = new Uint8Array(randomBytes(256));
  const call = async (i: number) => {
    const context: RequestContext = {
      method: i % 2 === 0 ? "/strongroom.v1.Secrets/Put" : "/strongroom.v1.Secrets/Get",
      identity: "bench",
      token,
      answerBy: performance.now() + 10_000,
      forwardedBy: i % 3 === 0 ? "n2" : null,
      authorization: { caller: null, tokenUseSpent: false },
    };
    const path = `bench/app${i % 64}/secret${i % appliedSecrets}`;
    const finish = await trail.begin(context, i % 2 === 0 ? { path, value } : { path });
    await finish(null, { version: i, revision: i });
  };
  let calls = 0;
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  while (performance.now() - start < seconds * 1000) {
    await Promise.all(Array.from({ length: 32 }, () => call(calls++)));
  }
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  await trail.close();
  rootKey.fill(0);
  return { callsPerSecond: calls / elapsed, cpuMicrosPerCall: (cpu.user + cpu.system) / calls };
}

/**
 * The event loop's time per operation to hand a batch of `size` operations (4 puts of 300 bytes
 * to 1 delete, keys like a secret's version) to LevelDB, until the call returns its promise: the
 * array form of abstract-level (`db.batch(array)`) against writeBatch. The two alternate in
 * blocks of 50 batches; the median over the blocks.
 */
async function benchLevelBatch(
  directory: string,
  size: number,
  seconds: number,
): Promise<{ size: number; array: number; chained: number }> {
  const db = await openBinaryLevel(directory);
  const encoder = new TextEncoder();
  let serial = 0;
  const makeBatch = (): LevelBatch =>
    Array.from({ length: size }, (_, i) => {
      const key = encoder.encode(`v/secret/bench/key-${serial++}/${i}`);
      return i % 5 === 4 ? { type: "del", key } : { type: "put", key, value: new Uint8Array(300) };
    });
  const perOperation = { array: [] as number[], chained: [] as number[] };
  const deadline = performance.now() + seconds * 1000;
  try {
    while (performance.now() < deadline) {
      for (const how of ["array", "chained"] as const) {
        let micros = 0;
        for (let round = 0; round < 50; round++) {
          const batch = makeBatch();
          const start = performance.now();
          const written =
            how === "array" ? db.batch(batch, { sync: false }) : writeBatch(db, batch, { sync: false });
          micros += (performance.now() - start) * 1000;
          await written;
        }
        perOperation[how].push(micros / 50 / size);
      }
    }
  } finally {
    await db.close();
  }
  return { size, array: median(perOperation.array), chained: median(perOperation.chained) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: "string" } } });
  const seconds = values.seconds === undefined ? 3 : Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    process.stderr.write(`bench:storage: --seconds must be a positive number, got "${values.seconds}"\n`);
    process.exit(2);
  }
  const root = mkdtempSync(join(tmpdir(), "strongroom-bench-storage-"));
  process.stdout.write(`bench:storage: in ${root}, ${seconds} s per row, node ${process.version}\n\n`);
  const rows = [];
  let syncs: ReturnType<typeof benchDiskSync> = [];
  let snapshotSaves: Awaited<ReturnType<typeof benchSnapshotSave>> = [];
  let restarts: Awaited<ReturnType<typeof benchRestart>> = [];
  let auditOpen: Awaited<ReturnType<typeof benchAuditOpen>> | null = null;
  let fullCache: Awaited<ReturnType<typeof benchFullCacheMemory>> = null;
  const levelBatches: Awaited<ReturnType<typeof benchLevelBatch>>[] = [];
  try {
    // First: the process holds nothing else yet that a GC could free while it is measured.
    fullCache = await benchFullCacheMemory(join(root, "full-cache"));
    for (const valueBytes of [entryBytes, 4096])
      for (const batch of [1, 16, 128])
        for (const storeName of ["segment", "leveldb"] as const)
          rows.push(
            await benchAppends(
              join(root, `${storeName}-${valueBytes}-${batch}`),
              storeName,
              valueBytes,
              batch,
              seconds,
            ),
          );
    const applies = await benchApplies(join(root, "state"), seconds);
    syncs = benchDiskSync(root, seconds);
    snapshotSaves = await benchSnapshotSave(join(root, "snapshots"));
    restarts = await benchRestart(join(root, "restart"));
    auditOpen = await benchAuditOpen(join(root, "audit"));
    const auditCalls = await benchAuditCalls(join(root, "audit-calls"), seconds);
    for (const size of [4, 32])
      levelBatches.push(await benchLevelBatch(join(root, `batch${size}`), size, seconds));
    process.stdout.write(
      `state machine: ${Math.round(applies.appliesPerSecond).toLocaleString("en-US")} applies/s, ` +
        `${applies.cpuMicrosPerApply.toFixed(1)} µs of CPU each, every thread ` +
        `(kv.put of 256-byte values over ${appliedSecrets} secrets, ${appliesPerTurn} per turn of the event loop, ${applies.applies} applied, up to version ` +
        `${Math.ceil(applies.applies / appliedSecrets)}, then one flush of ${applies.flushMs.toFixed(2)} ms); ` +
        `${applies.scavenges} scavenges, ${((applies.scavenges * 16 * 1024) / applies.applies).toFixed(1)} KiB allocated per apply ` +
        `at a 16 MiB young generation, GC ${((100 * applies.gcMs) / 1000 / applies.elapsed).toFixed(1)}% of the time\n\n`,
    );
    process.stdout.write(
      `audit trail: ${auditCalls.cpuMicrosPerCall.toFixed(1)} µs of CPU per call, every thread ` +
        `(a request and a response entry, Put and Get in turn, 32 in flight, one file sink, durability os), ` +
        `${Math.round(auditCalls.callsPerSecond).toLocaleString("en-US")} calls/s\n\n`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  printTable(
    [
      "Raft log store",
      "value bytes",
      "batch",
      "synced appends/s",
      "entries/s",
      "CPU µs/append",
      "p50 ms",
      "p99 ms",
    ],
    rows.map((row) => [
      row.store,
      String(row.valueBytes),
      String(row.batch),
      Math.round(row.batchesPerSecond).toLocaleString("en-US"),
      Math.round(row.entriesPerSecond).toLocaleString("en-US"),
      Math.round(row.cpuMicrosPerAppend).toLocaleString("en-US"),
      row.p50.toFixed(2),
      row.p99.toFixed(2),
    ]),
  );
  process.stdout.write("\n");
  const metadataMemory = benchMetadataMemory();
  if (metadataMemory === null || fullCache === null)
    process.stdout.write("(metadata record memory: run with --expose-gc)\n\n");
  else {
    const mib = (bytes: number) => (bytes / (1024 * 1024)).toFixed(1);
    process.stdout.write(
      `a full metadata cache (${metadataCacheMax.toLocaleString("en-US")} secrets written three times each): ` +
        `${mib(fullCache.heapBytes)} MiB of V8's heap, ${mib(fullCache.outsideBytes)} MiB outside it\n\n`,
    );
    printTable(
      ["a cached metadata record, 10 versions kept, current version", "bytes held"],
      metadataMemory.map((row) => [
        row.version.toLocaleString("en-US"),
        Math.round(row.bytes).toLocaleString("en-US"),
      ]),
    );
    process.stdout.write("\n");
  }
  printTable(
    ["value bytes", "encrypt µs", "decrypt µs", "encrypt MB/s"],
    [256, 4096].map((size) => {
      const row = benchBarrier(size, seconds);
      return [
        String(size),
        row.encryptMicros.toFixed(2),
        row.decryptMicros.toFixed(2),
        (size / row.encryptMicros).toFixed(0),
      ];
    }),
  );
  process.stdout.write("\n");
  printTable(
    ["one synced 256 B write", "µs"],
    syncs.map((row) => [row.how, row.micros.toFixed(1)]),
  );
  process.stdout.write("\n");
  printTable(
    [
      "snapshot",
      "the Raft loop's wait in saveSnapshot: file written there, ms",
      "staged beside the loop first, ms",
    ],
    snapshotSaves.map((row) => [`${row.mib} MiB`, row.written.toFixed(1), row.staged.toFixed(1)]),
  );
  process.stdout.write("\n");
  printTable(
    ["restart: open and load 100,000 entries of 4 KiB, applied", "ms", "CPU ms", "entry data loaded, MiB"],
    restarts.map((row) => [row.applied, row.ms.toFixed(0), row.cpuMs.toFixed(0), row.loadedMiB.toFixed(0)]),
  );
  process.stdout.write("\n");
  if (auditOpen !== null) {
    printTable(
      ["restart: open an audit trail whose last file is full", "ms"],
      [[`${auditOpen.mib.toFixed(0)} MiB`, auditOpen.ms.toFixed(1)]],
    );
    process.stdout.write("\n");
  }
  printTable(
    ["LevelDB batch, operations", "event loop µs per operation: db.batch(array)", "writeBatch (chained)"],
    levelBatches.map((row) => [String(row.size), row.array.toFixed(2), row.chained.toFixed(2)]),
  );
}

await main();
