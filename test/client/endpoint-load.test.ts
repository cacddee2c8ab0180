// The balanced reads' choice, as pure logic with the clock given: peak-EWMA latency, cost by reads
// in flight, and the cheaper of two picked at random.

import { describe, expect, it } from "vitest";
import { cheaperOfTwo, EndpointLoad } from "../../client/endpoint-load.js";

describe("endpoint load", () => {
  it("takes a higher latency at once, and is pulled down by lower ones the more the longer between them", () => {
    const load = new EndpointLoad(0, 1000);
    load.observe(10, 0);
    expect(load.latencyMs(0)).toBe(10);
    load.observe(200, 1);
    // A node that slows down is dear from its first slow answer.
    expect(load.latencyMs(1)).toBe(200);
    // A fast answer right after moves it little; one after a long gap moves it most of the way.
    load.observe(5, 2);
    const soon = load.latencyMs(2);
    expect(soon).toBeGreaterThan(190);
    expect(soon).toBeLessThan(200);
    load.observe(5, 3002);
    expect(load.latencyMs(3002)).toBeLessThan(15);
    expect(load.latencyMs(3002)).toBeGreaterThanOrEqual(5);
  });

  it("decays toward zero while unused: after the decay time, to 1/e", () => {
    const load = new EndpointLoad(0, 1000);
    load.observe(100, 0);
    expect(load.latencyMs(1000)).toBeCloseTo(100 / Math.E, 6);
    expect(load.latencyMs(10_000)).toBeLessThan(0.01);
    // Reading the estimate changes nothing.
    expect(load.latencyMs(1000)).toBeCloseTo(100 / Math.E, 6);
  });

  it("costs its latency times the reads in flight plus one; nothing unused, busy and unknown more than any known", () => {
    const load = new EndpointLoad(0, 1000);
    expect(load.cost(0)).toBe(0);
    load.inFlight = 1;
    // No latency seen and a read out: dearer than a node known to take a minute with 100 reads out
    // (else every read started before its answer would come here), and dearer with each read more.
    const known = new EndpointLoad(0, 1000);
    known.observe(60_000, 0);
    known.inFlight = 100;
    expect(load.cost(0)).toBeGreaterThan(known.cost(0));
    const busier = new EndpointLoad(0, 1000);
    busier.inFlight = 2;
    expect(busier.cost(0)).toBeGreaterThan(load.cost(0));
    load.observe(4, 0);
    expect(load.cost(0)).toBe(8);
    load.inFlight = 3;
    expect(load.cost(0)).toBe(16);
  });
});

describe("the cheaper of two", () => {
  /** Randoms that pick each ordered pair of `n` candidates once, in turn. */
  function everyPair(n: number): Array<[number, number]> {
    const pairs: Array<[number, number]> = [];
    for (let first = 0; first < n; first++)
      for (let offset = 0; offset < n - 1; offset++) pairs.push([first / n, offset / (n - 1)]);
    return pairs;
  }

  it("over every pair: the cheapest wins each it is in, the dearest none", () => {
    const costs = new Map([
      ["a", 3],
      ["b", 1],
      ["c", 2],
    ]);
    const picked = new Map<string, number>();
    for (const [first, second] of everyPair(3)) {
      const draws = [first, second];
      const chosen = cheaperOfTwo(
        ["a", "b", "c"],
        (name) => costs.get(name) ?? 0,
        () => draws.shift() ?? 0,
      );
      picked.set(chosen, (picked.get(chosen) ?? 0) + 1);
    }
    // Six ordered pairs: b is in four, c beats a in two, a wins none.
    expect(Object.fromEntries(picked)).toEqual({ b: 4, c: 2 });
  });

  it("never picks one candidate twice as its pair, and takes the first picked on a tie", () => {
    for (const [first, second] of everyPair(4)) {
      const draws = [first, second];
      const seen: string[] = [];
      const chosen = cheaperOfTwo(
        ["a", "b", "c", "d"],
        (name) => {
          seen.push(name);
          return 1;
        },
        () => draws.shift() ?? 0,
      );
      expect(new Set(seen).size, `draws ${first}, ${second}`).toBe(2);
      expect(chosen).toBe(["a", "b", "c", "d"][Math.floor(first * 4)]);
    }
  });

  it("takes the only candidate, and refuses none", () => {
    expect(
      cheaperOfTwo(
        ["a"],
        () => 5,
        () => 0.9,
      ),
    ).toBe("a");
    expect(() =>
      cheaperOfTwo(
        [],
        () => 0,
        () => 0,
      ),
    ).toThrow(new RangeError("cheaperOfTwo: no candidates"));
  });
});
