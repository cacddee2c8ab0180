// One benchmark run against one system: the load split over worker threads (so the generator is
// not the bottleneck on its own event loop), the servers' CPU and memory and the generator's own
// CPU sampled around the measured window, and the latencies merged into percentiles.

import { Worker } from "node:worker_threads";
import type { WorkerJob, WorkerResult } from "./load-worker.js";
import {
  busyShare,
  cpuSeconds,
  machineTicks,
  mainThreadSchedule,
  rssMiB,
  type ThreadSchedule,
} from "./process-stats.js";
import type { TargetSpec } from "./targets.js";

export interface RunSpec {
  readonly target: TargetSpec;
  /** The server processes, for their CPU and memory. */
  readonly serverPids: readonly number[];
  readonly mode: "closed" | "open";
  readonly concurrency: number;
  readonly ratePerSecond: number;
  readonly readFraction: number;
  readonly valueBytes: number;
  readonly keys: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly workers: number;
  readonly seed: number;
}

export interface RunResult {
  readonly ops: number;
  readonly opsPerSecond: number;
  readonly errors: number;
  readonly errorSamples: string[];
  readonly shed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  /** CPU seconds all server processes spent per 1,000 operations. */
  readonly serverCpuPer1000: number;
  /** The same for each server process, in the order of `serverPids`: where the work is. */
  readonly serverCpuPer1000ByNode: number[];
  /** The load generator's own CPU over the window, in cores (1.0: one core busy). */
  readonly generatorCores: number;
  /** The share of the window the machine's cores were busy (every process and the kernel), 0 to 1. */
  readonly machineBusy: number;
  /**
   * For each server process, the share of the window its main thread ran, and waited runnable for a
   * core (0 to 1): a Node process's event loop; for etcd (Go, many threads) one thread of several.
   */
  readonly mainThreadRun: number[];
  readonly mainThreadWait: number[];
  /** Resident memory of each server process at the end, MiB. */
  readonly rssMiB: number[];
  /** The most each server process held at any sample over the window, MiB. */
  readonly rssPeakMiB: number[];
  /** Each server process's resident memory every `rssSampleMs` over the window: memory over time. */
  readonly rssSamples: RssSample[];
}

export interface RssSample {
  /** Since the window's start. */
  readonly atMs: number;
  readonly mib: number[];
}

/** How often the servers' memory is read over a window (one /proc read per process). */
const rssSampleMs = 1000;

const workerUrl = new URL("./load-worker-entry.mjs", import.meta.url);

export async function runLoad(spec: RunSpec): Promise<RunResult> {
  // Workers get their jobs now and begin together a little later (connections made first).
  const startAt = Date.now() + 500;
  const workers = Math.max(
    1,
    Math.min(spec.workers, spec.mode === "closed" ? spec.concurrency : spec.workers),
  );
  const jobs: WorkerJob[] = Array.from({ length: workers }, (_, index) => ({
    target: spec.target,
    mode: spec.mode,
    concurrency: Math.floor(spec.concurrency / workers) + (index < spec.concurrency % workers ? 1 : 0),
    ratePerSecond: spec.ratePerSecond / workers,
    readFraction: spec.readFraction,
    valueBytes: spec.valueBytes,
    keys: spec.keys,
    startAt,
    warmupMs: spec.warmupMs,
    durationMs: spec.durationMs,
    seed: spec.seed * 7919 + index + 1,
    index,
    inFlightMax: 20_000,
  }));
  const results = jobs.map(
    (job) =>
      new Promise<WorkerResult>((resolve, reject) => {
        const worker = new Worker(workerUrl, { workerData: job });
        worker.once("message", (result: WorkerResult) => resolve(result));
        worker.once("error", reject);
        worker.once("exit", (code) => {
          if (code !== 0) reject(new Error(`a load worker exited with ${code}`));
        });
      }),
  );
  // Settled together from now on, so that a worker failing early is not an unhandled rejection.
  const settled = Promise.all(results);
  settled.catch(() => {});
  // CPU sampled at the window's edges (the warm-up is not counted).
  const windowStart = startAt + spec.warmupMs;
  await sleepUntil(windowStart);
  const serverCpuBefore = spec.serverPids.map((pid) => cpuSeconds(pid));
  const selfBefore = cpuSeconds("self");
  const machineBefore = machineTicks();
  const scheduleBefore = spec.serverPids.map((pid) => mainThreadSchedule(pid));
  // Memory is sampled through the window, not only at its end: a node's can grow for minutes.
  const rssSamples: RssSample[] = [];
  const sampleRss = () =>
    rssSamples.push({
      atMs: Date.now() - windowStart,
      mib: spec.serverPids.map((pid) => Math.round(rssMiB(pid))),
    });
  sampleRss();
  const sampler = setInterval(sampleRss, rssSampleMs);
  await sleepUntil(windowStart + spec.durationMs);
  clearInterval(sampler);
  const serverCpuAfter = spec.serverPids.map((pid) => cpuSeconds(pid));
  const selfAfter = cpuSeconds("self");
  const machineAfter = machineTicks();
  const scheduleAfter = spec.serverPids.map((pid) => mainThreadSchedule(pid));
  sampleRss();
  const rss = rssSamples.at(-1)?.mib ?? [];
  const rssPeak = spec.serverPids.map((_, i) => Math.max(...rssSamples.map((sample) => sample.mib[i] ?? 0)));
  const finished = await settled;

  const total = finished.reduce((sum, result) => sum + result.latencies.length, 0);
  const latencies = new Float64Array(total);
  let offset = 0;
  for (const result of finished) {
    latencies.set(result.latencies, offset);
    offset += result.latencies.length;
  }
  latencies.sort();
  const percentile = (p: number) =>
    total === 0 ? 0 : (latencies[Math.min(total - 1, Math.ceil((p / 100) * total) - 1)] ?? 0);
  const serverCpuByNode = serverCpuAfter.map((after, i) => after - (serverCpuBefore[i] ?? 0));
  const serverCpu = serverCpuByNode.reduce((sum, seconds) => sum + seconds, 0);
  const per1000 = (seconds: number) => (total === 0 ? 0 : (seconds / total) * 1000);
  const windowSeconds = spec.durationMs / 1000;
  const shareOfWindow = (read: (schedule: ThreadSchedule) => number) =>
    scheduleAfter.map((after, i) => {
      const before = scheduleBefore[i];
      return before === undefined ? 0 : (read(after) - read(before)) / windowSeconds;
    });
  return {
    ops: total,
    opsPerSecond: total / (spec.durationMs / 1000),
    errors: finished.reduce((sum, result) => sum + result.errors, 0),
    errorSamples: finished.flatMap((result) => result.errorSamples).slice(0, 5),
    shed: finished.reduce((sum, result) => sum + result.shed, 0),
    p50Ms: percentile(50),
    p99Ms: percentile(99),
    p999Ms: percentile(99.9),
    serverCpuPer1000: per1000(serverCpu),
    serverCpuPer1000ByNode: serverCpuByNode.map(per1000),
    generatorCores: (selfAfter - selfBefore) / windowSeconds,
    machineBusy: busyShare(machineBefore, machineAfter),
    mainThreadRun: shareOfWindow((schedule) => schedule.runSeconds),
    mainThreadWait: shareOfWindow((schedule) => schedule.waitSeconds),
    rssMiB: rss,
    rssPeakMiB: rssPeak,
    rssSamples,
  };
}

function sleepUntil(at: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));
}
