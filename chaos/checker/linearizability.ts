// Linearizability checking by the Wing–Gong algorithm with Lowe's just-in-time linearization and
// memoization (the approach of Porcupine and Knossos), written for strongroom. A history is
// linearizable if every operation can be placed at one instant between its call and its return so
// that the sequence obeys the model. Operations with an unknown outcome may take effect at any
// point after their call, or never. The search is exponential in the worst case, so it runs under a
// step budget and answers "unknown" when the budget runs out, never a guess.

import type { Model, Operation } from "./history.js";

export type LinearizabilityVerdict<Input, Output> =
  | { readonly result: "linearizable"; readonly steps: number }
  | {
      readonly result: "not-linearizable";
      readonly partition: string;
      /** The operations of the failing partition, for a report. */
      readonly operations: readonly Operation<Input, Output>[];
      /** The longest prefix (by call order) the search could linearize; the next operation is the culprit's neighbourhood. */
      readonly linearizedCount: number;
      readonly steps: number;
    }
  | {
      readonly result: "unknown";
      readonly partition: string;
      readonly steps: number;
      readonly reason: string;
    };

export interface CheckOptions {
  /** Search steps across all partitions before answering "unknown". */
  readonly stepsMax?: number;
}

interface EventNode {
  readonly operation: number;
  readonly isCall: boolean;
  /** For a call: its return event. */
  match: EventNode | null;
  prev: EventNode | null;
  next: EventNode | null;
}

export function checkLinearizability<State, Input, Output>(
  model: Model<State, Input, Output>,
  operations: readonly Operation<Input, Output>[],
  options: CheckOptions = {},
): LinearizabilityVerdict<Input, Output> {
  const stepsMax = options.stepsMax ?? 10_000_000;
  let steps = 0;
  const partitions = [...model.partition(operations)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [partition, partitionOperations] of partitions) {
    validate(partitionOperations);
    const outcome = checkPartition(model, partitionOperations, stepsMax - steps);
    steps += outcome.steps;
    if (outcome.result === "budget") {
      return { result: "unknown", partition, steps, reason: `search budget of ${stepsMax} steps exhausted` };
    }
    if (outcome.result === "illegal") {
      return {
        result: "not-linearizable",
        partition,
        operations: partitionOperations,
        linearizedCount: outcome.linearizedMost,
        steps,
      };
    }
  }
  return { result: "linearizable", steps };
}

function validate<Input, Output>(operations: readonly Operation<Input, Output>[]): void {
  for (const operation of operations) {
    if (!(operation.call < operation.return)) {
      throw new RangeError(
        `operation ${operation.id}: call ${operation.call} must be before return ${operation.return}`,
      );
    }
    if (operation.return === Infinity && operation.output !== undefined) {
      throw new RangeError(`operation ${operation.id}: an unknown outcome cannot have an output`);
    }
  }
}

function checkPartition<State, Input, Output>(
  model: Model<State, Input, Output>,
  operations: readonly Operation<Input, Output>[],
  stepsMax: number,
): { result: "ok" | "illegal" | "budget"; steps: number; linearizedMost: number } {
  // Events in time order; at equal times calls come first (treating the two as concurrent is the
  // permissive reading, so equal timestamps never produce a false alarm).
  const events: { time: number; isCall: boolean; operation: number }[] = [];
  operations.forEach((operation, i) => {
    events.push({ time: operation.call, isCall: true, operation: i });
    events.push({ time: operation.return, isCall: false, operation: i });
  });
  events.sort(
    (a, b) => a.time - b.time || (a.isCall === b.isCall ? a.operation - b.operation : a.isCall ? -1 : 1),
  );

  const head: EventNode = { operation: -1, isCall: false, match: null, prev: null, next: null };
  let tail = head;
  const callNodes: EventNode[] = new Array(operations.length);
  const returnNodes: EventNode[] = new Array(operations.length);
  for (const event of events) {
    const node: EventNode = {
      operation: event.operation,
      isCall: event.isCall,
      match: null,
      prev: tail,
      next: null,
    };
    tail.next = node;
    tail = node;
    if (event.isCall) callNodes[event.operation] = node;
    else returnNodes[event.operation] = node;
  }
  for (let i = 0; i < operations.length; i++) {
    const call = callNodes[i];
    if (call !== undefined) call.match = returnNodes[i] ?? null;
  }

  const linearized = new Uint8Array(operations.length);
  let linearizedCount = 0;
  let linearizedMost = 0;
  const visited = new Set<string>();
  const stack: { node: EventNode; state: State }[] = [];
  let state = model.init();
  let entry = head.next;
  let steps = 0;

  const lift = (call: EventNode): void => {
    // Unlink the call and its return; they are restored in reverse order on backtrack.
    unlink(call);
    if (call.match !== null) unlink(call.match);
  };
  const unlift = (call: EventNode): void => {
    if (call.match !== null) relink(call.match);
    relink(call);
  };

  while (head.next !== null) {
    if (++steps > stepsMax) return { result: "budget", steps, linearizedMost };
    if (entry === null) {
      // Nothing more can be tried at this depth: backtrack.
      const frame = stack.pop();
      if (frame === undefined) return { result: "illegal", steps, linearizedMost };
      state = frame.state;
      linearized[frame.node.operation] = 0;
      linearizedCount--;
      unlift(frame.node);
      entry = frame.node.next;
      continue;
    }
    const operation = operations[entry.operation];
    if (operation === undefined) throw new Error("event without an operation");
    if (entry.isCall) {
      const next = model.step(state, operation.input, operation.output);
      if (next !== undefined) {
        linearized[entry.operation] = 1;
        const key = `${model.stateKey(next)}|${bitsKey(linearized)}`;
        if (!visited.has(key)) {
          visited.add(key);
          stack.push({ node: entry, state });
          state = next;
          linearizedCount++;
          if (linearizedCount > linearizedMost) linearizedMost = linearizedCount;
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized[entry.operation] = 0;
      }
      entry = entry.next;
    } else {
      // The first return still in the list: its operation had to be linearized by now.
      if (operation.return === Infinity) {
        // Only unknown outcomes remain (they sort last): they may simply never have happened.
        return { result: "ok", steps, linearizedMost };
      }
      entry = null;
    }
  }
  return { result: "ok", steps, linearizedMost };
}

function unlink(node: EventNode): void {
  if (node.prev !== null) node.prev.next = node.next;
  if (node.next !== null) node.next.prev = node.prev;
}

function relink(node: EventNode): void {
  if (node.prev !== null) node.prev.next = node;
  if (node.next !== null) node.next.prev = node;
}

function bitsKey(bits: Uint8Array): string {
  // Pack eight flags per character: visited keys stay short for histories of thousands of operations.
  let key = "";
  for (let i = 0; i < bits.length; i += 8) {
    let byte = 0;
    for (let j = 0; j < 8 && i + j < bits.length; j++) byte |= (bits[i + j] ?? 0) << j;
    key += String.fromCharCode(byte);
  }
  return key;
}
