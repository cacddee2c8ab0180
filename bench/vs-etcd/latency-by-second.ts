// A run's latencies second by second of its window: whether a high p99 comes from a few bad
// seconds (a stall: a snapshot, a compaction, a pause) or from every second alike (queueing).

/** The requests that started within one second of the window. */
export interface SecondLatency {
  /** Seconds into the window at which this second starts (0, 1, ...). */
  readonly second: number;
  /** Requests that started in it and succeeded. */
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Latencies (ms) and, for each, when its request started, in ms into the window. */
export interface TimedLatencies {
  readonly latencies: Float64Array;
  readonly startedAtMs: Float64Array;
}

/** The `p`th percentile (0-100) of `sorted` (ascending) by nearest rank, 0 for no values. */
export function nearestRank(sorted: Float64Array, p: number): number {
  return sorted.length === 0
    ? 0
    : (sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0);
}

/**
 * One entry per whole second of a `durationMs` window (a second with no request has count 0 and
 * zeros), from the requests of every worker. A request is counted in the second it started.
 */
export function latencyBySecond(runs: readonly TimedLatencies[], durationMs: number): SecondLatency[] {
  const seconds = Math.max(1, Math.ceil(durationMs / 1000));
  const buckets: number[][] = Array.from({ length: seconds }, () => []);
  for (const { latencies, startedAtMs } of runs) {
    if (latencies.length !== startedAtMs.length)
      throw new Error(`${latencies.length} latencies but ${startedAtMs.length} start times`);
    for (let i = 0; i < latencies.length; i++) {
      const second = Math.min(seconds - 1, Math.max(0, Math.floor((startedAtMs[i] ?? 0) / 1000)));
      buckets[second]?.push(latencies[i] ?? 0);
    }
  }
  return buckets.map((bucket, second) => {
    const sorted = Float64Array.from(bucket).sort();
    return {
      second,
      count: sorted.length,
      p50Ms: nearestRank(sorted, 50),
      p99Ms: nearestRank(sorted, 99),
      maxMs: sorted.at(-1) ?? 0,
    };
  });
}
