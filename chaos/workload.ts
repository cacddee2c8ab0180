// The workload: SDK clients (each its own, as separate applications are) reading and writing a
// small key space for a set time, every operation recorded with its call and return times and its
// outcome. A write that failed after it was sent (the SDK says outcomeUnknown) stays in the history
// with an unknown outcome: it may or may not have applied, and the checker treats it so. A call that
// certainly did nothing (a refused write, a failed read) is counted, not recorded.

import type { StrongroomClient } from "../client/index.js";
import { StrongroomError } from "../client/index.js";
import type { SeededRandom } from "../raft/core/index.js";
import type { RegisterOperation } from "./checker/index.js";

export interface WorkloadOptions {
  readonly clients: number;
  readonly keys: number;
  readonly readRatio: number;
  /** The share of writes that are check-and-sets (a read, then a write on the version it saw). */
  readonly casRatio: number;
  readonly durationMs: number;
  readonly timeoutMs: number;
}

/** A new SDK client for workload client `index`. */
export type ClientFactory = (index: number) => StrongroomClient;

export interface WorkloadResult {
  readonly operations: RegisterOperation[];
  attempted: number;
  succeeded: number;
  /** Failures by reason (the SDK's, or "unknown" for a write whose outcome is unknown). */
  readonly failures: Map<string, number>;
  readonly readLatenciesMs: number[];
  readonly writeLatenciesMs: number[];
  /** The same latencies by workload client (a pinned client's are its node's: per-region figures). */
  readonly latenciesByClient: Map<number, { readonly reads: number[]; readonly writes: number[] }>;
}

function noteLatency(result: WorkloadResult, kind: "reads" | "writes", clientId: number, ms: number): void {
  (kind === "reads" ? result.readLatenciesMs : result.writeLatenciesMs).push(ms);
  let own = result.latenciesByClient.get(clientId);
  if (own === undefined) {
    own = { reads: [], writes: [] };
    result.latenciesByClient.set(clientId, own);
  }
  own[kind].push(ms);
}

/** Every key of the workload is under it. */
export const keyPrefix = "chaos/";
export const keyName = (index: number) => `${keyPrefix}k${index}`;

/** A key's value (null when it has none yet) and version (0 then). */
async function readKey(
  client: StrongroomClient,
  key: string,
  timeoutMs: number,
): Promise<{ value: string | null; version: number }> {
  try {
    const answer = await client.secrets.get({ path: key }, { deadlineMs: timeoutMs });
    return { value: Buffer.from(answer.value).toString("utf8"), version: answer.version };
  } catch (error) {
    if (!(error instanceof StrongroomError && error.reason === "NOT_FOUND")) throw error;
    return { value: null, version: 0 };
  }
}

export async function runWorkload(
  newClient: ClientFactory,
  options: WorkloadOptions,
  random: SeededRandom,
  clock: () => number,
): Promise<WorkloadResult> {
  const result: WorkloadResult = {
    operations: [],
    attempted: 0,
    succeeded: 0,
    failures: new Map(),
    readLatenciesMs: [],
    writeLatenciesMs: [],
    latenciesByClient: new Map(),
  };
  const end = clock() + options.durationMs;
  let nextId = 0;
  const fail = (reason: string) => result.failures.set(reason, (result.failures.get(reason) ?? 0) + 1);
  const runClient = async (clientId: number, choices: SeededRandom) => {
    const client = newClient(clientId);
    let sequence = 0;
    // In the history, a client's operations never overlap; after an unknown outcome (which never
    // returns) the client goes on as a new history client, as Jepsen and Porcupine do.
    let historyClient = clientId;
    try {
      while (clock() < end) {
        const key = keyName(choices.nextInt(options.keys));
        const read = choices.nextFloat() < options.readRatio;
        const compareAndSet = !read && choices.nextFloat() < options.casRatio;
        const value = `c${clientId}-${sequence++}`;
        let call = clock();
        result.attempted++;
        // A check-and-set's expectation: the value (unique per write) at the version it saw.
        let expected: string | null = null;
        // Whether a write was sent (a failure then may have applied); a check-and-set's read is not.
        let writing = !read && !compareAndSet;
        try {
          if (read || compareAndSet) {
            const found = await readKey(client, key, options.timeoutMs);
            const returned = clock();
            result.operations.push({
              id: nextId++,
              client: historyClient,
              input: { kind: "get", key },
              output: found.value,
              call,
              return: returned,
            });
            noteLatency(result, "reads", clientId, returned - call);
            if (compareAndSet) {
              // The write on the version read: it applies only if the key is still at that
              // version - that is, still holds that value, since every write's value is unique.
              expected = found.value;
              call = clock();
              writing = true;
              let swapped = true;
              try {
                await client.secrets.put(
                  { path: key, value: Buffer.from(value), cas: found.version },
                  { deadlineMs: options.timeoutMs },
                );
              } catch (error) {
                if (!(error instanceof StrongroomError && error.reason === "CAS_MISMATCH")) throw error;
                swapped = false;
              }
              const swappedAt = clock();
              result.operations.push({
                id: nextId++,
                client: historyClient,
                input: { kind: "cas", key, expected, value },
                output: swapped,
                call,
                return: swappedAt,
              });
              noteLatency(result, "writes", clientId, swappedAt - call);
            }
          } else {
            await client.secrets.put(
              { path: key, value: Buffer.from(value) },
              { deadlineMs: options.timeoutMs },
            );
            const returned = clock();
            result.operations.push({
              id: nextId++,
              client: historyClient,
              input: { kind: "put", key, value },
              output: null,
              call,
              return: returned,
            });
            noteLatency(result, "writes", clientId, returned - call);
          }
          result.succeeded++;
        } catch (error) {
          const failure = error instanceof StrongroomError ? error : null;
          if (writing && (failure === null || failure.outcomeUnknown)) {
            // It may have applied: in the history with an unknown outcome.
            result.operations.push({
              id: nextId++,
              client: historyClient,
              input: compareAndSet ? { kind: "cas", key, expected, value } : { kind: "put", key, value },
              output: undefined,
              call,
              return: Infinity,
            });
            historyClient += options.clients;
            fail("unknown");
          } else {
            fail(failure?.reason || failure?.statusName || "error");
          }
        }
      }
    } finally {
      client.close();
    }
  };
  await Promise.all(Array.from({ length: options.clients }, (_, i) => runClient(i, random.fork())));
  return result;
}
