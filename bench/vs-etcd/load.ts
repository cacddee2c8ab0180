// The load on one system: worker threads (so that the generator is not the bottleneck on its own
// event loop) that a `LoadGenerator` starts once and gives every run of the benchmark, each run's
// load split over them; the servers' CPU and memory and the generator's own CPU sampled around the
// measured window, and the latencies merged into percentiles. The workers outlive a run because a
// fresh thread's code is cold: with new workers each run and 2 s of warm-up, the generator took a
// third more CPU over the window than warmed ones, CPU the servers on the same cores then lacked
// (docs/performance.md, sixty-third session).

import { Worker } from "node:worker_threads";
import { type Batching, batchingBetween } from "./batching.js";
import { type GcPauses, gcPausesBetween } from "./gc-pauses.js";
import { latencyBySecond, nearestRank, type SecondLatency } from "./latency-by-second.js";
import type { WorkerJob, WorkerMessage, WorkerResult, WorkerSetup } from "./load-worker.js";
import { type NodeMetrics, readNodeMetrics } from "./node-metrics.js";
import {
  busyShare,
  contextSwitches,
  cpuSeconds,
  machineTicks,
  mainThreadSchedule,
  rssMiB,
  type ThreadSchedule,
} from "./process-stats.js";
import type { TargetSpec } from "./targets.js";

/** One run: its load, its window, and whose CPU and memory to read. */
export interface RunSpec {
  /** The server processes, for their CPU and memory. */
  readonly serverPids: readonly number[];
  /**
   * The servers' /metrics addresses, in the order of `serverPids`, for their GC pauses and their
   * batching: strongroom nodes'; null for etcd.
   */
  readonly metricsUrls: readonly string[] | null;
  readonly mode: "closed" | "open";
  readonly concurrency: number;
  readonly ratePerSecond: number;
  readonly readFraction: number;
  readonly valueBytes: number;
  readonly keys: number;
  readonly warmupMs: number;
  readonly durationMs: number;
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
  /** The latencies of the requests that started in each second of the window. */
  readonly latencyBySecond: SecondLatency[];
  /** The highest p99 of any one second (of those with at least 100 requests; 0 if none had). */
  readonly worstSecondP99Ms: number;
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
  /**
   * Context switches of every thread of each server process over the window, per operation: the
   * wake-ups (and preemptions) a call cost, which batching shares among the calls of a batch.
   */
  readonly switchesPerOpByNode: number[];
  /**
   * Each server's GC pauses over the window, by kind: null when `metricsUrls` was, or when a
   * node's /metrics could not be read at an edge (said on stderr; the run's other figures stand).
   */
  readonly gcPausesByNode: GcPauses[] | null;
  /** Each server's log and audit writes, entries and Raft messages over the window; null as above. */
  readonly batchingByNode: Batching[] | null;
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

/** Requests a second must hold for its own p99 to count (fewer: the p99 is the slowest one or two). */
const secondP99RequestsMin = 100;

/** How often the servers' memory is read over a window (one /proc read per process). */
const rssSampleMs = 1000;

const workerUrl = new URL("./load-worker-entry.mjs", import.meta.url);

/** One worker thread and the job it runs, if any. */
interface LoadWorker {
  readonly thread: Worker;
  job: { resolve: (result: WorkerResult) => void; reject: (error: Error) => void } | null;
  /** Why the thread ended or failed, once it has: no job is given to it then. */
  failure: Error | null;
}

/** How long a worker may take to close its connections and end before it is terminated. */
const workerCloseMs = 5000;

/** The worker threads that load one system, connected once, run after run. */
export class LoadGenerator {
  private readonly workers: LoadWorker[];

  constructor(target: TargetSpec, workerCount: number) {
    this.workers = Array.from({ length: workerCount }, (_, index) => {
      const setup: WorkerSetup = { target, index };
      const worker: LoadWorker = {
        thread: new Worker(workerUrl, { workerData: setup }),
        job: null,
        failure: null,
      };
      const fail = (error: Error) => {
        worker.failure ??= error;
        worker.job?.reject(error);
        worker.job = null;
      };
      worker.thread.on("message", (result: WorkerResult) => {
        worker.job?.resolve(result);
        worker.job = null;
      });
      worker.thread.on("error", fail);
      worker.thread.on("exit", (code) => fail(new Error(`a load worker exited with ${code}`)));
      return worker;
    });
  }

  /** One run: the load split over as many workers as it needs, measured over its window. */
  async run(spec: RunSpec): Promise<RunResult> {
    // Workers get their jobs now and begin together a little later.
    const startAt = Date.now() + 500;
    const count = Math.max(
      1,
      Math.min(this.workers.length, spec.mode === "closed" ? spec.concurrency : this.workers.length),
    );
    const results = this.workers.slice(0, count).map((worker, index) => {
      const job: WorkerJob = {
        mode: spec.mode,
        concurrency: Math.floor(spec.concurrency / count) + (index < spec.concurrency % count ? 1 : 0),
        ratePerSecond: spec.ratePerSecond / count,
        readFraction: spec.readFraction,
        valueBytes: spec.valueBytes,
        keys: spec.keys,
        startAt,
        warmupMs: spec.warmupMs,
        durationMs: spec.durationMs,
        seed: spec.seed * 7919 + index + 1,
        inFlightMax: 20_000,
      };
      return new Promise<WorkerResult>((resolve, reject) => {
        if (worker.failure !== null) return reject(worker.failure);
        if (worker.job !== null) return reject(new Error("a load worker was given a job while running one"));
        worker.job = { resolve, reject };
        worker.thread.postMessage({ job } satisfies WorkerMessage);
      });
    });
    // Settled together from now on, so that a worker failing early is not an unhandled rejection.
    const settled = Promise.all(results);
    settled.catch(() => {});
    // CPU sampled at the window's edges (the warm-up is not counted).
    const windowStart = startAt + spec.warmupMs;
    await sleepUntil(windowStart);
    // Asked for now, awaited after the /proc readings: an HTTP round trip to each node must not
    // move the window's CPU readings off its edge.
    const metricsBeforeReading = readAllNodeMetrics(spec.metricsUrls);
    const serverCpuBefore = spec.serverPids.map((pid) => cpuSeconds(pid));
    const selfBefore = cpuSeconds("self");
    const machineBefore = machineTicks();
    const scheduleBefore = spec.serverPids.map((pid) => mainThreadSchedule(pid));
    const switchesBefore = spec.serverPids.map((pid) => contextSwitches(pid));
    const metricsBefore = await metricsBeforeReading;
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
    const switchesAfter = spec.serverPids.map((pid) => contextSwitches(pid));
    const metricsAfter = await readAllNodeMetrics(spec.metricsUrls);
    sampleRss();
    const rss = rssSamples.at(-1)?.mib ?? [];
    const rssPeak = spec.serverPids.map((_, i) =>
      Math.max(...rssSamples.map((sample) => sample.mib[i] ?? 0)),
    );
    const finished = await settled;

    const total = finished.reduce((sum, result) => sum + result.latencies.length, 0);
    const latencies = new Float64Array(total);
    let offset = 0;
    for (const result of finished) {
      latencies.set(result.latencies, offset);
      offset += result.latencies.length;
    }
    latencies.sort();
    const bySecond = latencyBySecond(finished, spec.durationMs);
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
      p50Ms: nearestRank(latencies, 50),
      p99Ms: nearestRank(latencies, 99),
      p999Ms: nearestRank(latencies, 99.9),
      latencyBySecond: bySecond,
      worstSecondP99Ms: Math.max(
        0,
        ...bySecond.filter((second) => second.count >= secondP99RequestsMin).map((second) => second.p99Ms),
      ),
      serverCpuPer1000: per1000(serverCpu),
      serverCpuPer1000ByNode: serverCpuByNode.map(per1000),
      generatorCores: (selfAfter - selfBefore) / windowSeconds,
      machineBusy: busyShare(machineBefore, machineAfter),
      mainThreadRun: shareOfWindow((schedule) => schedule.runSeconds),
      mainThreadWait: shareOfWindow((schedule) => schedule.waitSeconds),
      switchesPerOpByNode: switchesAfter.map((after, i) =>
        total === 0 ? 0 : Math.max(0, after - (switchesBefore[i] ?? 0)) / total,
      ),
      gcPausesByNode:
        metricsBefore === null || metricsAfter === null
          ? null
          : metricsAfter.map((after, i) => gcPausesBetween((metricsBefore[i] ?? after).gc, after.gc)),
      batchingByNode:
        metricsBefore === null || metricsAfter === null
          ? null
          : metricsAfter.map((after, i) =>
              batchingBetween((metricsBefore[i] ?? after).batching, after.batching),
            ),
      rssMiB: rss,
      rssPeakMiB: rssPeak,
      rssSamples,
    };
  }

  /** Closes every worker's connections and ends the threads (terminated after 5 s). */
  async close(): Promise<void> {
    await Promise.all(
      this.workers.map(async (worker) => {
        if (worker.failure !== null) return;
        const exited = new Promise((resolve) => worker.thread.once("exit", resolve));
        worker.thread.postMessage({ close: true } satisfies WorkerMessage);
        const timer = setTimeout(() => void worker.thread.terminate(), workerCloseMs);
        await exited;
        clearTimeout(timer);
      }),
    );
  }
}

/**
 * Every server's /metrics figures so far, read together; null without addresses, or when one
 * cannot be read (a node too busy to answer in time): a cell of a long matrix loses its GC and
 * batching columns, not its run.
 */
async function readAllNodeMetrics(urls: readonly string[] | null): Promise<NodeMetrics[] | null> {
  if (urls === null) return null;
  try {
    return await Promise.all(urls.map((url) => readNodeMetrics(url)));
  } catch (error) {
    process.stderr.write(
      `load: no /metrics figures for this run: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    return null;
  }
}

function sleepUntil(at: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));
}
