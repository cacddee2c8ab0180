// Reads a node's /metrics: the Prometheus text exposition format (version 0.0.4), one sample per
// line, `name{label="value",...} value [timestamp]`, with `#` lines for HELP and TYPE. The chaos
// harness, the benchmarks and the cluster tests read counters and gauges from it; this is the one
// reader they share, so that a label's order, an escaped quote in a label value or a series whose
// name only begins like another's is handled alike everywhere.

/** One sample: its labels (none for a series without) and its value. */
export interface MetricSample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export class MetricsText {
  private constructor(private readonly series: ReadonlyMap<string, readonly MetricSample[]>) {}

  /** Parses an exposition; a line that is not a sample (a comment, a blank, a malformed one) is skipped. */
  static parse(text: string): MetricsText {
    const series = new Map<string, MetricSample[]>();
    for (const line of text.split("\n")) {
      const parsed = parseSampleLine(line);
      if (parsed === null) continue;
      const samples = series.get(parsed.name);
      if (samples === undefined) series.set(parsed.name, [parsed.sample]);
      else samples.push(parsed.sample);
    }
    return new MetricsText(series);
  }

  /** The samples of the series `name` (a histogram's are `name_count`, `name_sum`, `name_bucket`) whose labels include `labels`. */
  samples(name: string, labels: Readonly<Record<string, string>> = {}): MetricSample[] {
    const wanted = Object.entries(labels);
    return (this.series.get(name) ?? []).filter((sample) =>
      wanted.every(([label, value]) => sample.labels[label] === value),
    );
  }

  /** The sum of those samples' values; 0 when there are none (a series not reported yet). */
  sum(name: string, labels: Readonly<Record<string, string>> = {}): number {
    let total = 0;
    for (const sample of this.samples(name, labels)) if (Number.isFinite(sample.value)) total += sample.value;
    return total;
  }

  /** The value of the sample of `name` without labels (a gauge, a counter), or undefined. */
  value(name: string): number | undefined {
    return this.series.get(name)?.find((sample) => Object.keys(sample.labels).length === 0)?.value;
  }
}

const namePattern = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

function parseSampleLine(line: string): { name: string; sample: MetricSample } | null {
  const name = namePattern.exec(line)?.[0];
  if (name === undefined) return null;
  let at = name.length;
  const labels: Record<string, string> = {};
  if (line[at] === "{") {
    at = parseLabels(line, at + 1, labels);
    if (at < 0) return null;
  }
  if (line[at] !== " " && line[at] !== "\t") return null;
  const value = parseValue(line.slice(at).trim().split(/\s+/)[0] ?? "");
  if (value === null) return null;
  return { name, sample: { labels, value } };
}

/** Reads `label="value",...}` from `start` into `labels`; returns the index after the `}`, or -1. */
function parseLabels(line: string, start: number, labels: Record<string, string>): number {
  let at = start;
  for (;;) {
    if (line[at] === "}") return at + 1;
    const label = namePattern.exec(line.slice(at))?.[0];
    if (label === undefined || line[at + label.length] !== "=" || line[at + label.length + 1] !== '"')
      return -1;
    at += label.length + 2;
    let value = "";
    for (;;) {
      const char = line[at];
      if (char === undefined) return -1;
      at++;
      if (char === '"') break;
      if (char !== "\\") {
        value += char;
        continue;
      }
      const escaped = line[at++];
      if (escaped === "n") value += "\n";
      else if (escaped === "\\" || escaped === '"') value += escaped;
      else return -1;
    }
    labels[label] = value;
    if (line[at] === ",") at++;
    else if (line[at] !== "}") return -1;
  }
}

function parseValue(text: string): number | null {
  if (text === "+Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  if (text === "NaN") return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return null;
  return Number(text);
}
