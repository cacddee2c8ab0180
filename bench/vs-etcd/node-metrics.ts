// One reading of a strongroom node's /metrics at a window's edge: its GC pauses (gc-pauses.ts)
// and its batching counters (batching.ts), from one request.

import { MetricsText } from "../../chaos/metrics-text.js";
import { type BatchCounters, batchCountersIn } from "./batching.js";
import { type GcPauses, gcPausesIn } from "./gc-pauses.js";

export interface NodeMetrics {
  readonly gc: GcPauses;
  readonly batching: BatchCounters;
}

/** A node's figures so far, read from its /metrics address. */
export async function readNodeMetrics(metricsUrl: string): Promise<NodeMetrics> {
  const response = await fetch(metricsUrl, { signal: AbortSignal.timeout(2000) });
  if (!response.ok) throw new Error(`${metricsUrl} answered ${response.status}`);
  const text = await response.text();
  // Every Node process reports its pauses: a text without them is not a node's /metrics.
  if (!text.includes("nodejs_gc_duration_seconds"))
    throw new Error(`${metricsUrl} reports no nodejs_gc_duration_seconds`);
  const metrics = MetricsText.parse(text);
  return { gc: gcPausesIn(metrics), batching: batchCountersIn(metrics) };
}
