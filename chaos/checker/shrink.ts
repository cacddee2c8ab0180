// The smallest failing sub-history, for a person to read: from the operations of a key whose
// history is not linearizable, remove as many as possible (delta debugging: chunks, then single
// operations) while what is left stays not linearizable. Only removals that cannot invent a
// violation are tried - reads, and writes whose value no remaining operation observed - so what is
// left is evidence against the original history, not a new problem: if the original were
// linearizable, its linearization with those operations left out would linearize the rest.

import { checkLinearizability } from "./linearizability.js";
import { type RegisterOperation, registerModel } from "./register-model.js";

export interface ShrinkOptions {
  /** Wall-clock budget; the smallest history found so far is returned when it runs out. */
  readonly budgetMs: number;
  /** Search steps per check. */
  readonly stepsMax: number;
}

export function shrinkCounterexample(
  operations: readonly RegisterOperation[],
  options: ShrinkOptions,
): RegisterOperation[] {
  const deadline = performance.now() + options.budgetMs;
  const failing = (candidate: readonly RegisterOperation[]) =>
    checkLinearizability(registerModel, candidate, { stepsMax: options.stepsMax }).result ===
    "not-linearizable";
  let current = [...operations];
  if (!failing(current)) return current;
  let chunks = 2;
  while (current.length > 1 && performance.now() < deadline) {
    const size = Math.ceil(current.length / chunks);
    let removedAny = false;
    for (let start = 0; start < current.length && performance.now() < deadline; start += size) {
      const removed = current.slice(start, start + size);
      const candidate = [...current.slice(0, start), ...current.slice(start + size)];
      if (!mayRemove(removed, candidate) || !failing(candidate)) continue;
      current = candidate;
      removedAny = true;
      start -= size;
    }
    if (removedAny) chunks = Math.max(2, chunks - 1);
    else if (size === 1) break;
    else chunks = Math.min(current.length, chunks * 2);
  }
  return current;
}

/** Whether no operation left observes a value that one of the removed operations wrote. */
function mayRemove(removed: readonly RegisterOperation[], remaining: readonly RegisterOperation[]): boolean {
  const written = new Set<string>();
  for (const operation of removed)
    if (operation.input.kind === "put" || operation.input.kind === "cas") written.add(operation.input.value);
  if (written.size === 0) return true;
  return !remaining.some(
    (operation) =>
      (operation.input.kind === "get" &&
        typeof operation.output === "string" &&
        written.has(operation.output)) ||
      (operation.input.kind === "cas" &&
        operation.input.expected !== null &&
        written.has(operation.input.expected)),
  );
}
