// The client requests the state machine has applied, by the request id their client gave them,
// with what each answered. A write whose outcome the client could not learn (a timeout, a dropped
// connection, a leader that failed) can then be sent again with the same id: it applies once, and
// the retry gets the first one's answer. This is the Raft dissertation's answer to duplicated
// commands (§6.3), with ids the client chooses, as Google's AIP-155 `request_id`.
//
// The dedup happens where the entries apply, in log order, so it holds whichever of the two
// entries commits first, or if both do (the first in a deposed leader's log, the retry in the new
// one's). Every replica keeps the same records and forgets them at the same entry: the window is
// counted in the entries' own times (the proposer's clock, carried in the command) and in records,
// never in a node's clock or configuration. Changing either bound changes what a replica answers,
// so it takes a new command schema version, never a setting.

import { Packr } from "msgpackr";
import { packOwned } from "../msgpack-owned.js";
import { StateError, type StateErrorCode } from "./errors.js";
import { isWellFormedRequestId, requestIdCharsMax } from "./limits.js";

/** The first byte of a request record's key (see the key layout in secret-state.ts). */
export const requestRecordKind = 0x07;

/**
 * How long a request id is remembered, in the time of the entries that apply after it: far beyond
 * a call's deadline (the SDK's retries), long enough for a person to run a command again.
 */
export const requestIdRetentionMs = 5 * 60_000;

/**
 * How many request ids are remembered at most; the oldest is forgotten first. Their records are
 * part of every snapshot a new or lagging member must install, and each costs about 175 bytes of
 * a node's heap: 20,000 is about 2.7 MB of snapshot and 3.5 MB of heap. At 1,000 writes a second
 * it keeps 20 s, still twice a call's longest deadline. (With 15 minutes and 100,000, a busy
 * chaos run's 6 MB snapshots slowed a learner's catch-up from 0.1 s to 15-30 s.)
 */
export const requestIdsKept = 20_000;

/** What a request's command carries: its client's id, and a keyed digest of what it asked. */
export interface CommandRequest {
  readonly id: string;
  /** HMAC-SHA256 of the request as the client sent it (server/api/request-fingerprint.ts). */
  readonly fingerprint: Uint8Array;
}

/** What an applied request answered: the change it made, or why it made none. */
export type RequestAnswer =
  | { readonly ok: true; readonly version: number | null }
  | { readonly ok: false; readonly code: StateErrorCode; readonly message: string };

/** A request record: the entry that applied it, when, what it asked (digest) and answered. */
export interface AppliedRequest {
  readonly index: number;
  readonly at: number;
  readonly fingerprint: Uint8Array;
  readonly answer: RequestAnswer;
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true });
const decoder = new TextDecoder();

/** Refuses a request id that is empty, too long or has characters outside [A-Za-z0-9._:-]. */
export function validateRequestId(id: string): void {
  if (!isWellFormedRequestId(id)) {
    throw new StateError(
      "INVALID_ARGUMENT",
      `a request id is 1 to ${requestIdCharsMax} characters of A-Z, a-z, 0-9, '.', '_', ':' and '-' (a UUID, say)`,
    );
  }
}

/** A request record's key, in a slice of Node's buffer pool (as secret-state.ts builds its keys). */
export function requestKey(id: string): Uint8Array {
  const nameLength = Buffer.byteLength(id);
  const key = Buffer.allocUnsafe(1 + nameLength);
  key[0] = requestRecordKind;
  key.write(id, 1, nameLength, "utf8");
  return key;
}

export function requestIdOfKey(key: Uint8Array): string {
  return decoder.decode(key.subarray(1));
}

export function encodeAppliedRequest(record: AppliedRequest): Uint8Array {
  return packOwned(packr, record);
}

/** Decodes a request record; a damaged one is the store's corruption, named as such. */
export function decodeAppliedRequest(id: string, value: Uint8Array): AppliedRequest {
  const record = packr.unpack(value) as Partial<AppliedRequest> | null;
  const answer = record?.answer as Partial<RequestAnswer> | undefined;
  if (
    record === null ||
    typeof record !== "object" ||
    !Number.isSafeInteger(record.index) ||
    typeof record.at !== "number" ||
    !(record.fingerprint instanceof Uint8Array) ||
    typeof answer !== "object" ||
    answer === null ||
    typeof answer.ok !== "boolean"
  ) {
    throw new StateError("STORAGE_CORRUPT", `the record of request ${id} is damaged`);
  }
  return record as AppliedRequest;
}

/**
 * Which request ids are remembered, oldest first, with each one's time: what tells an apply which
 * to forget. The records themselves are in the store; this is only their order.
 */
export class RequestWindow {
  /** Request id → the time of the entry that applied it, in the order they applied. */
  private readonly times = new Map<string, number>();

  get size(): number {
    return this.times.size;
  }

  /** Starts again from the records in the store (at open, after a snapshot is restored). */
  reload(records: Iterable<{ readonly id: string; readonly index: number; readonly at: number }>): void {
    this.times.clear();
    const sorted = [...records].sort((a, b) => a.index - b.index);
    for (const { id, at } of sorted) this.times.set(id, at);
  }

  /**
   * Whether `id` is remembered: exactly the ids with a record in the store, so a new id (nearly
   * every write's) is answered here without a LevelDB lookup that would miss.
   */
  has(id: string): boolean {
    return this.times.has(id);
  }

  add(id: string, at: number): void {
    this.times.set(id, at);
  }

  /**
   * The ids to forget as an entry of time `now` applies: those remembered for longer than the
   * retention, and the oldest beyond the count once `adding` more are added. Taken out here;
   * the caller deletes their records in the same batch.
   */
  expire(now: number, adding: number): string[] {
    const forgotten: string[] = [];
    for (const [id, at] of this.times) {
      if (at >= now - requestIdRetentionMs && this.times.size + adding <= requestIdsKept) break;
      this.times.delete(id);
      forgotten.push(id);
    }
    return forgotten;
  }
}
