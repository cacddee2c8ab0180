// A map of independent registers, each with put, get and compare-and-set: the workload of the Raft
// simulator and of the chaos harness. Partitioned by key, since keys are independent objects.

import type { Model, Operation } from "./history.js";

export type RegisterInput =
  | { readonly kind: "put"; readonly key: string; readonly value: string }
  | { readonly kind: "get"; readonly key: string }
  | { readonly kind: "cas"; readonly key: string; readonly expected: string | null; readonly value: string };

/** put answers null, get the value (null when absent), cas whether it swapped. */
export type RegisterOutput = string | boolean | null;

export type RegisterOperation = Operation<RegisterInput, RegisterOutput>;

export const registerModel: Model<string | null, RegisterInput, RegisterOutput> = {
  name: "register-map",
  init: () => null,
  step(state, input, output) {
    switch (input.kind) {
      case "put":
        return input.value;
      case "get":
        return output === undefined || output === state ? state : undefined;
      case "cas": {
        const swapped = state === input.expected;
        if (output !== undefined && output !== swapped) return undefined;
        return swapped ? input.value : state;
      }
    }
  },
  stateKey: (state) => (state === null ? "\u0000" : `=${state}`),
  partition(operations) {
    const byKey = new Map<string, Operation<RegisterInput, RegisterOutput>[]>();
    for (const operation of operations) {
      const list = byKey.get(operation.input.key);
      if (list === undefined) byKey.set(operation.input.key, [operation]);
      else list.push(operation);
    }
    return byKey;
  },
  describe(operation) {
    const input = operation.input;
    const output = operation.output === undefined ? "?" : JSON.stringify(operation.output);
    const when = `[${operation.call}, ${operation.return === Infinity ? "∞" : operation.return}]`;
    switch (input.kind) {
      case "put":
        return `client ${operation.client} put(${input.key}, ${input.value}) → ${output} ${when}`;
      case "get":
        return `client ${operation.client} get(${input.key}) → ${output} ${when}`;
      case "cas":
        return `client ${operation.client} cas(${input.key}, ${JSON.stringify(input.expected)} → ${input.value}) → ${output} ${when}`;
    }
  },
};
