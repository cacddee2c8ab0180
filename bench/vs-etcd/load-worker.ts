// One load-generator thread: connects to every endpoint of one system (or, with `viaSdk`, opens one
// strongroom SDK client, which routes each request itself) once, and keeps its connections and
// its warmed code for every run of the benchmark, as an application keeps its clients. For each
// job it is sent, it runs from `startAt` its share of the workload - closed loop (a fixed number of
// requests in flight, each sent when the previous one answers) or open loop (requests sent at a
// fixed rate whatever the answers, latency counted from when each was due, so a stall is not
// hidden: no coordinated omission) - and reports the latency of every request that started in the
// measured window. A `close` message closes its connections and ends the thread.

import { parentPort, workerData } from "node:worker_threads";
import { type Connection, connect, connectSdk, type TargetSpec } from "./targets.js";

/** What a worker is started with (its `workerData`). */
export interface WorkerSetup {
  readonly target: TargetSpec;
  /** Which worker of the generator this is (0, 1, ...): an SDK client's endpoint list starts there. */
  readonly index: number;
}

/** A message to a worker: run a job (it answers with a `WorkerResult`), or close. */
export type WorkerMessage = { readonly job: WorkerJob } | { readonly close: true };

export interface WorkerJob {
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
  /** Open loop: requests in flight at most; one due beyond it is counted as shed. */
  readonly inFlightMax: number;
}

export interface WorkerResult {
  /** Milliseconds, one per request that started in the window and succeeded. */
  readonly latencies: Float64Array;
  /** For each of `latencies`, when its request started (was due, in the open loop): ms into the window. */
  readonly startedAtMs: Float64Array;
  readonly errors: number;
  /** The first few error messages, to say what failed. */
  readonly errorSamples: string[];
  readonly shed: number;
}

const samplesMax = 4_000_000;
const deadlineMs = 10_000;

const setup = workerData as WorkerSetup;
// Through the SDK, one client stands for one application process: it routes every request.
const connections: Connection[] = setup.target.viaSdk
  ? [connectSdk(setup.target, setup.index)]
  : setup.target.endpoints.map((endpoint) => connect(setup.target, endpoint));
const writeAt =
  setup.target.writeEndpoint === null ? -1 : setup.target.endpoints.indexOf(setup.target.writeEndpoint);
if (setup.target.writeEndpoint !== null && writeAt < 0)
  throw new Error(`the write endpoint ${setup.target.writeEndpoint} is not one of the endpoints`);

async function run(job: WorkerJob): Promise<WorkerResult> {
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
  let startedAtMs = new Float64Array(1 << 16);
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
      const size = Math.min(samplesMax, count * 2);
      const grown = new Float64Array(size);
      grown.set(latencies);
      latencies = grown;
      const grownStarts = new Float64Array(size);
      grownStarts.set(startedAtMs);
      startedAtMs = grownStarts;
    }
    startedAtMs[count] = intended - windowStart;
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
  return {
    latencies: latencies.slice(0, count),
    startedAtMs: startedAtMs.slice(0, count),
    errors,
    errorSamples,
    shed,
  };
}

parentPort?.on("message", (message: WorkerMessage) => {
  if ("close" in message) {
    for (const connection of connections) connection.close();
    parentPort?.close();
    return;
  }
  run(message.job).then(
    (result) =>
      parentPort?.postMessage(result, [
        result.latencies.buffer as ArrayBuffer,
        result.startedAtMs.buffer as ArrayBuffer,
      ]),
    (error: unknown) => {
      throw error;
    },
  );
});
