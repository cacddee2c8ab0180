// The counterexample shrinker: from a long history with one stale read in it, it finds the few
// operations that show the violation - still not linearizable - and never leaves a read whose
// value's write it removed (which would invent a violation). Randomized, seeded: the seed is printed
// and a failure replays from it.

import { expect, it } from "vitest";
import {
  checkLinearizability,
  type RegisterOperation,
  registerModel,
  shrinkCounterexample,
} from "../../chaos/checker/index.js";
import { SeededRandom } from "../../raft/core/index.js";

/** A sequential history of puts and gets by 3 clients, then one read of an overwritten value. */
function historyWithStaleRead(seed: number): RegisterOperation[] {
  const random = new SeededRandom(seed);
  const operations: RegisterOperation[] = [];
  let time = 0;
  let value: string | null = null;
  const written: string[] = [];
  for (let id = 0; id < 300; id++) {
    const client = random.nextInt(3);
    const call = time + random.nextInt(3);
    const ret = call + 1 + random.nextInt(3);
    time = ret + 1;
    if (random.chance(0.5)) {
      value = `v${id}`;
      written.push(value);
      operations.push({
        id,
        client,
        input: { kind: "put", key: "k", value },
        output: null,
        call,
        return: ret,
      });
    } else {
      operations.push({ id, client, input: { kind: "get", key: "k" }, output: value, call, return: ret });
    }
  }
  // A read, after everything, of a value overwritten long ago.
  const stale = written[Math.floor(written.length / 3)] ?? null;
  operations.push({
    id: 999,
    client: 3,
    input: { kind: "get", key: "k" },
    output: stale,
    call: time + 10,
    return: time + 11,
  });
  return operations;
}

it("shrinks a long failing history to the few operations that show the violation", () => {
  const seed = Number(process.env.SHRINK_SEED ?? Date.now() % 100_000);
  console.log(`shrink seed ${seed} (replay: SHRINK_SEED=${seed})`);
  const history = historyWithStaleRead(seed);
  expect(checkLinearizability(registerModel, history).result).toBe("not-linearizable");
  const shrunk = shrinkCounterexample(history, { budgetMs: 20_000, stepsMax: 1_000_000 });
  expect(checkLinearizability(registerModel, shrunk).result, `seed ${seed}`).toBe("not-linearizable");
  // The stale read, the write it read, and a later write that overwrote it: three operations.
  expect(shrunk.length, `seed ${seed}`).toBeLessThanOrEqual(3);
  expect(shrunk.some((operation) => operation.id === 999)).toBe(true);
  // Every value read is written by an operation left in.
  for (const operation of shrunk) {
    if (operation.input.kind === "get" && operation.output !== null)
      expect(
        shrunk.some((other) => other.input.kind === "put" && other.input.value === operation.output),
        `seed ${seed}`,
      ).toBe(true);
  }
});

it("leaves a linearizable history as it is", () => {
  const history: RegisterOperation[] = [
    { id: 1, client: 1, input: { kind: "put", key: "k", value: "a" }, output: null, call: 0, return: 2 },
    { id: 2, client: 2, input: { kind: "get", key: "k" }, output: "a", call: 3, return: 4 },
  ];
  expect(shrinkCounterexample(history, { budgetMs: 1000, stepsMax: 1000 })).toEqual(history);
});
