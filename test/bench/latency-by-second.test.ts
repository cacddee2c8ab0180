// bench:vs-etcd's latencies second by second (bench/vs-etcd/latency-by-second.ts): what its
// "worst 1 s p99" column and results.json's latencyBySecond are made of.

import { expect, it } from "vitest";
import { latencyBySecond, nearestRank } from "../../bench/vs-etcd/latency-by-second.js";

/** `count` requests started evenly over [fromMs, toMs), each taking `latencyMs`. */
function requests(count: number, fromMs: number, toMs: number, latencyMs: (i: number) => number) {
  return {
    latencies: Float64Array.from({ length: count }, (_, i) => latencyMs(i)),
    startedAtMs: Float64Array.from({ length: count }, (_, i) => fromMs + ((toMs - fromMs) * i) / count),
  };
}

it("gives each second of the window the requests that started in it, from every worker", () => {
  const seconds = latencyBySecond(
    [
      // A first worker: a quiet first second, nothing in the second, a stall in the third.
      requests(100, 0, 1000, () => 2),
      requests(100, 2000, 3000, (i) => (i < 10 ? 400 : 3)),
      // A second worker's requests in the first second.
      requests(100, 0, 1000, () => 4),
    ],
    3000,
  );
  expect(seconds.map((second) => second.second)).toEqual([0, 1, 2]);
  expect(seconds.map((second) => second.count)).toEqual([200, 0, 100]);
  expect(seconds[0]).toMatchObject({ p50Ms: 2, p99Ms: 4, maxMs: 4 });
  expect(seconds[1]).toMatchObject({ p50Ms: 0, p99Ms: 0, maxMs: 0 });
  // The stall's ten slow requests are a tenth of that second: its p99 and max are theirs.
  expect(seconds[2]).toMatchObject({ p50Ms: 3, p99Ms: 400, maxMs: 400 });
});

it("counts a request due at the window's very end in its last second", () => {
  const seconds = latencyBySecond(
    [{ latencies: Float64Array.of(1, 9), startedAtMs: Float64Array.of(999.9, 1000) }],
    1000,
  );
  expect(seconds).toEqual([{ second: 0, count: 2, p50Ms: 1, p99Ms: 9, maxMs: 9 }]);
});

it("refuses latencies without their start times", () => {
  expect(() =>
    latencyBySecond([{ latencies: Float64Array.of(1, 2), startedAtMs: Float64Array.of(0) }], 1000),
  ).toThrow("2 latencies but 1 start times");
});

it("takes a percentile by nearest rank, as the window's p50, p99 and p99.9 are", () => {
  const hundred = Float64Array.from({ length: 100 }, (_, i) => i + 1);
  expect([50, 99, 99.9, 100].map((p) => nearestRank(hundred, p))).toEqual([50, 99, 100, 100]);
  expect(nearestRank(Float64Array.of(7), 99)).toBe(7);
  expect(nearestRank(new Float64Array(0), 99)).toBe(0);
});
