// One load-generator thread: connects to every endpoint of one system (or, with `viaSdk`, opens one
// strongroom SDK client, which routes each request itself), then from `startAt` runs
// its share of the workload - closed loop (a fixed number of requests in flight, each sent when the
// previous one answers) or open loop (requests sent at a fixed rate whatever the answers, latency
// counted from when each was due, so a stall is not hidden: no coordinated omission) - and reports
// the latency of every request that started in the measured window.

import { parentPort, workerData } from "node:worker_threads";
import { type Connection, connect, connectSdk, type TargetSpec } from "./targets.js";

export interface WorkerJob {
  readonly target: TargetSpec;
  readonly mode: "closed" | "open";
  /** Closed loop: requests this worker keeps in flight. */
  readonly concurrency: number;
  /** Open loop: requests per second this worker sends. */
  readonly ratePerSecond: number;
  /** The share of reads (0: writes only, 1: reads only, 0.9: the 90/10 mix). */
  readonly readFraction: number;
  readonly valueBytes: number;
  /** Keys k0 .. k<keys-1>, written beforehand so that reads find them. */
  readonly keys: number;
  /** Date.now() at which to begin; the window starts `warmupMs` later and lasts `durationMs`. */
  readonly startAt: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly seed: number;
  /** Which worker of the run this is (0, 1, ...): an SDK client's endpoint list starts there. */
  readonly index: number;
  /** Open loop: requests in flight at most; one due beyond it is counted as shed. */
  readonly inFlightMax: number;
}

export interface WorkerResult {
  /** Milliseconds, one per request that started in the window and succeeded. */
  readonly latencies: Float64Array;
  readonly errors: number;
  /** The first few error messages, to say what failed. */
  readonly errorSamples: string[];
  readonly shed: number;
}

const samplesMax = 4_000_000;
const deadlineMs = 10_000;

async function run(job: WorkerJob): Promise<WorkerResult> {
  // Through the SDK, one client stands for one application process: it routes every request.
  const connections: Connection[] = job.target.viaSdk
    ? [connectSdk(job.target, job.index)]
    : job.target.endpoints.map((endpoint) => connect(job.target, endpoint));
  const writeAt =
    job.target.writeEndpoint === null ? -1 : job.target.endpoints.indexOf(job.target.writeEndpoint);
  if (job.target.writeEndpoint !== null && writeAt < 0)
    throw new Error(`the write endpoint ${job.target.writeEndpoint} is not one of the endpoints`);
  let random = job.seed >>> 0 || 1;
  // xorshift32: fast and seeded; the key and the operation of each request.
  const next = () => {
    random ^= random << 13;
    random ^= random >>> 17;
    random ^= random << 5;
    return (random >>> 0) / 2 ** 32;
  };
  const value = new Uint8Array(job.valueBytes).map(() => Math.floor(next() * 256));
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  let errors = 0;
  let shed = 0;
  const errorSamples: string[] = [];
  let rotation = 0;
  const toMonotonic = (wall: number) => performance.now() + (wall - Date.now());
  const windowStart = toMonotonic(job.startAt + job.warmupMs);
  const windowEnd = windowStart + job.durationMs;
  const record = (intended: number, finished: number) => {
    if (intended < windowStart || intended >= windowEnd) return;
    if (count === latencies.length) {
      if (count >= samplesMax) return;
      const grown = new Float64Array(Math.min(samplesMax, count * 2));
      grown.set(latencies);
      latencies = grown;
    }
    latencies[count++] = finished - intended;
  };
  const fail = (intended: number, error: unknown) => {
    if (intended < windowStart || intended >= windowEnd) return;
    errors++;
    if (errorSamples.length < 5) errorSamples.push((error as Error).message ?? String(error));
  };
  const request = (): Promise<void> => {
    const connection = connections[rotation++ % connections.length] as Connection;
    const key = `k${Math.floor(next() * job.keys)}`;
    const deadline = Date.now() + deadlineMs;
    if (next() < job.readFraction) return connection.read(key, deadline);
    return (writeAt < 0 ? connection : (connections[writeAt] as Connection)).write(key, value, deadline);
  };

  await new Promise((resolve) => setTimeout(resolve, Math.max(0, job.startAt - Date.now())));
  if (job.mode === "closed") {
    const loop = async () => {
      while (performance.now() < windowEnd) {
        const started = performance.now();
        try {
          await request();
          record(started, performance.now());
        } catch (error) {
          fail(started, error);
        }
      }
    };
    await Promise.all(Array.from({ length: job.concurrency }, loop));
  } else {
    const intervalMs = 1000 / job.ratePerSecond;
    let due = performance.now();
    let inFlight = 0;
    const pending = new Set<Promise<void>>();
    await new Promise<void>((finish) => {
      const tick = () => {
        const now = performance.now();
        while (due <= now && due < windowEnd) {
          const intended = due;
          due += intervalMs;
          if (inFlight >= job.inFlightMax) {
            if (intended >= windowStart) shed++;
            continue;
          }
          inFlight++;
          const sent: Promise<void> = request().then(
            () => record(intended, performance.now()),
            (error: unknown) => fail(intended, error),
          );
          pending.add(sent);
          sent.finally(() => {
            inFlight--;
            pending.delete(sent);
          });
        }
        if (due < windowEnd) setTimeout(tick, Math.max(0, due - performance.now()));
        else finish();
      };
      tick();
    });
    await Promise.all(pending);
  }
  for (const connection of connections) connection.close();
  return { latencies: latencies.slice(0, count), errors, errorSamples, shed };
}

run(workerData as WorkerJob).then(
  (result) => parentPort?.postMessage(result, [result.latencies.buffer as ArrayBuffer]),
  (error: unknown) => {
    throw error;
  },
);
