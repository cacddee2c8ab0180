// The linearizability checker on hand-made histories whose verdict is known, on unknown outcomes,
// on its budget, and on large seeded random histories that are linearizable by construction.

import { describe, expect, it } from "vitest";
import { checkLinearizability, type RegisterOperation, registerModel } from "../../chaos/checker/index.js";
import { SeededRandom } from "../../raft/core/index.js";

let nextId = 1;
function op(
  client: number,
  input: RegisterOperation["input"],
  output: RegisterOperation["output"],
  call: number,
  ret: number,
): RegisterOperation {
  return { id: nextId++, client, input, output, call, return: ret };
}
const put = (key: string, value: string) => ({ kind: "put", key, value }) as const;
const get = (key: string) => ({ kind: "get", key }) as const;
const cas = (key: string, expected: string | null, value: string) =>
  ({ kind: "cas", key, expected, value }) as const;

describe("linearizability checker", () => {
  it("accepts a sequential history that follows the register's rules", () => {
    const history = [
      op(0, put("k", "1"), null, 1, 2),
      op(0, get("k"), "1", 3, 4),
      op(0, cas("k", "1", "2"), true, 5, 6),
      op(0, get("k"), "2", 7, 8),
    ];
    expect(checkLinearizability(registerModel, history).result).toBe("linearizable");
  });

  it("accepts concurrent operations that can be ordered within their intervals", () => {
    // The read overlaps both writes; it may see either.
    const history = [
      op(0, put("k", "a"), null, 1, 4),
      op(1, put("k", "b"), null, 2, 5),
      op(2, get("k"), "a", 3, 6),
    ];
    expect(checkLinearizability(registerModel, history).result).toBe("linearizable");
  });

  it("rejects a stale read: a read that starts after a write finished must see it", () => {
    const history = [
      op(0, put("k", "1"), null, 1, 2),
      op(0, put("k", "2"), null, 3, 4),
      op(1, get("k"), "1", 5, 6),
    ];
    const verdict = checkLinearizability(registerModel, history);
    expect(verdict.result).toBe("not-linearizable");
    expect(verdict.result === "not-linearizable" && verdict.partition).toBe("k");
  });

  it("rejects a read of a value nobody wrote", () => {
    expect(checkLinearizability(registerModel, [op(0, get("k"), "ghost", 1, 2)]).result).toBe(
      "not-linearizable",
    );
  });

  it("rejects a compare-and-set whose answer contradicts the state", () => {
    const history = [op(0, put("k", "1"), null, 1, 2), op(0, cas("k", "1", "2"), false, 3, 4)];
    expect(checkLinearizability(registerModel, history).result).toBe("not-linearizable");
  });

  it("lets a write with an unknown outcome have happened (a later read sees it)", () => {
    const history = [
      op(0, put("k", "1"), null, 1, 2),
      op(1, put("k", "2"), undefined, 3, Infinity),
      op(2, get("k"), "2", 5, 6),
    ];
    expect(checkLinearizability(registerModel, history).result).toBe("linearizable");
  });

  it("lets a write with an unknown outcome not have happened (later reads never see it)", () => {
    const history = [
      op(0, put("k", "1"), null, 1, 2),
      op(1, put("k", "2"), undefined, 3, Infinity),
      op(2, get("k"), "1", 5, 6),
    ];
    expect(checkLinearizability(registerModel, history).result).toBe("linearizable");
  });

  it("does not let an unknown write take effect before it was called", () => {
    const history = [op(2, get("k"), "2", 1, 2), op(1, put("k", "2"), undefined, 3, Infinity)];
    expect(checkLinearizability(registerModel, history).result).toBe("not-linearizable");
  });

  it("does not let an unknown write flip back and forth (it happens once or never)", () => {
    const history = [
      op(0, put("k", "1"), null, 1, 2),
      op(1, put("k", "2"), undefined, 3, Infinity),
      op(2, get("k"), "2", 4, 5),
      op(0, put("k", "3"), null, 6, 7),
      op(2, get("k"), "2", 8, 9),
    ];
    expect(checkLinearizability(registerModel, history).result).toBe("not-linearizable");
  });

  it("checks keys independently and names the one that fails", () => {
    const history = [
      op(0, put("a", "1"), null, 1, 2),
      op(1, get("a"), "1", 3, 4),
      op(0, put("b", "1"), null, 5, 6),
      op(0, put("b", "2"), null, 7, 8),
      op(1, get("b"), "1", 9, 10),
    ];
    const verdict = checkLinearizability(registerModel, history);
    expect(verdict).toMatchObject({ result: "not-linearizable", partition: "b" });
  });

  it("answers unknown, not a guess, when the step budget runs out", () => {
    const history = Array.from({ length: 12 }, (_, i) => op(i, put("k", `v${i}`), null, 1, 100));
    history.push(op(20, get("k"), "none-of-them", 101, 102));
    const verdict = checkLinearizability(registerModel, history, { stepsMax: 50 });
    expect(verdict.result).toBe("unknown");
    expect(verdict.result === "unknown" && verdict.reason).toMatch(/budget of 50 steps/);
  });

  it("refuses malformed operations with a clear error", () => {
    expect(() => checkLinearizability(registerModel, [op(0, get("k"), null, 5, 5)])).toThrow(
      /call 5 must be before return 5/,
    );
    expect(() => checkLinearizability(registerModel, [op(0, put("k", "1"), null, 1, Infinity)])).toThrow(
      /unknown outcome cannot have an output/,
    );
  });

  it("accepts large random histories that are linearizable by construction, quickly", () => {
    // Each operation takes effect at a random instant inside its interval, so a linearization exists.
    const seed = Number(process.env.CHECKER_SEED ?? 20261127);
    const random = new SeededRandom(seed);
    const history: RegisterOperation[] = [];
    const value = new Map<string, string | null>();
    let time = 0;
    const clients = 8;
    const busyUntil = new Array<number>(clients).fill(0);
    for (let i = 0; i < 2000; i++) {
      time += 1 + random.nextInt(3);
      const client = random.nextInt(clients);
      const call = Math.max(time - random.nextInt(5), (busyUntil[client] ?? 0) + 1);
      const at = Math.max(call, time);
      const ret = at + random.nextInt(5) + 1;
      busyUntil[client] = ret;
      const key = random.pick(["x", "y", "z"]);
      const current = value.get(key) ?? null;
      const roll = random.nextInt(3);
      if (roll === 0) {
        value.set(key, `v${i}`);
        history.push(op(client, put(key, `v${i}`), null, call * 10, ret * 10 + 1));
      } else if (roll === 1) {
        history.push(op(client, get(key), current, call * 10, ret * 10 + 1));
      } else {
        const expected = random.chance(0.5) ? current : "other";
        if (expected === current) value.set(key, `v${i}`);
        history.push(op(client, cas(key, expected, `v${i}`), expected === current, call * 10, ret * 10 + 1));
      }
      time = at;
    }
    const verdict = checkLinearizability(registerModel, history);
    expect(verdict.result, `seed ${seed} (replay with CHECKER_SEED=${seed})`).toBe("linearizable");
  });
});
