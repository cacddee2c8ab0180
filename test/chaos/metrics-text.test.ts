// The /metrics reader the chaos harness, the benchmarks and the cluster tests share
// (chaos/metrics-text.ts): read from what prom-client, the library behind a node's /metrics,
// writes, and from lines it would never write.

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { expect, it } from "vitest";
import { MetricsText } from "../../chaos/metrics-text.js";

it("reads prom-client's counters, gauges and histograms, matching labels in any order", async () => {
  const registry = new Registry();
  const messages = new Counter({
    name: "test_messages_total",
    help: "Messages.",
    labelNames: ["direction", "type"],
    registers: [registry],
  });
  messages.inc({ direction: "received", type: "append" }, 5);
  messages.inc({ type: "heartbeat", direction: "received" }, 2);
  messages.inc({ direction: "sent", type: "append" }, 7);
  new Gauge({ name: "test_applied_index", help: "Applied.", registers: [registry] }).set(42);
  const writes = new Histogram({
    name: "test_write_seconds",
    help: "Writes.",
    buckets: [0.001, 0.01],
    registers: [registry],
  });
  writes.observe(0.0005);
  writes.observe(0.5);

  const metrics = MetricsText.parse(await registry.metrics());
  expect(metrics.sum("test_messages_total", { direction: "received" })).toBe(7);
  expect(metrics.sum("test_messages_total", { type: "append", direction: "sent" })).toBe(7);
  expect(metrics.sum("test_messages_total")).toBe(14);
  expect(metrics.value("test_applied_index")).toBe(42);
  expect(metrics.value("test_write_seconds_count")).toBe(2);
  expect(metrics.value("test_write_seconds_sum")).toBeCloseTo(0.5005);
  expect(metrics.samples("test_write_seconds_bucket", { le: "+Inf" })).toEqual([
    { labels: { le: "+Inf" }, value: 2 },
  ]);
  // A labelled series has no unlabelled value; a series not reported yet sums to zero.
  expect(metrics.value("test_messages_total")).toBeUndefined();
  expect(metrics.sum("test_not_reported_total")).toBe(0);
  expect(metrics.value("test_not_reported_total")).toBeUndefined();
});

it("keeps a label value with an escaped quote, backslash or newline whole", async () => {
  const registry = new Registry();
  const calls = new Counter({
    name: "test_calls_total",
    help: "Calls.",
    labelNames: ["path"],
    registers: [registry],
  });
  const path = 'kv/a "quoted" \\ name\nsecond line';
  calls.inc({ path }, 3);
  calls.inc({ path: "kv/plain" }, 1);

  const metrics = MetricsText.parse(await registry.metrics());
  expect(metrics.sum("test_calls_total", { path })).toBe(3);
  expect(metrics.sum("test_calls_total", { path: "kv/plain" })).toBe(1);
});

it("skips comments, malformed lines and a series whose name only begins like another's", () => {
  const metrics = MetricsText.parse(
    [
      "# HELP test_depth Depth.",
      "# TYPE test_depth gauge",
      "test_depth 3",
      "test_depth_max 9",
      "test_depth{broken 4",
      'test_depth{kind="x"}5',
      'test_depth{kind="x",} 6',
      "test_depth not-a-number",
      "test_depth 7 1700000000000",
      "",
      "test_ratio NaN",
      "test_ratio +Inf",
    ].join("\n"),
  );
  expect(metrics.samples("test_depth")).toEqual([
    { labels: {}, value: 3 },
    { labels: { kind: "x" }, value: 6 },
    { labels: {}, value: 7 },
  ]);
  expect(metrics.value("test_depth_max")).toBe(9);
  // A value that is not a number adds nothing to a sum.
  expect(metrics.samples("test_ratio").map((sample) => sample.value)).toEqual([
    Number.NaN,
    Number.POSITIVE_INFINITY,
  ]);
  expect(metrics.sum("test_ratio")).toBe(0);
});
