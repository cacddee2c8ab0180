// `npm run bench:vs-etcd [-- --quick] [--out DIR] [...]` (`-- --help` lists every option):
// strongroom and etcd side by side on this machine. A 3-node strongroom cluster (mutual TLS, Shamir
// seal, audit on, fsync on) on 127.0.0.211-213 and a 3-member etcd (mutual TLS, fsync on) on
// 127.0.0.221-223, both started here with their own data directories; the same load generator
// (load.ts: worker threads, a generated grpc-js client, one channel per endpoint per worker,
// requests spread over the members) drives each in turn. Workloads: 256 B and 4 KiB values;
// writes only, linearizable reads only, 90/10 reads and writes; 1, 16, 64 and 256 requests in
// flight (closed loop); and a fixed-rate open-loop run. Prints a table per workload, writes
// results.json and results.md to --out, and ends with the line
//   vs-etcd: write <r>x, read <r>x, write-p99 <r>x
// (strongroom / etcd at 64 clients, 256 B). --quick: 256 B, writes and reads, 1/16/64 clients,
// a short window each: about two minutes.

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { ProcessCluster } from "../../chaos/process-cluster.js";
import type { ReadRouting } from "../../client/index.js";
import { builtServerCommand } from "../built-server.js";
import { printTable } from "../table.js";
import { batchingColumn } from "./batching.js";
import { EtcdCluster, ensureEtcd } from "./etcd-cluster.js";
import type { GcPauses } from "./gc-pauses.js";
import { LoadGenerator, type RunResult } from "./load.js";
import { etcdHostBase, strongroomMetricsUrls, strongroomPlacement } from "./placement.js";
import { describeServerSettings, type ServerSettings } from "./server-settings.js";
import { connect, type SystemName, type TargetSpec } from "./targets.js";

const usage = `usage: npm run bench:vs-etcd -- [options]
  --quick              a two-minute subset (256 B; write and read; 1, 16, 64 clients)
  --out DIR            where results.json and results.md go (.bench/vs-etcd)
  --duration S         seconds per cell, 1..600 (10; 5 with --quick)
  --warmup S           seconds of unmeasured load each system gets before its first cell, the
                       mixes in turn at 64 clients, 0..600 (20; 10 with --quick; 0: none)
  --rate N             the open-loop rate, 1..100000 per second (400)
  --workers N          load-generator worker threads, 1..16 (2)
  --seed N             the seed of the keys each client picks (1)
  subsets, for profiling one cell:
  --systems LIST       strongroom,etcd
  --sizes LIST         value sizes in bytes, 1..1048576 (256,4096; 256 with --quick)
  --mixes LIST         write,read,90/10
  --clients LIST       closed-loop concurrencies, 1..4096 (1,16,64,256; 1,16,64 with --quick)
  --no-open-loop       skip the open-loop runs
  --entry WHERE        where clients send: all (spread over every member, the default, as
                       etcd's clients do), leader or follower (each system's leader, or a
                       member that does not lead, found once the cluster is up), or clients
                       (as each system's client library routes: strongroom's SDK sends writes
                       to the leader, and many SDK clients' reads land on every member; etcd's
                       clients spread both), or sdk (strongroom's requests through the SDK
                       itself, one client per worker thread, each worker's member list
                       starting at another member; etcd's as with clients)
  --sdk-reads R        with --entry sdk, the SDK's readRouting: sticky (the default: reads to
                       the member that answered a read last) or balanced (to the cheaper of
                       two members by latency and reads in flight)
  --audit-durability D the strongroom nodes' audit.durability: disk (the default: an entry
                       on disk before its call goes on) or os (handed to the OS; docs/operations.md)
  --lease-reads        the strongroom nodes' raft.leaseReads: the leader answers linearizable
                       reads from its lease, without a heartbeat round (docs/raft.md, Read
                       leases; etcd's reads keep their ReadIndex round)
  --request-ids        strongroom's writes carry a request id (a UUID each), as the SDK's do:
                       what remembering them costs (docs/api.md, Request ids)
  --profile DIR        run the strongroom nodes with --cpu-prof, profiles in DIR
  --node-options=FLAGS Node/V8 flags for the strongroom nodes, space-separated, each starting
                       with "--" (--node-options="--max-semi-space-size=32"); compare runs
                       with and without, alternated: a flag cannot be switched in a running node
  --server-node PATH   the Node binary that runs the strongroom nodes (default: the one running
                       the bench, which also runs the load generator): to compare Node versions
                       on the servers alone
`;

function refuse(problem: string): never {
  process.stderr.write(`bench:vs-etcd: ${problem}\n${usage}`);
  process.exit(2);
}

/** `node --version` of the binary at `path`, or a refusal naming it. */
function versionOfNode(path: string): string {
  let said: string;
  try {
    said = execFileSync(path, ["--version"], { encoding: "utf8", timeout: 10_000 }).trim();
  } catch (error) {
    refuse(
      `--server-node: ${path} does not run as a Node binary (${(error as Error).message.split("\n")[0]})`,
    );
  }
  if (!/^v\d+\.\d+\.\d+$/.test(said))
    refuse(
      `--server-node: ${path} --version said ${JSON.stringify(said.split("\n")[0])}, not a Node version`,
    );
  return said;
}

function parseOptions() {
  try {
    return parseArgs({
      options: {
        help: { type: "boolean", default: false },
        quick: { type: "boolean", default: false },
        out: { type: "string", default: ".bench/vs-etcd" },
        duration: { type: "string" },
        warmup: { type: "string" },
        rate: { type: "string", default: "400" },
        workers: { type: "string", default: "2" },
        seed: { type: "string", default: "1" },
        systems: { type: "string", default: "strongroom,etcd" },
        sizes: { type: "string" },
        mixes: { type: "string" },
        clients: { type: "string" },
        "no-open-loop": { type: "boolean", default: false },
        entry: { type: "string", default: "all" },
        "sdk-reads": { type: "string", default: "sticky" },
        "audit-durability": { type: "string", default: "disk" },
        "request-ids": { type: "boolean", default: false },
        "lease-reads": { type: "boolean", default: false },
        profile: { type: "string" },
        "node-options": { type: "string", default: "" },
        "server-node": { type: "string" },
      },
    }).values;
  } catch (error) {
    refuse(error instanceof Error ? error.message : String(error));
  }
}

/** A comma-separated list whose every item `parse` accepts; an empty item is refused like any other. */
function listOf<T>(option: string, text: string, parse: (item: string) => T | undefined): T[] {
  return text.split(",").map((item) => {
    const parsed = parse(item.trim());
    if (parsed === undefined) refuse(`--${option}: "${item}" is not one of the choices`);
    return parsed;
  });
}

function wholeIn(min: number, max: number): (item: string) => number | undefined {
  return (item) => {
    const value = Number(item);
    return /^\d+$/.test(item) && value >= min && value <= max ? value : undefined;
  };
}

const values = parseOptions();
if (values.help === true) {
  process.stdout.write(usage);
  process.exit(0);
}
const quick = values.quick ?? false;
const durationMs = Number(values.duration ?? (quick ? 5 : 10)) * 1000;
const systemWarmupMs = Number(values.warmup ?? (quick ? 10 : 20)) * 1000;
const rate = Number(values.rate);
const workers = Number(values.workers);
const seed = Number(values.seed);
if (!(durationMs >= 1000 && durationMs <= 600_000)) refuse("--duration takes 1..600 seconds");
if (!(Number.isInteger(systemWarmupMs) && systemWarmupMs >= 0 && systemWarmupMs <= 600_000))
  refuse("--warmup takes 0..600 seconds");
if (!(rate > 0 && rate <= 100_000)) refuse("--rate takes 1..100000 per second");
if (!Number.isInteger(workers) || workers < 1 || workers > 16) refuse("--workers takes 1..16");
if (!Number.isSafeInteger(seed)) refuse("--seed takes a whole number");

const sizes =
  values.sizes === undefined
    ? quick
      ? [256]
      : [256, 4096]
    : listOf("sizes", values.sizes, wholeIn(1, 1 << 20));
const allMixes: { name: string; readFraction: number }[] = [
  { name: "write", readFraction: 0 },
  { name: "read", readFraction: 1 },
  { name: "90/10", readFraction: 0.9 },
];
const mixes =
  values.mixes === undefined
    ? allMixes.filter((mix) => !quick || mix.name !== "90/10")
    : listOf("mixes", values.mixes, (name) => allMixes.find((mix) => mix.name === name));
const concurrencies =
  values.clients === undefined
    ? quick
      ? [1, 16, 64]
      : [1, 16, 64, 256]
    : listOf("clients", values.clients, wholeIn(1, 4096));
const entry = values.entry ?? "all";
if (!["all", "leader", "follower", "clients", "sdk"].includes(entry))
  refuse("--entry takes all, leader, follower, clients or sdk");
const sdkReads = values["sdk-reads"] ?? "sticky";
if (sdkReads !== "balanced" && sdkReads !== "sticky") refuse("--sdk-reads takes sticky or balanced");
const sdkReadRouting: ReadRouting = sdkReads;
if (sdkReads !== "sticky" && entry !== "sdk") refuse("--sdk-reads goes with --entry sdk");
const auditDurability = values["audit-durability"] ?? "disk";
if (auditDurability !== "disk" && auditDurability !== "os") refuse("--audit-durability takes disk or os");

/**
 * The members the clients send to: every one, or the leader alone, or one follower alone (what a
 * request costs entering at each, apart from what spreading them costs). With "clients", every one,
 * strongroom's writes then going to its leader (TargetSpec.writeEndpoint).
 */
function entryEndpoints(system: SystemName, endpoints: readonly string[], leader: string | null): string[] {
  // A system this run does not drive keeps every endpoint: its leader is not looked for.
  if (entry === "all" || entry === "clients" || entry === "sdk" || !systems.includes(system))
    return [...endpoints];
  if (leader === null) throw new Error(`--entry ${entry}: ${system} has no leader to tell apart`);
  const chosen = entry === "leader" ? leader : endpoints.find((endpoint) => endpoint !== leader);
  if (chosen === undefined) throw new Error(`--entry follower: ${system} has no follower`);
  return [chosen];
}

/** Where the clients sent, for the report. */
function entryDescription(): string {
  if (entry === "all") return "to every member";
  if (entry === "clients")
    return "as each system's client library routes them (strongroom's SDK: writes to the leader, reads spread over every member; etcd's: every request spread)";
  if (entry === "sdk")
    return `strongroom's through its SDK (a client per worker thread, routing each request itself, reads ${sdkReadRouting}); etcd's spread`;
  return `to each system's ${entry} only`;
}
const systems = listOf("systems", values.systems ?? "", (name): SystemName | undefined =>
  name === "strongroom" || name === "etcd" ? name : undefined,
);
const openLoop = !(values["no-open-loop"] ?? false);
const profileDirectory = values.profile === undefined ? null : resolve(values.profile);
const nodeOptions = (values["node-options"] ?? "").split(/\s+/).filter((flag) => flag !== "");
for (const flag of nodeOptions)
  if (!/^--[a-z0-9-]+(=\S+)?$/.test(flag))
    refuse(`--node-options: "${flag}" is not a --flag or --flag=value`);
const serverNode = values["server-node"] === undefined ? process.execPath : resolve(values["server-node"]);
const serverSettings: ServerSettings = {
  auditDurability,
  leaseReads: values["lease-reads"] === true,
  requestIds: values["request-ids"] === true,
  nodeOptions,
  serverNodeVersion: versionOfNode(serverNode),
};
const keys = 1000;
/** Each run's own ramp before its window, on warmed workers and nodes. */
const warmupMs = quick ? 1000 : 2000;
/**
 * The concurrency of the warm-up before each system's first cell: high enough that the nodes'
 * code is compiled for the load in seconds (a strongroom node's JIT took about 15,000 writes to
 * settle; docs/performance.md, sixty-third session).
 */
const systemWarmupClients = 64;

/** What each system's runs are sent to and read from. */
interface SystemTarget {
  readonly spec: TargetSpec;
  readonly pids: number[];
  /** The nodes' /metrics, for their GC pauses and batching (strongroom's; null for etcd). */
  readonly metricsUrls: string[] | null;
}

interface Cell {
  readonly system: SystemName;
  readonly valueBytes: number;
  readonly mix: string;
  readonly mode: "closed" | "open";
  readonly concurrency: number;
  readonly ratePerSecond: number;
  readonly result: RunResult;
}

async function prefill(target: TargetSpec, valueBytes: number): Promise<void> {
  const connection = connect(target, target.endpoints[0] ?? "");
  const value = new Uint8Array(valueBytes).fill(7);
  let next = 0;
  const writer = async () => {
    for (let key = next++; key < keys; key = next++)
      await connection.write(`k${key}`, value, Date.now() + 30_000);
  };
  await Promise.all(Array.from({ length: 32 }, writer));
  connection.close();
}

async function main(): Promise<void> {
  const etcdVersion = ensureEtcd();
  const directory = mkdtempSync(join(tmpdir(), "strongroom-vs-etcd-"));
  const strongroom = new ProcessCluster({
    directory: join(directory, "strongroom"),
    size: 3,
    tickMs: 50,
    ...strongroomPlacement,
    command: builtServerCommand(
      [
        ...nodeOptions,
        ...(profileDirectory === null ? [] : ["--cpu-prof", `--cpu-prof-dir=${profileDirectory}`]),
      ],
      serverNode,
    ),
    // The default per-identity rate limit (10,000/s) would cap the benchmark, not the server.
    nodeConfig: {
      auth: { rateLimits: [{ prefix: "", perSecond: 1_000_000, burst: 1_000_000 }] },
      audit: { durability: auditDurability },
    },
    leaseReads: serverSettings.leaseReads,
    logLevel: "warn",
  });
  const etcd = new EtcdCluster({ directory: join(directory, "etcd"), hostBase: etcdHostBase });
  const cells: Cell[] = [];
  let strongroomLeaderId: string | null = null;
  // Each system's load workers, connected once and kept for all its runs (load.ts says why).
  const generators = new Map<SystemName, LoadGenerator>();
  try {
    process.stderr.write(`starting strongroom and etcd (${etcdVersion}) in ${directory}\n`);
    const token = await strongroom.start();
    await etcd.start();
    const pinned = (system: SystemName) => entry !== "all" && systems.includes(system);
    // Looked up whenever strongroom runs: the report says which node's CPU is the leader's.
    const leaderNode = systems.includes("strongroom") ? await strongroom.leader() : null;
    strongroomLeaderId = leaderNode?.id ?? null;
    const strongroomLeader =
      leaderNode === null ? null : (strongroom.endpoints()[strongroom.nodes.indexOf(leaderNode)] ?? null);
    // With "clients" etcd's requests stay spread, as its clients send them: its leader is not needed.
    const etcdLeader =
      pinned("etcd") && entry !== "clients" && entry !== "sdk" ? await etcd.leaderEndpoint() : null;
    if (entry !== "all")
      process.stderr.write(
        `leaders: strongroom ${strongroomLeader}, etcd ${etcdLeader}; clients sent ${entryDescription()}\n`,
      );
    const targets: Record<SystemName, SystemTarget> = {
      strongroom: {
        spec: {
          system: "strongroom",
          endpoints: entryEndpoints("strongroom", strongroom.endpoints(), strongroomLeader),
          // The SDK sends writes to the leader it learned (client/endpoint-pool.ts).
          writeEndpoint: entry === "clients" ? strongroomLeader : null,
          tls: strongroom.tls,
          token,
          requestIds: serverSettings.requestIds,
          viaSdk: entry === "sdk",
          sdkReadRouting,
        },
        pids: strongroom.nodes.map((node) => node.child?.pid ?? 0),
        metricsUrls: strongroomMetricsUrls(strongroom.nodes.length),
      },
      etcd: {
        spec: {
          system: "etcd",
          endpoints: entryEndpoints("etcd", etcd.endpoints(), etcdLeader),
          writeEndpoint: null,
          tls: etcd.tls,
          token: null,
          requestIds: false,
          viaSdk: false,
          sdkReadRouting: "sticky",
        },
        pids: etcd.pids(),
        metricsUrls: null,
      },
    };
    for (const system of systems) generators.set(system, new LoadGenerator(targets[system].spec, workers));
    const load = (
      system: SystemName,
      valueBytes: number,
      mix: { name: string; readFraction: number },
      mode: "closed" | "open",
      concurrency: number,
      ratePerSecond: number,
      windowMs: number,
    ) => {
      const generator = generators.get(system);
      if (generator === undefined) throw new Error(`no load generator for ${system}`);
      return generator.run({
        serverPids: targets[system].pids,
        metricsUrls: targets[system].metricsUrls,
        mode,
        concurrency,
        ratePerSecond,
        readFraction: mix.readFraction,
        valueBytes,
        keys,
        warmupMs,
        durationMs: windowMs,
        seed,
      });
    };
    // Nothing measured: each system's code (the nodes' JIT, the load workers') warmed for the load.
    const warmUp = async (system: SystemName, valueBytes: number) => {
      const windowMs = Math.max(1000, Math.floor(systemWarmupMs / mixes.length) - warmupMs);
      for (const mix of mixes) {
        const result = await load(system, valueBytes, mix, "closed", systemWarmupClients, 0, windowMs);
        process.stderr.write(
          `${system} warm-up, ${mix.name} at ${systemWarmupClients} clients: ${Math.round(result.opsPerSecond)} ops/s${result.errors === 0 ? "" : `, ${result.errors} errors (${result.errorSamples[0] ?? ""})`}\n`,
        );
      }
    };
    const run = async (
      system: SystemName,
      valueBytes: number,
      mix: { name: string; readFraction: number },
      mode: "closed" | "open",
      concurrency: number,
      ratePerSecond: number,
    ) => {
      const result = await load(system, valueBytes, mix, mode, concurrency, ratePerSecond, durationMs);
      cells.push({ system, valueBytes, mix: mix.name, mode, concurrency, ratePerSecond, result });
      const errors = result.errors === 0 ? "" : `, ${result.errors} errors (${result.errorSamples[0] ?? ""})`;
      process.stderr.write(
        `${system} ${valueBytes} B ${mix.name} ${mode === "closed" ? `${concurrency} clients` : `${ratePerSecond}/s`}: ${Math.round(result.opsPerSecond)} ops/s, p99 ${result.p99Ms.toFixed(1)} ms${errors}\n`,
      );
    };
    for (const valueBytes of sizes) {
      for (const system of systems) await prefill(targets[system].spec, valueBytes);
      if (systemWarmupMs > 0 && valueBytes === sizes[0])
        for (const system of systems) await warmUp(system, valueBytes);
      // Interleaved, so that a drift of the machine weighs on both alike.
      for (const mix of mixes)
        for (const concurrency of concurrencies)
          for (const system of systems) await run(system, valueBytes, mix, "closed", concurrency, 0);
      // Open loop at a fixed rate, well under both systems' capacity: latency without coordinated omission.
      for (const mix of mixes.filter((m) => openLoop && m.name !== "90/10"))
        for (const system of systems)
          await run(system, valueBytes, mix, "open", 0, mix.readFraction === 1 ? rate * 2 : rate);
    }
  } finally {
    await Promise.all([...generators.values()].map((generator) => generator.close()));
    await strongroom.stopGracefully(10_000).catch(() => []);
    await etcd.stop();
    rmSync(directory, { recursive: true, force: true });
  }
  report(cells, etcdVersion, strongroomLeaderId);
}

/**
 * A node's GC pauses per second of the window, in ms: a mark-compact's (its final pause and its
 * incremental marking steps), then the scavenges'.
 */
function gcPauseColumn(pauses: GcPauses, windowSeconds: number): string {
  const perSecond = (seconds: number) => ((seconds * 1000) / windowSeconds).toFixed(1);
  const marking = pauses.major.seconds + pauses.incremental.seconds;
  return `${perSecond(marking)}/${perSecond(pauses.minor.seconds)}`;
}

function report(cells: readonly Cell[], etcdVersion: string, strongroomLeaderId: string | null): void {
  const out = values.out ?? ".bench/vs-etcd";
  mkdirSync(out, { recursive: true });
  const ms = (value: number) => value.toFixed(1);
  const ratio = (a: number, b: number) => (b === 0 ? "-" : `${(a / b).toFixed(2)}x`);
  const header = [
    "load",
    "sr ops/s",
    "etcd ops/s",
    "sr/etcd",
    "sr p50",
    "etcd p50",
    "sr p99",
    "etcd p99",
    "sr p99.9",
    "etcd p99.9",
    "worst 1 s p99",
    "sr cpu s/1k",
    "etcd cpu s/1k",
    "sr cpu s/1k by node",
    "sr RSS MiB",
    "etcd RSS MiB",
    "sr RSS peak",
    "etcd RSS peak",
    "gen cores",
    "machine busy %",
    "sr loop run/wait %",
    "switches/op",
    "sr GC ms/s",
    "sr batch log/audit",
    "sr raft msgs/op",
  ];
  const markdown: string[] = [
    `# strongroom vs etcd (${new Date().toISOString()})`,
    "",
    `etcd: ${etcdVersion}; ${describeServerSettings(serverSettings)}. Each system warmed up for ${systemWarmupMs / 1000} s before its first run (the mixes in turn at ${systemWarmupClients} clients, not measured); window ${durationMs / 1000} s per run after ${warmupMs / 1000} s of ramp; ${workers} load workers; clients sent ${entryDescription()}; latencies in ms; worst 1 s p99: the highest p99 of the requests that started in any one second of the window (of seconds with 100 or more), strongroom's/etcd's, far above the window's p99 when a few seconds stalled (every second is in results.json, latencyBySecond); CPU: seconds of all three server processes per 1,000 operations, and of each strongroom node (n1/n2/n3; the leader at the start: ${strongroomLeaderId ?? "none answered"}); RSS: each node at the end of the run, and the most it held over the window (read every second; every reading is in results.json); gen cores: the load generator's own CPU; machine busy: the share of the window the machine's cores were not idle (every process and the kernel), strongroom's run/etcd's; sr loop run/wait: for each strongroom node, the share of the window its event loop's thread ran, and waited runnable for a core (/proc/<pid>/schedstat): a loop that waits about as long as it runs is held up by the other processes on the cores; switches/op: the context switches of every thread of the three server processes over the window, per operation (/proc/<pid>/task/*/status), strongroom's/etcd's: the wake-ups an operation cost, which batches share; sr GC ms/s: for each strongroom node, the milliseconds per second of the window its event loop was paused by the garbage collector, for mark-compacts (their final pauses and incremental marking steps) / for scavenges (its /metrics, nodejs_gc_duration_seconds; by kind in results.json, gcPausesByNode); sr batch log/audit: for each strongroom node, the entries it applied per Raft log write / the entries per audit write, over the window: what a write's fixed costs (a disk write, a thread-pool trip, a message) are shared by; sr raft msgs/op: the Raft messages each node received per operation (its /metrics; the counts in results.json, batchingByNode).`,
    "",
  ];
  const groups = new Map<string, Cell[]>();
  for (const cell of cells) {
    const name = `${cell.valueBytes} B, ${cell.mix}, ${cell.mode === "closed" ? "closed loop" : "open loop"}`;
    groups.set(name, [...(groups.get(name) ?? []), cell]);
  }
  for (const [name, group] of groups) {
    const lines: string[][] = [];
    const loads = [
      ...new Set(group.map((cell) => (cell.mode === "closed" ? cell.concurrency : cell.ratePerSecond))),
    ];
    for (const load of loads) {
      const of = (system: SystemName) =>
        group.find(
          (cell) =>
            cell.system === system &&
            (cell.mode === "closed" ? cell.concurrency : cell.ratePerSecond) === load,
        )?.result;
      // A run of one system (--systems) shows its side, and "-" for the other's and the ratio.
      const sr = of("strongroom");
      const et = of("etcd");
      const each = (read: (result: RunResult) => string): [string, string] => [
        sr === undefined ? "-" : read(sr),
        et === undefined ? "-" : read(et),
      ];
      const [srOps, etOps] = each((result) => String(Math.round(result.opsPerSecond)));
      const [srGenerator, etGenerator] = each((result) => result.generatorCores.toFixed(2));
      lines.push([
        group[0]?.mode === "closed" ? `${load} clients` : `${load}/s`,
        srOps,
        etOps,
        sr === undefined || et === undefined ? "-" : ratio(sr.opsPerSecond, et.opsPerSecond),
        ...each((result) => ms(result.p50Ms)),
        ...each((result) => ms(result.p99Ms)),
        ...each((result) => ms(result.p999Ms)),
        each((result) => ms(result.worstSecondP99Ms)).join("/"),
        ...each((result) => result.serverCpuPer1000.toFixed(2)),
        sr === undefined ? "-" : sr.serverCpuPer1000ByNode.map((seconds) => seconds.toFixed(2)).join("/"),
        ...each((result) => result.rssMiB.join("/")),
        ...each((result) => result.rssPeakMiB.join("/")),
        `${srGenerator}/${etGenerator}`,
        each((result) => String(Math.round(result.machineBusy * 100))).join("/"),
        sr === undefined
          ? "-"
          : sr.mainThreadRun
              .map((run, i) => `${Math.round(run * 100)}/${Math.round((sr.mainThreadWait[i] ?? 0) * 100)}`)
              .join(" "),
        each((result) =>
          result.switchesPerOpByNode.reduce((sum, switches) => sum + switches, 0).toFixed(1),
        ).join("/"),
        sr?.gcPausesByNode == null
          ? "-"
          : sr.gcPausesByNode.map((pauses) => gcPauseColumn(pauses, durationMs / 1000)).join(" "),
        sr?.batchingByNode == null ? "-" : sr.batchingByNode.map(batchingColumn).join(" "),
        sr?.batchingByNode == null
          ? "-"
          : sr.batchingByNode
              .map((batching) => (sr.ops === 0 ? 0 : batching.raftMessagesReceived / sr.ops).toFixed(2))
              .join(" "),
      ]);
    }
    process.stdout.write(`\n${name}\n`);
    printTable(header, lines);
    markdown.push(`## ${name}`, "", `| ${header.join(" | ")} |`, `|${header.map(() => " ---: ").join("|")}|`);
    for (const line of lines) markdown.push(`| ${line.join(" | ")} |`);
    markdown.push("");
  }
  writeFileSync(
    join(out, "results.json"),
    JSON.stringify(
      {
        etcdVersion,
        durationMs,
        warmupMs,
        systemWarmupMs,
        workers,
        entry,
        sdkReadRouting: entry === "sdk" ? sdkReadRouting : null,
        ...serverSettings,
        strongroomLeaderId,
        cells,
      },
      null,
      2,
    ),
  );
  const at = (system: SystemName, mix: string) =>
    cells.find(
      (c) =>
        c.system === system &&
        c.valueBytes === 256 &&
        c.mix === mix &&
        c.mode === "closed" &&
        c.concurrency === 64,
    )?.result;
  const [srWrite, etWrite, srRead, etRead] = [
    at("strongroom", "write"),
    at("etcd", "write"),
    at("strongroom", "read"),
    at("etcd", "read"),
  ];
  const summary =
    srWrite && etWrite && srRead && etRead
      ? `vs-etcd: write ${(srWrite.opsPerSecond / etWrite.opsPerSecond).toFixed(2)}x, read ${(srRead.opsPerSecond / etRead.opsPerSecond).toFixed(2)}x, write-p99 ${(srWrite.p99Ms / etWrite.p99Ms).toFixed(2)}x`
      : systems.length < 2
        ? `vs-etcd: no ratio, only ${systems.join(",")} ran`
        : "vs-etcd: the 64-client 256 B runs are missing";
  markdown.push(summary, "");
  writeFileSync(join(out, "results.md"), markdown.join("\n"));
  process.stdout.write(`\nresults: ${join(out, "results.json")}, ${join(out, "results.md")}\n${summary}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench:vs-etcd: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
