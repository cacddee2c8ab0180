// The garbage collector's pauses in a strongroom node over a window, from the node's /metrics
// (prom-client's `nodejs_gc_duration_seconds`, one series per kind: minor for V8's scavenges of
// the young generation, major for a mark-compact's final pause, incremental for its marking steps
// on the event loop before that). Each pause holds the event loop, so every call in flight on the
// node waits it out: a cell's tail can be told from its queueing by comparing the two
// (docs/performance.md, sixty-sixth session).

import type { MetricsText } from "../../chaos/metrics-text.js";

/** The GC kinds prom-client reports (perf_hooks' entries): pauses of the node's main thread. */
export const gcKinds = ["minor", "major", "incremental", "weakcb"] as const;
export type GcKind = (typeof gcKinds)[number];

/** Pauses of one kind: how many, and their seconds in all. */
export interface GcPause {
  readonly count: number;
  readonly seconds: number;
}

export type GcPauses = Record<GcKind, GcPause>;

/**
 * The pauses so far, by kind, from a node's /metrics. A kind the node has not paused for yet has
 * no series (prom-client adds one at its first pause): zero.
 */
export function gcPausesIn(metrics: MetricsText): GcPauses {
  return Object.fromEntries(
    gcKinds.map((kind) => [
      kind,
      {
        count: metrics.sum("nodejs_gc_duration_seconds_count", { kind }),
        seconds: metrics.sum("nodejs_gc_duration_seconds_sum", { kind }),
      },
    ]),
  ) as GcPauses;
}

/** The pauses between two readings of one node. */
export function gcPausesBetween(before: GcPauses, after: GcPauses): GcPauses {
  return Object.fromEntries(
    gcKinds.map((kind) => [
      kind,
      {
        count: after[kind].count - before[kind].count,
        seconds: after[kind].seconds - before[kind].seconds,
      },
    ]),
  ) as GcPauses;
}
