// The benchmark's reading of a node's GC pauses (bench/vs-etcd/gc-pauses.ts): prom-client's own
// `nodejs_gc_duration_seconds` series, as a strongroom node's /metrics serves them, parsed by kind;
// what bench:vs-etcd's "sr GC ms/s" column is made of.

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";
import { afterEach, expect, it } from "vitest";
import { type GcPauses, gcPausesBetween, gcPausesIn } from "../../bench/vs-etcd/gc-pauses.js";
import { readNodeMetrics } from "../../bench/vs-etcd/node-metrics.js";
import { MetricsText } from "../../chaos/metrics-text.js";

let server: Server | null = null;

afterEach(async () => {
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  server = null;
});

/** Serves `body` as /metrics on loopback; its address. */
async function serve(body: () => Promise<string>): Promise<string> {
  server = createServer((_, response) => {
    void body().then((text) => response.end(text));
  });
  await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
}

/**
 * Young garbage, a round at a time, until the node at `url` reports more scavenges than `beyond`:
 * how much it takes depends on the young generation's size (Node 24's is four times Node 20's).
 */
async function garbageUntilScavenged(url: string, beyond: number): Promise<GcPauses> {
  for (let round = 0; round < 100; round++) {
    const objects: { i: number; name: string }[] = [];
    for (let i = 0; i < 200_000; i++) objects.push({ i, name: `object ${i}` });
    expect(objects.length).toBe(200_000);
    // prom-client's PerformanceObserver hears of the pauses after this turn.
    await new Promise((resolve) => setTimeout(resolve, 10));
    const pauses = (await readNodeMetrics(url)).gc;
    if (pauses.minor.count > beyond) return pauses;
  }
  throw new Error(`${url} reported no more than ${beyond} scavenges after 100 rounds of garbage`);
}

it("reads a process's scavenges from prom-client's metrics, and the pauses between two readings", async () => {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const url = await serve(() => registry.metrics());
  const before = await garbageUntilScavenged(url, 0);
  expect(before.minor.seconds).toBeGreaterThan(0);
  const after = await garbageUntilScavenged(url, before.minor.count);
  const between = gcPausesBetween(before, after);
  expect(between.minor.count).toBeGreaterThan(0);
  expect(between.minor.seconds).toBeGreaterThan(0);
  for (const kind of ["major", "incremental", "weakcb"] as const) {
    expect(between[kind].count).toBeGreaterThanOrEqual(0);
    expect(between[kind].seconds).toBeGreaterThanOrEqual(0);
  }
});

it("takes each kind's sum and count whatever the order of the labels, and zero for a kind not seen yet", () => {
  const pauses = gcPausesIn(
    MetricsText.parse(
      [
        "# HELP nodejs_gc_duration_seconds Garbage collection duration by kind.",
        'nodejs_gc_duration_seconds_bucket{le="0.001",kind="minor"} 3',
        'nodejs_gc_duration_seconds_sum{kind="minor"} 0.0125',
        'nodejs_gc_duration_seconds_count{kind="minor"} 7',
        'nodejs_gc_duration_seconds_sum{node="n1",kind="major"} 0.04',
        'nodejs_gc_duration_seconds_count{node="n1",kind="major"} 2',
        'nodejs_gc_duration_seconds_sum{kind="incremental"} NaN',
      ].join("\n"),
    ),
  );
  expect(pauses.minor).toEqual({ count: 7, seconds: 0.0125 });
  expect(pauses.major).toEqual({ count: 2, seconds: 0.04 });
  expect(pauses.incremental).toEqual({ count: 0, seconds: 0 });
  expect(pauses.weakcb).toEqual({ count: 0, seconds: 0 });
});

it("names the address that serves no GC metrics, rather than reading no pauses", async () => {
  const url = await serve(async () => "process_cpu_seconds_total 1\n");
  await expect(readNodeMetrics(url)).rejects.toThrow(`${url} reports no nodejs_gc_duration_seconds`);
});
