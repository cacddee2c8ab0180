// The garbage collector's pauses in a strongroom node over a window, from the node's /metrics
// (prom-client's `nodejs_gc_duration_seconds`, one series per kind: minor for V8's scavenges of
// the young generation, major for a mark-compact's final pause, incremental for its marking steps
// on the event loop before that). Each pause holds the event loop, so every call in flight on the
// node waits it out: a cell's tail can be told from its queueing by comparing the two
// (docs/performance.md, sixty-sixth session).

/** The GC kinds prom-client reports (perf_hooks' entries): pauses of the node's main thread. */
export const gcKinds = ["minor", "major", "incremental", "weakcb"] as const;
export type GcKind = (typeof gcKinds)[number];

/** Pauses of one kind: how many, and their seconds in all. */
export interface GcPause {
  readonly count: number;
  readonly seconds: number;
}

export type GcPauses = Record<GcKind, GcPause>;

const seriesPattern = /^nodejs_gc_duration_seconds_(sum|count)\{([^}]*)\}\s+(\S+)$/gm;

/**
 * The pauses so far, by kind, from a /metrics text. A kind the node has not paused for yet has no
 * series (prom-client adds one at its first pause): zero.
 */
export function parseGcPauses(metrics: string): GcPauses {
  const found = new Map<string, { count: number; seconds: number }>();
  for (const [, field, labels, value] of metrics.matchAll(seriesPattern)) {
    const kind = /(?:^|,)kind="([^"]*)"/.exec(labels ?? "")?.[1];
    const number = Number(value);
    if (kind === undefined || !Number.isFinite(number)) continue;
    const pause = found.get(kind) ?? { count: 0, seconds: 0 };
    if (field === "sum") pause.seconds = number;
    else pause.count = number;
    found.set(kind, pause);
  }
  return Object.fromEntries(
    gcKinds.map((kind) => [kind, found.get(kind) ?? { count: 0, seconds: 0 }]),
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
