// The secret state machine: a versioned key-value store with KV v2 semantics on LevelDB, changed
// only by applying committed Raft entries. Values arrive and are stored as barrier ciphertext; this
// module never sees a plaintext value or a key. Apply is deterministic (times come from the
// command, never the local clock) and writes its effects with the applied index in one atomic
// batch, so a replay after a crash is exact: entries at or below the applied index are skipped.
//
// Key layout:
//   0x01                                      applied index        MessagePack {index}
//   0x02 + path                               secret metadata      MessagePack SecretMetadata
//   0x03 + path + 0x00 + version (u32 BE)     one version          barrier ciphertext
//   0x04 + key term (u32 BE)                  encryptions          u64 BE: values applied under that key
//   0x05 + area (u8) + name                   system record        barrier ciphertext (keyring: root-key wrapped;
//                                                                  seal: the seal record, see commands.ts)
//   0x06                                      revision offset      MessagePack {offset}, only in a restored cluster
//   0x07 + request id                         applied request      MessagePack AppliedRequest (applied-requests.ts)
//   0x7f                                      restoring            present only while a snapshot is restored
// Paths never contain 0x00 (see limits.ts), so the separator is unambiguous.
//
// A revision is the Raft index of the entry that made a change, plus the revision offset: 0, but
// in a cluster restored from a backup, a number above every revision the saved cluster can have
// given out (snapshot-handlers.ts), so that revisions never go back and a watcher's revision from
// before a restore cannot be taken for one of the new cluster's.

import { createHash } from "node:crypto";
import { Packr } from "msgpackr";
import { collectParts } from "../../raft/node/index.js";
import {
  type BinaryLevel,
  isLevelCorruption,
  type LevelBatch,
  type LevelOptions,
  openBinaryLevel,
  writeBatch,
} from "../leveldb.js";
import { packOwned } from "../msgpack-owned.js";
import {
  type AppliedRequest,
  type CommandRequest,
  decodeAppliedRequest,
  encodeAppliedRequest,
  RequestWindow,
  requestIdOfKey,
  requestKey,
  requestRecordKind,
} from "./applied-requests.js";
import {
  decodeCommand,
  type SecretCommand,
  type SecretMetadataChanges,
  type SystemArea,
  systemAreas,
} from "./commands.js";
import { StateError, type StateErrorCode } from "./errors.js";
import {
  defaultStateLimits,
  type StateLimits,
  validateCustomMetadata,
  validateMaxVersions,
  validatePath,
  validatePrefix,
} from "./limits.js";
import {
  decodeMetadata,
  emptyMetadata,
  encodeMetadataTransient,
  freezeMetadata,
  storedVersions,
} from "./metadata-record.js";
import { checkSnapshot, decodeSnapshot, encodeSnapshot, type SnapshotRecord } from "./snapshot-format.js";

export interface VersionRecord {
  readonly created: number;
  readonly deleted: number | null;
  readonly destroyed: boolean;
  /** A rotation replaced it: it is not served from this time on (its overlap ended). */
  readonly retireAt?: number;
}

export interface SecretMetadata {
  readonly created: number;
  readonly updated: number;
  /** The newest version (0 before the first write). */
  readonly current: number;
  readonly maxVersions: number;
  readonly casRequired: boolean;
  readonly deleteVersionAfterMs: number;
  readonly owner: string;
  readonly rotationPeriodMs: number;
  readonly custom: Readonly<Record<string, string>>;
  /** Kept versions by number, oldest first (trimmed ones are gone). A Map: see metadata-record.ts. */
  readonly versions: ReadonlyMap<number, VersionRecord>;
  /** What a rotation writes (opaque here: server/lifecycle/generators.ts), or null: not rotated. */
  readonly generator: Readonly<Record<string, unknown>> | null;
  readonly rotationOverlapMs: number;
  /** When its value last changed on a rotating secret (a rotation or a write), 0: never. */
  readonly lastRotated: number;
  /** When the leader rotates it next (0: not scheduled); set by every apply that changes it. */
  readonly nextRotationAt: number;
  /** Rotations failed since the last one that succeeded, and the last one's reason. */
  readonly rotationFailures: number;
  readonly lastRotationError: string;
  /** After this time no version is served, and the leader erases the values (0: never). */
  readonly expiresAt: number;
}

/** A secret an operator should look at (the Stale report). */
export interface StaleSecret {
  readonly path: string;
  readonly reason: "expired" | "expiring" | "rotation-overdue" | "unread";
  /** When it expired or expires, when its rotation was due, or when it was last read (0: never seen). */
  readonly at: number;
  readonly owner: string;
}

/** A secret whose rotation is due: its path, the version a rotation replaces, and since when. */
export interface DueRotation {
  readonly path: string;
  readonly version: number;
  readonly dueAt: number;
}

/**
 * What an applied entry answers. `replayOf`: the entry repeated a request already applied (its
 * request id), changed nothing, and answers what that request did, at that entry's index.
 */
export type ApplyResult =
  | { readonly ok: true; readonly version: number | null; readonly replayOf?: number }
  | {
      readonly ok: false;
      readonly code: StateErrorCode;
      readonly message: string;
      readonly replayOf?: number;
    };

export interface SecretVersion {
  readonly version: number;
  readonly ciphertext: Uint8Array;
  readonly metadata: SecretMetadata;
}

/**
 * The writes of an apply: LevelDB's, and a secret's metadata record as the object, which goes
 * into the metadata cache and is encoded only at its LevelDB write (asWritten).
 */
type StateOperation =
  | LevelBatch[number]
  | { readonly type: "metadata"; readonly key: Uint8Array; readonly metadata: SecretMetadata };
type StateBatch = StateOperation[];

const appliedKey = Uint8Array.of(0x01);
const metadataKind = 0x02;
const versionKind = 0x03;
const encryptionsKind = 0x04;
const systemKind = 0x05;
const revisionOffsetKey = Uint8Array.of(0x06);
/** Written (synced) before a restore starts and removed when it ends: present at open, the data is partial. */
const restoringKey = Uint8Array.of(0x7f);
/** Ciphertext overhead of the barrier: version, term, nonce, tag. */
const ciphertextOverheadBytes = 33;
const packr = new Packr({ useRecords: false, mapsAsObjects: true });

/** Secrets whose metadata record a node keeps in memory, at most (the least recently used go first). */
export const metadataCacheMax = 50_000;

/** A key as a map key: its bytes, one latin1 character each. */
function keyString(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("latin1");
}
const decoder = new TextDecoder();

/**
 * The operations of `batch` as LevelDB takes them, a metadata record encoded as its turn comes:
 * into msgpackr's buffer, which the next encoding reuses. writeBatch adds each operation before it
 * takes the next, and LevelDB copies the bytes as it adds them, so they need no memory of their
 * own (an allocation outside V8's heap, 2 µs of a 35 µs apply: docs/performance.md).
 */
function* asWritten(batch: StateBatch): Generator<LevelBatch[number]> {
  for (const operation of batch)
    yield operation.type === "metadata"
      ? { type: "put", key: operation.key, value: encodeMetadataTransient(operation.metadata) }
      : operation;
}

/**
 * Applies may skip the fsync: the Raft log already holds them durably and replays whatever the
 * state machine lost. flush() makes everything applied durable before the log is compacted.
 */
const unsynced = { sync: false } as const;
const synced = { sync: true } as const;

/** A captured state that can be read out again and again (holdSnapshot), until released. */
export interface HeldSnapshot {
  readonly appliedIndex: number;
  /** The snapshot's bytes from the start, a part at a time (snapshot-format.ts). */
  read(): AsyncGenerator<Uint8Array>;
  /** Lets go of the capture (a LevelDB snapshot); read no more after it. */
  release(): Promise<void>;
}

/** The record that gives a restored cluster's revisions their offset (loaded with its data). */
export function revisionOffsetRecord(offset: number): { key: Uint8Array; value: Uint8Array } {
  return { key: revisionOffsetKey, value: packOwned(packr, { offset }) };
}

/** The offset a revision offset record holds; null for any other record. Throws on a bad one. */
export function revisionOffsetOf(record: {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}): number | null {
  if (record.key.length !== 1 || record.key[0] !== revisionOffsetKey[0]) return null;
  let offset: unknown;
  try {
    offset = (packr.unpack(record.value) as { offset?: unknown } | null)?.offset;
  } catch {
    offset = undefined;
  }
  if (!Number.isSafeInteger(offset) || (offset as number) < 0)
    throw new StateError("INVALID_ARGUMENT", "a revision offset record does not hold a whole number");
  return offset as number;
}

export class SecretStateMachine {
  private applied = 0;
  /** Added to a Raft index to give a revision (see the top of this file). */
  private revisionOffset = 0;
  /** Every rotating secret's next rotation (path → version it replaces, when): the leader's schedule. */
  private readonly rotations = new Map<string, { readonly version: number; readonly dueAt: number }>();
  /** Secrets with an expiry and values still stored (path → when): the leader's cleanup list. */
  private readonly expiries = new Map<string, number>();
  /** Schedule changes of the command being applied, made only once its batch is written. */
  private scheduleChanges: [string, SecretMetadata | null][] = [];
  private appliedListener: ((index: number, command: SecretCommand, version: number | null) => void) | null =
    null;
  /**
   * Applied writes not in LevelDB yet, by key (its bytes as a latin1 string): the operation, with
   * the sequence number of the write that set it. Reads look here first.
   */
  private readonly unwritten = new Map<
    string,
    { readonly operation: StateOperation; readonly seq: number }
  >();
  /** The operations of the next LevelDB write, and which `unwritten` entries they settle. */
  private queued: StateBatch = [];
  private queuedSeqs: [string, number][] = [];
  /**
   * Where each key's operation is in `queued`. A key written again before the write goes out
   * (the applied index by every entry, a counter, a hot secret's metadata) replaces its
   * operation: one LevelDB write is atomic, so only each key's last value matters, and the
   * applied index alone was one of every four operations.
   */
  private queuedAt = new Map<string, number>();
  private writeSeq = 0;
  /** The writer loop while it runs (one at a time), or null. */
  private writing: Promise<void> | null = null;
  /** A LevelDB write that failed: every later apply and read that must settle throws it. */
  private writeFailure: Error | null = null;
  /**
   * Secrets' metadata records as objects (null: no such secret), by key, the most recently used
   * last: every apply and every authorization reads one; the cache spares LevelDB's lookup, its
   * copy and a MessagePack decode (3% of a node's CPU under 64 writing clients). An apply caches
   * the object it made; its bytes are made only for the LevelDB write, which copies them (bytes of
   * their own, kept here, cost an allocation outside V8's heap per apply: docs/performance.md).
   * Kept right by every write (they all pass through enqueue) and cleared by a restore. The
   * objects are frozen, so no user of one can change what the next sees.
   */
  private readonly metadataCache = new Map<string, SecretMetadata | null>();
  /** The order in which the remembered request ids go (applied-requests.ts). */
  private readonly requestWindow = new RequestWindow();

  private constructor(
    readonly directory: string,
    private readonly db: BinaryLevel,
    private readonly limits: StateLimits,
  ) {}

  static async open(
    directory: string,
    limits: StateLimits = defaultStateLimits,
    storeOptions: LevelOptions = {},
  ): Promise<SecretStateMachine> {
    let db: BinaryLevel;
    try {
      db = await openBinaryLevel(directory, storeOptions);
    } catch (error) {
      throw new StateError(
        "INVALID_ARGUMENT",
        `cannot open the secret store in ${directory}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    const machine = new SecretStateMachine(directory, db, limits);
    try {
      await machine.guard(machine.loadAppliedIndex());
      await machine.guard(machine.loadRevisionOffset());
      await machine.guard(machine.loadRotationSchedule());
      await machine.guard(machine.loadRequestWindow());
    } catch (error) {
      await db.close();
      throw error;
    }
    return machine;
  }

  private async loadAppliedIndex(): Promise<void> {
    const applied = await this.db.get(appliedKey);
    this.applied = applied === undefined ? 0 : (packr.unpack(applied) as { index: number }).index;
    // A restore cut short by a crash left partial data: report nothing applied, so the driver
    // restores the snapshot again (it is durable in the Raft log store) before replaying entries.
    if ((await this.db.get(restoringKey)) !== undefined) this.applied = 0;
  }

  private async loadRevisionOffset(): Promise<void> {
    const value = await this.db.get(revisionOffsetKey);
    this.revisionOffset =
      value === undefined ? 0 : (revisionOffsetOf({ key: revisionOffsetKey, value }) ?? 0);
  }

  appliedIndex(): number {
    return this.applied;
  }

  /** The revision of the change made by the entry at `index`. */
  revisionOf(index: number): number {
    return index + this.revisionOffset;
  }

  /** The revision of the last entry applied. */
  appliedRevision(): number {
    return this.revisionOf(this.applied);
  }

  /** Reads every secret's schedule into memory (at open, and after a restore or a load). */
  private async loadRotationSchedule(): Promise<void> {
    await this.settle();
    this.rotations.clear();
    for await (const [key, value] of this.db.iterator({
      gte: Uint8Array.of(metadataKind),
      lt: Uint8Array.of(metadataKind + 1),
    })) {
      const path = decoder.decode(key.subarray(1));
      this.noteSchedule(path, this.decodeMetadata(path, value));
    }
  }

  private noteSchedule(path: string, metadata: SecretMetadata | null): void {
    if (metadata === null || metadata.nextRotationAt === 0) this.rotations.delete(path);
    else this.rotations.set(path, { version: metadata.current, dueAt: metadata.nextRotationAt });
    const stored = metadata !== null && holdsAValue(metadata);
    if (metadata === null || metadata.expiresAt === 0 || !stored) this.expiries.delete(path);
    else this.expiries.set(path, metadata.expiresAt);
  }

  /** Expired secrets whose values are still stored (for the leader to erase), at most `limit`. */
  expiredSecrets(now: number, limit: number): string[] {
    const expired: string[] = [];
    for (const [path, expiresAt] of this.expiries) {
      if (expiresAt > now) continue;
      expired.push(path);
      if (expired.length === limit) break;
    }
    return expired;
  }

  /** How many secrets have expired and still hold values (erased by the leader soon). */
  expiredCount(now: number): number {
    let count = 0;
    for (const expiresAt of this.expiries.values()) if (expiresAt <= now) count += 1;
    return count;
  }

  /**
   * Secrets under `prefix` that need an operator at `now`: expired (or expiring within
   * `withinMs`) and overdue for rotation, in path order; at most `limit`, `truncated` if more.
   */
  async staleSecrets(
    prefix: string,
    now: number,
    withinMs: number,
    limit: number,
    /** Also list secrets created before `before` and not read since (`lastRead`: reads by path). */
    unread?: { readonly before: number; readonly lastRead: ReadonlyMap<string, number> },
  ): Promise<{ secrets: StaleSecret[]; truncated: boolean }> {
    validatePrefix(prefix, this.limits);
    await this.settle();
    const start = metadataKey(prefix);
    const secrets: StaleSecret[] = [];
    for await (const [key, value] of this.db.iterator({ gte: start, lt: prefixEnd(start) })) {
      const path = decoder.decode(key.subarray(1));
      const metadata = this.decodeMetadata(path, value);
      const found: StaleSecret[] = [];
      if (metadata.expiresAt > 0 && metadata.expiresAt <= now)
        found.push({ path, reason: "expired", at: metadata.expiresAt, owner: metadata.owner });
      else if (metadata.expiresAt > 0 && metadata.expiresAt <= now + withinMs)
        found.push({ path, reason: "expiring", at: metadata.expiresAt, owner: metadata.owner });
      if (metadata.nextRotationAt > 0 && metadata.nextRotationAt <= now)
        found.push({ path, reason: "rotation-overdue", at: metadata.nextRotationAt, owner: metadata.owner });
      const lastRead = unread?.lastRead.get(path) ?? 0;
      if (
        unread !== undefined &&
        metadata.current > 0 &&
        metadata.created < unread.before &&
        lastRead < unread.before
      )
        found.push({ path, reason: "unread", at: lastRead, owner: metadata.owner });
      for (const entry of found) {
        if (secrets.length === limit) return { secrets, truncated: true };
        secrets.push(entry);
      }
    }
    return { secrets, truncated: false };
  }

  /** Secrets whose rotation is due at `now`, the longest overdue first, at most `limit`. */
  dueRotations(now: number, limit: number): DueRotation[] {
    const due: DueRotation[] = [];
    for (const [path, { version, dueAt }] of this.rotations)
      if (dueAt <= now) due.push({ path, version, dueAt });
    return due.sort((a, b) => a.dueAt - b.dueAt).slice(0, limit);
  }

  /** How many secrets are scheduled to rotate. */
  scheduledRotations(): number {
    return this.rotations.size;
  }

  /**
   * Applies the committed entry at `index`. A command that cannot apply (a CAS mismatch, a bad
   * path) gives a failed result, the same on every replica; either way the applied index moves.
   */
  async apply(index: number, data: Uint8Array): Promise<ApplyResult> {
    return this.guard(this.applyUnguarded(index, data));
  }

  /**
   * LevelDB reports a damaged file as LEVEL_CORRUPTION without saying which store it was: say it,
   * with the directory, as a typed error the node stops on (never applied, never served).
   */
  private async guard<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (error) {
      throw this.storageError(error);
    }
  }

  /** A LevelDB corruption named as the store's; any other error as it is. */
  private storageError(error: unknown): unknown {
    if (!isLevelCorruption(error)) return error;
    return new StateError(
      "STORAGE_CORRUPT",
      `the secret store in ${this.directory} is corrupt (LevelDB: ${(error as Error).message})`,
      { cause: error },
    );
  }

  private async applyUnguarded(index: number, data: Uint8Array): Promise<ApplyResult> {
    if (index <= this.applied)
      return { ok: false, code: "INVALID_ARGUMENT", message: `entry ${index} was already applied` };
    const batch: StateBatch = [];
    let result: ApplyResult;
    let command: SecretCommand | null = null;
    this.scheduleChanges = [];
    let replayed = false;
    try {
      command = decodeCommand(data);
      const request = "request" in command ? command.request : undefined;
      const earlier = request === undefined ? null : await this.appliedRequest(request, command.at);
      replayed = earlier !== null;
      result = earlier ?? (await this.plan(command, batch));
    } catch (error) {
      if (!(error instanceof StateError)) throw error;
      batch.length = 0;
      this.scheduleChanges = [];
      result = { ok: false, code: error.code, message: error.message };
    }
    if (command !== null && !replayed) this.rememberRequest(index, command, result, batch);
    batch.push({ type: "put", key: appliedKey, value: packOwned(packr, { index }) });
    this.enqueue(batch);
    this.applied = index;
    for (const [path, metadata] of this.scheduleChanges) this.noteSchedule(path, metadata);
    this.scheduleChanges = [];
    if (result.ok && command?.op === "state.load") await this.loadRotationSchedule();
    if (result.ok && command !== null && !replayed) this.appliedListener?.(index, command, result.version);
    return result;
  }

  /**
   * What an earlier entry with this request's id answered, when one applied within the window (a
   * retry: the caller changes nothing and answers it), or null. The same id with a different
   * request is refused: the id is the client's mistake, and guessing which it meant would lose
   * a write.
   */
  private async appliedRequest(request: CommandRequest, at: number): Promise<ApplyResult | null> {
    this.forgetRequests(at, 0);
    if (!this.requestWindow.has(request.id)) return null;
    const stored = await this.get(requestKey(request.id));
    if (stored === undefined) return null;
    const earlier: AppliedRequest = decodeAppliedRequest(request.id, stored);
    if (!Buffer.from(earlier.fingerprint).equals(request.fingerprint)) {
      throw new StateError(
        "REQUEST_ID_REUSED",
        `request id ${request.id} was used by a different request (the write at revision ${this.revisionOf(earlier.index)}); give each request its own id`,
      );
    }
    return { ...earlier.answer, replayOf: earlier.index };
  }

  /**
   * Records what a request with an id answered (its change, or the error it got, which a retry
   * gets too), and forgets what the window no longer holds, in the entry's batch. A request
   * refused for reusing an id is not recorded: the id stays the first request's.
   */
  private rememberRequest(
    index: number,
    command: SecretCommand,
    result: ApplyResult,
    batch: StateBatch,
  ): void {
    const request = "request" in command ? command.request : undefined;
    if (request === undefined || (!result.ok && result.code === "REQUEST_ID_REUSED")) {
      this.forgetRequests(command.at, 0, batch);
      return;
    }
    this.forgetRequests(command.at, 1, batch);
    const answer = result.ok
      ? { ok: true as const, version: result.version }
      : { ok: false as const, code: result.code, message: result.message };
    batch.push({
      type: "put",
      key: requestKey(request.id),
      value: encodeAppliedRequest({ index, at: command.at, fingerprint: request.fingerprint, answer }),
    });
    this.requestWindow.add(request.id, command.at);
  }

  /**
   * Forgets the request ids past the window as an entry of time `at` applies (and `adding` more
   * are to be remembered); their records are deleted in `batch`, or at once when there is none
   * (a lookup before the entry's batch exists).
   */
  private forgetRequests(at: number, adding: number, batch?: StateBatch): void {
    const forgotten = this.requestWindow.expire(at, adding);
    if (forgotten.length === 0) return;
    const deletions: LevelBatch = forgotten.map((id) => ({ type: "del", key: requestKey(id) }));
    if (batch === undefined) this.enqueue(deletions);
    else batch.push(...deletions);
  }

  /** Reads the remembered request ids into their window (at open, after a snapshot is restored). */
  private async loadRequestWindow(): Promise<void> {
    await this.settle();
    const records: { id: string; index: number; at: number }[] = [];
    for await (const [key, value] of this.db.iterator({
      gte: Uint8Array.of(requestRecordKind),
      lt: Uint8Array.of(requestRecordKind + 1),
    })) {
      const id = requestIdOfKey(key);
      const { index, at } = decodeAppliedRequest(id, value);
      records.push({ id, index, at });
    }
    this.requestWindow.reload(records);
  }

  /**
   * Registers the one listener told of every command that changed the state (after it is
   * written), with the command as applied - so an owner reacting to changes (the node's watchers,
   * its seal keeper) does not decode each entry a second time.
   */
  onApplied(listener: (index: number, command: SecretCommand, version: number | null) => void): void {
    this.appliedListener = listener;
  }

  /** Records that the entry at `index` (an empty or membership entry) was applied: nothing else changes. */
  async skip(index: number): Promise<void> {
    if (index <= this.applied) return;
    this.enqueue([{ type: "put", key: appliedKey, value: packOwned(packr, { index }) }]);
    this.applied = index;
  }

  /** The whole state at the applied index, as checksummed chunks (snapshot-format.ts). */
  async snapshot(): Promise<Uint8Array> {
    return collectParts((await this.captureSnapshot())());
  }

  /**
   * Captures the state at the applied index - every applied write in LevelDB, then a LevelDB
   * snapshot, a consistent point in time - and answers the function that reads it out as
   * checksummed chunks, a part at a time (a caller writing them to a file never holds the whole
   * state). Applies may go on meanwhile: they are not in the capture. The caller must make sure
   * no apply runs until this resolves (the Raft node awaits it in its loop).
   */
  async captureSnapshot(): Promise<() => AsyncGenerator<Uint8Array>> {
    const held = await this.holdSnapshot();
    return async function* readOnce() {
      try {
        yield* held.read();
      } finally {
        await held.release();
      }
    };
  }

  /**
   * As captureSnapshot, but the capture may be read out any number of times, each time the same
   * bytes, until it is released (a backup is read once for its size and digest, then sent).
   */
  async holdSnapshot(): Promise<HeldSnapshot> {
    await this.guard(this.settle());
    const appliedIndex = this.applied;
    const captured = this.db.snapshot();
    return {
      appliedIndex,
      read: () => this.readCapture(captured, appliedIndex),
      release: () => captured.close(),
    };
  }

  /** The capture as snapshot parts. */
  private async *readCapture(
    captured: ReturnType<BinaryLevel["snapshot"]>,
    index: number,
  ): AsyncGenerator<Uint8Array> {
    try {
      yield* encodeSnapshot(index, this.capturedRecords(captured));
    } catch (error) {
      throw this.storageError(error);
    }
  }

  private async *capturedRecords(
    captured: ReturnType<BinaryLevel["snapshot"]>,
  ): AsyncGenerator<SnapshotRecord> {
    for await (const [key, value] of this.db.iterator({ snapshot: captured })) {
      if (key[0] === appliedKey[0] || key[0] === restoringKey[0]) continue;
      yield { key, value };
    }
  }

  /**
   * Replaces the whole state with a snapshot's, read from `read` (its bytes from the start, a part
   * at a time, as often as called): once through to check every chunk, changing nothing if one is
   * bad, then again to write it a chunk at a time. The whole snapshot is never in memory.
   */
  async restore(read: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
    const { appliedIndex: checkedIndex } = await checkSnapshot(read());
    await this.settle();
    this.metadataCache.clear();
    await writeBatch(this.db, [{ type: "put", key: restoringKey, value: Uint8Array.of(1) }], synced);
    await this.db.clear({ gt: restoringKey });
    await this.db.clear({ lt: restoringKey });
    // Checked again as it is read: bytes that changed since the first pass fail the restore, and
    // the marker above has it restored again from the start.
    const { appliedIndex, chunks } = await decodeSnapshot(read());
    if (appliedIndex !== checkedIndex)
      throw new StateError(
        "MALFORMED_COMMAND",
        `the state machine snapshot changed while it was restored (applied index ${checkedIndex}, then ${appliedIndex})`,
      );
    for await (const records of chunks) {
      const batch: LevelBatch = records.map((record) => ({
        type: "put",
        key: new Uint8Array(record.key),
        value: new Uint8Array(record.value),
      }));
      await writeBatch(this.db, batch, unsynced);
    }
    await writeBatch(
      this.db,
      [
        { type: "put", key: appliedKey, value: packOwned(packr, { index: appliedIndex }) },
        { type: "del", key: restoringKey },
      ],
      synced,
    );
    this.applied = appliedIndex;
    // Reads served while the store was being replaced may have cached what they saw mid-way.
    this.metadataCache.clear();
    await this.loadRevisionOffset();
    await this.loadRotationSchedule();
    await this.loadRequestWindow();
  }

  /** Makes every apply so far durable (one synced write flushes LevelDB's log). */
  async flush(): Promise<void> {
    await this.settle();
    await writeBatch(
      this.db,
      [{ type: "put", key: appliedKey, value: packOwned(packr, { index: this.applied }) }],
      synced,
    );
  }

  async metadata(path: string): Promise<SecretMetadata | null> {
    validatePath(path, this.limits);
    return this.guard(this.readMetadataRecord(path));
  }

  /**
   * The ciphertext of `version` (default: the newest) of `path`, if it is served: not deleted,
   * destroyed, trimmed or expired at `now`. NOT_FOUND says which.
   */
  read(path: string, version: number | null, now: number): Promise<SecretVersion> {
    return this.guard(this.readUnguarded(path, version, now));
  }

  private async readUnguarded(path: string, version: number | null, now: number): Promise<SecretVersion> {
    if (version !== null && (!Number.isSafeInteger(version) || version < 1)) {
      throw new StateError("INVALID_ARGUMENT", "a version is a positive integer");
    }
    const metadata = await this.metadata(path);
    if (metadata === null || metadata.current === 0)
      throw new StateError("NOT_FOUND", `no secret at ${path}`);
    if (metadata.expiresAt > 0 && now >= metadata.expiresAt)
      throw new StateError("EXPIRED", `${path} expired at ${new Date(metadata.expiresAt).toISOString()}`);
    const wanted = version ?? metadata.current;
    const record = metadata.versions.get(wanted);
    const missing = (why: string): never => {
      throw new StateError("NOT_FOUND", `version ${wanted} of ${path} ${why}`);
    };
    if (record === undefined)
      missing(wanted > metadata.current ? "does not exist" : "was trimmed (max_versions)");
    const kept = record as VersionRecord;
    if (kept.destroyed) missing("was destroyed");
    if (kept.deleted !== null) missing("is deleted");
    if (metadata.deleteVersionAfterMs > 0 && now >= kept.created + metadata.deleteVersionAfterMs)
      throw new StateError(
        "EXPIRED",
        `version ${wanted} of ${path} has expired (older than delete_version_after, ${metadata.deleteVersionAfterMs} ms)`,
      );
    if (kept.retireAt !== undefined && now >= kept.retireAt)
      missing("was replaced by a rotation and its overlap has ended");
    const ciphertext = await this.get(versionKey(path, wanted));
    if (ciphertext === undefined)
      throw new StateError("NOT_FOUND", `version ${wanted} of ${path} has no stored value`);
    return { version: wanted, ciphertext: new Uint8Array(ciphertext), metadata };
  }

  /** A record of a reserved system area, as stored (ciphertext), or null. */
  async systemRecord(area: SystemArea, name: string): Promise<Uint8Array | null> {
    validatePath(name, this.limits);
    const value = await this.guard(this.get(systemKey(area, name)));
    return value === undefined ? null : new Uint8Array(value);
  }

  /** Names in a system area in order, after `after` (exclusive), at most `limit`. */
  listSystem(
    area: SystemArea,
    after: string | null,
    limit: number,
  ): Promise<{ names: string[]; next: string | null }> {
    return this.guard(
      this.pageOfNames(systemKey(area, ""), after === null ? null : systemKey(area, after), limit, 2),
    );
  }

  /** Paths under `prefix` in order, after `after` (exclusive), at most `limit`; `next` continues. */
  async list(
    prefix: string,
    after: string | null,
    limit: number,
  ): Promise<{ paths: string[]; next: string | null }> {
    validatePrefix(prefix, this.limits);
    if (after !== null && !after.startsWith(prefix)) {
      throw new StateError("INVALID_ARGUMENT", "the page cursor is not under the prefix");
    }
    const start = metadataKey(prefix);
    const page = await this.guard(
      this.pageOfNames(start, after === null ? null : metadataKey(after), limit, 1),
    );
    return { paths: page.names, next: page.next };
  }

  /**
   * One page of the names of keys starting with `start`, after the key `after` (exclusive); a
   * name is the key without its first `kindBytes`. `next` is the cursor when more remain.
   */
  private async pageOfNames(
    start: Uint8Array,
    after: Uint8Array | null,
    limit: number,
    kindBytes: number,
  ): Promise<{ names: string[]; next: string | null }> {
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > this.limits.listPageMax) {
      throw new StateError("INVALID_ARGUMENT", `a page holds 1 to ${this.limits.listPageMax} names`);
    }
    await this.settle();
    const range = after === null ? { gte: start } : { gt: after };
    const names: string[] = [];
    for await (const key of this.db.keys({ ...range, lt: prefixEnd(start) })) {
      if (names.length === limit) return { names, next: names.at(-1) ?? null };
      names.push(decoder.decode(key.subarray(kindBytes)));
    }
    return { names, next: null };
  }

  async close(): Promise<void> {
    // What was applied goes to LevelDB first; a failed write is lost (the Raft log replays it).
    await this.settle().catch(() => {});
    await this.db.close();
  }

  /**
   * A key's value: an applied write not in LevelDB yet, else LevelDB's (a secret's metadata record
   * is read through the metadata cache: readMetadataRecord).
   * LevelDB is read synchronously, on the event loop: a point read from its memtable or the page
   * cache takes microseconds, and an asynchronous get costs a round trip through libuv's thread
   * pool (a job, a wake-up of a pool thread, a wake-up of the loop) that costs more than the read.
   * Measured: 17% more linearizable reads per second at 64 clients, 16% less CPU per read
   * (docs/performance.md). It also means no apply can land while a key is being read. Async (a
   * promise) still, so that `guard` turns a corrupt store into its typed error the same way.
   */
  private async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    const pending = this.unwritten.get(keyString(key))?.operation;
    if (pending !== undefined) return pending.type === "put" ? pending.value : undefined;
    return this.db.getSync(key);
  }

  private cacheMetadata(name: string, metadata: SecretMetadata | null): void {
    this.metadataCache.delete(name);
    this.metadataCache.set(name, metadata);
    if (this.metadataCache.size > metadataCacheMax) {
      const oldest = this.metadataCache.keys().next().value;
      if (oldest !== undefined) this.metadataCache.delete(oldest);
    }
  }

  /**
   * Takes an applied entry's writes: visible to every read at once, written to LevelDB behind the
   * applies, in order, with the writes of the entries applied meanwhile in the same LevelDB write.
   * An apply then costs no disk round trip of its own: committed entries apply at memory speed.
   * Unsynced, as before: the Raft log holds every entry durably, and the applied index is written
   * in the same ordered writes, so a restart replays whatever had not reached LevelDB.
   */
  private enqueue(batch: StateBatch): void {
    if (this.writeFailure !== null) throw this.writeFailure;
    for (const operation of batch) {
      const key = keyString(operation.key);
      const seq = ++this.writeSeq;
      this.unwritten.set(key, { operation, seq });
      if (operation.type === "metadata") this.cacheMetadata(key, operation.metadata);
      else if (operation.key[0] === metadataKind) {
        if (operation.type === "del") this.cacheMetadata(key, null);
        // A record as bytes (a loaded state's): decoded when next read.
        else this.metadataCache.delete(key);
      }
      const at = this.queuedAt.get(key);
      if (at === undefined) {
        this.queuedAt.set(key, this.queued.length);
        this.queued.push(operation);
        this.queuedSeqs.push([key, seq]);
      } else {
        this.queued[at] = operation;
        this.queuedSeqs[at] = [key, seq];
      }
    }
    this.writing ??= this.writeLoop();
  }

  private async writeLoop(): Promise<void> {
    try {
      // Let the rest of this burst of applies join the first write.
      await new Promise((resolve) => setImmediate(resolve));
      while (this.queued.length > 0) {
        const batch = this.queued;
        const seqs = this.queuedSeqs;
        this.queued = [];
        this.queuedSeqs = [];
        this.queuedAt = new Map();
        await writeBatch(this.db, asWritten(batch), unsynced);
        for (const [key, seq] of seqs) if (this.unwritten.get(key)?.seq === seq) this.unwritten.delete(key);
      }
    } catch (error) {
      this.writeFailure = error instanceof Error ? error : new Error(String(error));
    } finally {
      this.writing = null;
    }
  }

  /** Waits until every applied write is in LevelDB (before iterating, snapshotting, syncing). */
  private async settle(): Promise<void> {
    while (this.writing !== null) await this.writing;
    if (this.writeFailure !== null) throw this.writeFailure;
  }

  // -------------------------------------------------------------------------------------------

  /** Validates `command` against the current state and fills `batch` with its effects. */
  private async plan(command: SecretCommand, batch: StateBatch): Promise<ApplyResult> {
    if (command.op === "state.load") return this.planLoad(command, batch);
    if (command.op === "sys.putAll") return this.planPutAll(command, batch);
    validatePath(command.path, this.limits);
    if (command.op === "sys.put") {
      this.checkSystemValueSize(command.area, command.value);
      if (command.ifDigest !== undefined)
        await this.checkRecordDigest(command.area, command.path, command.ifDigest);
      batch.push({ type: "put", key: systemKey(command.area, command.path), value: command.value });
      return { ok: true, version: null };
    }
    if (command.op === "sys.delete") {
      if ((await this.get(systemKey(command.area, command.path))) === undefined) {
        throw new StateError("NOT_FOUND", `no ${command.area} record ${command.path}`);
      }
      if (command.ifDigest !== undefined)
        await this.checkRecordDigest(command.area, command.path, command.ifDigest);
      batch.push({ type: "del", key: systemKey(command.area, command.path) });
      return { ok: true, version: null };
    }
    const existing = await this.readMetadataRecord(command.path);
    switch (command.op) {
      case "kv.put":
        return this.planPut(command, existing, batch);
      case "kv.delete":
      case "kv.undelete":
      case "kv.destroy":
        return this.planVersionChange(command, existing, batch);
      case "kv.metadata":
        return this.planMetadata(command, existing, batch);
      case "kv.rotationFailed":
        return this.planRotationFailed(command, existing, batch);
      case "kv.deleteAll": {
        if (existing === null) throw new StateError("NOT_FOUND", `no secret at ${command.path}`);
        for (const version of existing.versions.keys())
          batch.push({ type: "del", key: versionKey(command.path, version) });
        batch.push({ type: "del", key: metadataKey(command.path) });
        this.scheduleChanges.push([command.path, null]);
        return { ok: true, version: null };
      }
    }
  }

  private checkSystemValueSize(area: SystemArea, value: Uint8Array): void {
    if (value.length > this.limits.valueBytesMax + ciphertextOverheadBytes)
      throw new StateError("VALUE_TOO_LARGE", `a ${area} record of ${value.length} bytes exceeds the limit`);
  }

  /** Every record or none: refused whole while one of `ifAbsent` exists, or one is malformed. */
  private async planPutAll(
    command: Extract<SecretCommand, { op: "sys.putAll" }>,
    batch: StateBatch,
  ): Promise<ApplyResult> {
    for (const record of command.records) {
      validatePath(record.path, this.limits);
      this.checkSystemValueSize(record.area, record.value);
    }
    for (const { area, path } of command.ifAbsent) {
      validatePath(path, this.limits);
      if ((await this.get(systemKey(area, path))) !== undefined)
        throw new StateError("CAS_MISMATCH", `the ${area} record ${path} exists`);
    }
    for (const { area, path, value } of command.records)
      batch.push({ type: "put", key: systemKey(area, path), value });
    return { ok: true, version: null };
  }

  /** A system record's check-and-set: it must hold the value whose SHA-256 is `digest`. */
  private async checkRecordDigest(area: SystemArea, name: string, digest: Uint8Array): Promise<void> {
    const current = await this.get(systemKey(area, name));
    if (current === undefined || !recordDigest(current).equals(digest)) {
      throw new StateError("CAS_MISMATCH", `the ${area} record ${name} changed since it was read`);
    }
  }

  /**
   * Writes restored records as they are; only data kinds and the revision offset, never the
   * applied index or a marker. A revision offset takes effect with the entry that loads it.
   */
  private planLoad(command: Extract<SecretCommand, { op: "state.load" }>, batch: StateBatch): ApplyResult {
    const loadable = new Set([metadataKind, versionKind, encryptionsKind, systemKind]);
    let offset: number | null = null;
    for (const record of command.records) {
      const recordOffset = revisionOffsetOf(record);
      if (recordOffset !== null) offset = recordOffset;
      else if (!loadable.has(record.key[0] ?? -1)) {
        throw new StateError(
          "INVALID_ARGUMENT",
          `a restored record has a key of unknown kind ${record.key[0]}`,
        );
      }
      batch.push({ type: "put", key: record.key, value: record.value });
    }
    if (offset !== null) this.revisionOffset = offset;
    return { ok: true, version: null };
  }

  private async planPut(
    command: Extract<SecretCommand, { op: "kv.put" }>,
    existing: SecretMetadata | null,
    batch: StateBatch,
  ): Promise<ApplyResult> {
    const plaintextBytes = command.ciphertext.length - ciphertextOverheadBytes;
    if (plaintextBytes < 0)
      throw new StateError("INVALID_ARGUMENT", `the value for ${command.path} is not a barrier ciphertext`);
    if (plaintextBytes > this.limits.valueBytesMax) {
      throw new StateError(
        "VALUE_TOO_LARGE",
        `a value of ${plaintextBytes} bytes exceeds the limit of ${this.limits.valueBytesMax}`,
      );
    }
    const base = existing ?? emptyMetadata(command.at, this.limits.maxVersionsDefault);
    if (command.cas === null && base.casRequired) {
      throw new StateError(
        "CAS_REQUIRED",
        `${command.path} requires check-and-set: give the current version (${base.current})`,
      );
    }
    if (command.cas !== null && command.cas !== base.current) {
      throw new StateError(
        "CAS_MISMATCH",
        `check-and-set expected version ${command.cas} of ${command.path}; it is at ${base.current}`,
      );
    }
    if (command.ciphertext[0] !== 1)
      throw new StateError("INVALID_ARGUMENT", `the value for ${command.path} is not a barrier ciphertext`);
    const version = base.current + 1;
    // The new version and the newest max_versions - 1 before it stay; older ones go (one copy of
    // the map per write: this is every write's path).
    const kept = this.keepNewest(command.path, base.versions, base.maxVersions - 1, batch);
    // A rotation retires the version it replaces once the overlap ends.
    const replaced = kept.at(-1);
    if (command.rotation === true && replaced !== undefined && replaced[0] === base.current)
      kept[kept.length - 1] = [
        base.current,
        { ...replaced[1], retireAt: command.at + base.rotationOverlapMs },
      ];
    kept.push([version, { created: command.at, deleted: null, destroyed: false }]);
    const versions = storedVersions(kept);
    const rotating = base.generator !== null && base.rotationPeriodMs > 0;
    const metadata: SecretMetadata = {
      ...base,
      current: version,
      updated: command.at,
      versions,
      // A new value on a rotating secret, by rotation or by hand, starts its next period.
      ...(rotating
        ? {
            lastRotated: command.at,
            nextRotationAt: nextRotation(command.path, version, command.at, base),
            rotationFailures: 0,
            lastRotationError: "",
          }
        : {}),
    };
    this.scheduleChanges.push([command.path, metadata]);
    batch.push({ type: "put", key: versionKey(command.path, version), value: command.ciphertext });
    this.putMetadata(batch, command.path, metadata);
    await this.countEncryption(command.ciphertext, batch);
    return { ok: true, version };
  }

  /**
   * Counts the values applied under each barrier key term, in replicated state: only the leader
   * encrypts, and a new leader must know how far the active key has gone before the GCM limit.
   */
  private async countEncryption(ciphertext: Uint8Array, batch: StateBatch): Promise<void> {
    const term = new DataView(ciphertext.buffer, ciphertext.byteOffset, ciphertext.byteLength).getUint32(1);
    const key = encryptionsKey(term);
    const stored = await this.get(key);
    const count =
      stored === undefined
        ? 0n
        : new DataView(stored.buffer, stored.byteOffset, stored.byteLength).getBigUint64(0);
    const value = Buffer.allocUnsafe(8);
    value.writeBigUInt64BE(count + 1n);
    batch.push({ type: "put", key, value });
  }

  /** Values applied under each barrier key term, for the leader's barrier to continue counting from. */
  encryptionCounts(): Promise<Map<number, number>> {
    return this.guard(this.encryptionCountsUnguarded());
  }

  private async encryptionCountsUnguarded(): Promise<Map<number, number>> {
    await this.settle();
    const counts = new Map<number, number>();
    for await (const [key, value] of this.db.iterator({
      gte: encryptionsKey(0),
      lt: Uint8Array.of(encryptionsKind + 1),
    })) {
      const term = new DataView(key.buffer, key.byteOffset, key.byteLength).getUint32(1);
      counts.set(
        term,
        Number(new DataView(value.buffer, value.byteOffset, value.byteLength).getBigUint64(0)),
      );
    }
    return counts;
  }

  private planVersionChange(
    command: Extract<SecretCommand, { op: "kv.delete" | "kv.undelete" | "kv.destroy" }>,
    existing: SecretMetadata | null,
    batch: StateBatch,
  ): ApplyResult {
    if (existing === null || existing.current === 0)
      throw new StateError("NOT_FOUND", `no secret at ${command.path}`);
    // No versions named: the newest (Vault's behaviour for delete).
    const targets = command.versions.length === 0 ? [existing.current] : command.versions;
    const changed = new Map(existing.versions);
    for (const version of targets) {
      const record = changed.get(version);
      if (record === undefined || record.destroyed) continue;
      if (command.op === "kv.delete")
        changed.set(version, { ...record, deleted: record.deleted ?? command.at });
      else if (command.op === "kv.undelete") changed.set(version, { ...record, deleted: null });
      else {
        changed.set(version, { ...record, destroyed: true });
        batch.push({ type: "del", key: versionKey(command.path, version) });
      }
    }
    const updated: SecretMetadata = { ...existing, updated: command.at, versions: storedVersions(changed) };
    this.putMetadata(batch, command.path, updated);
    // Destroying every value takes an expired secret off the cleanup list.
    this.scheduleChanges.push([command.path, updated]);
    return { ok: true, version: null };
  }

  private planMetadata(
    command: Extract<SecretCommand, { op: "kv.metadata" }>,
    existing: SecretMetadata | null,
    batch: StateBatch,
  ): ApplyResult {
    const changes: SecretMetadataChanges = command.changes;
    if (changes.maxVersions !== undefined) validateMaxVersions(changes.maxVersions, this.limits);
    if (changes.custom !== undefined) validateCustomMetadata(changes.custom, this.limits);
    for (const field of ["deleteVersionAfterMs", "rotationPeriodMs"] as const) {
      const value = changes[field];
      if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
        throw new StateError("INVALID_ARGUMENT", `${field} must be a non-negative integer of milliseconds`);
      }
    }
    if (changes.casRequired !== undefined && typeof changes.casRequired !== "boolean") {
      throw new StateError("INVALID_ARGUMENT", "casRequired must be true or false");
    }
    if (
      changes.owner !== undefined &&
      (typeof changes.owner !== "string" || Buffer.byteLength(changes.owner) > 256)
    ) {
      throw new StateError("INVALID_ARGUMENT", "owner must be a string of at most 256 bytes");
    }
    if (
      changes.expiresAt !== undefined &&
      (!Number.isSafeInteger(changes.expiresAt) || changes.expiresAt < 0)
    ) {
      throw new StateError(
        "INVALID_ARGUMENT",
        "expiresAt must be a time in milliseconds since the epoch, or 0",
      );
    }
    if (
      changes.rotationOverlapMs !== undefined &&
      (!Number.isSafeInteger(changes.rotationOverlapMs) || changes.rotationOverlapMs < 0)
    ) {
      throw new StateError(
        "INVALID_ARGUMENT",
        "rotationOverlapMs must be a non-negative integer of milliseconds",
      );
    }
    if (
      changes.generator !== undefined &&
      changes.generator !== null &&
      (typeof changes.generator !== "object" || Array.isArray(changes.generator))
    ) {
      throw new StateError("INVALID_ARGUMENT", "generator must be a map or null");
    }
    const base = existing ?? emptyMetadata(command.at, this.limits.maxVersionsDefault);
    const changed: SecretMetadata = {
      ...base,
      ...(changes.maxVersions === undefined ? {} : { maxVersions: changes.maxVersions }),
      ...(changes.casRequired === undefined ? {} : { casRequired: changes.casRequired }),
      ...(changes.deleteVersionAfterMs === undefined
        ? {}
        : { deleteVersionAfterMs: changes.deleteVersionAfterMs }),
      ...(changes.owner === undefined ? {} : { owner: changes.owner }),
      ...(changes.rotationPeriodMs === undefined ? {} : { rotationPeriodMs: changes.rotationPeriodMs }),
      ...(changes.custom === undefined ? {} : { custom: { ...changes.custom } }),
      ...(changes.generator === undefined ? {} : { generator: changes.generator }),
      ...(changes.rotationOverlapMs === undefined ? {} : { rotationOverlapMs: changes.rotationOverlapMs }),
      ...(changes.expiresAt === undefined ? {} : { expiresAt: changes.expiresAt }),
      updated: command.at,
    };
    // The schedule follows the policy: a period from the last rotation (or from now, the first
    // time); due at once if that is past; none without a period or a generator.
    const scheduleChanged =
      changes.rotationPeriodMs !== undefined || changes.generator !== undefined || base.nextRotationAt === 0;
    const updated: SecretMetadata = scheduleChanged
      ? {
          ...changed,
          nextRotationAt: Math.max(
            command.at,
            nextRotation(
              command.path,
              changed.current,
              changed.lastRotated > 0 ? changed.lastRotated : command.at,
              changed,
            ),
          ),
        }
      : changed;
    const scheduled =
      updated.generator === null || updated.rotationPeriodMs === 0
        ? { ...updated, nextRotationAt: 0 }
        : updated;
    const trimmed = this.trim(command.path, scheduled, batch);
    this.putMetadata(batch, command.path, trimmed);
    this.scheduleChanges.push([command.path, trimmed]);
    return { ok: true, version: null };
  }

  /** Counts a failed rotation and schedules the next attempt: 2 s, 4 s, ... at most a period. */
  private planRotationFailed(
    command: Extract<SecretCommand, { op: "kv.rotationFailed" }>,
    existing: SecretMetadata | null,
    batch: StateBatch,
  ): ApplyResult {
    if (existing === null) throw new StateError("NOT_FOUND", `no secret at ${command.path}`);
    if (existing.nextRotationAt === 0)
      throw new StateError("NOT_ROTATING", `${command.path} is not scheduled to rotate`);
    const failures = existing.rotationFailures + 1;
    const backoffMs = Math.min(existing.rotationPeriodMs, 1000 * 2 ** Math.min(failures, 20));
    const updated: SecretMetadata = {
      ...existing,
      rotationFailures: failures,
      lastRotationError: command.error.slice(0, 512),
      nextRotationAt: command.at + Math.max(1000, backoffMs),
      updated: command.at,
    };
    this.putMetadata(batch, command.path, updated);
    this.scheduleChanges.push([command.path, updated]);
    return { ok: true, version: null };
  }

  /** Drops the oldest versions beyond max_versions, their ciphertexts with them. */
  private trim(path: string, metadata: SecretMetadata, batch: StateBatch): SecretMetadata {
    if (metadata.versions.size <= metadata.maxVersions) return metadata;
    const kept = this.keepNewest(path, metadata.versions, metadata.maxVersions, batch);
    return { ...metadata, versions: storedVersions(kept) };
  }

  /** The newest `count` of `versions`, oldest first; the others' ciphertexts are deleted in `batch`. */
  private keepNewest(
    path: string,
    versions: ReadonlyMap<number, VersionRecord>,
    count: number,
    batch: StateBatch,
  ): [number, VersionRecord][] {
    // Oldest first: versions are added in ascending order and every copy keeps the order.
    let dropped = Math.max(0, versions.size - count);
    const kept: [number, VersionRecord][] = [];
    for (const entry of versions) {
      if (dropped > 0) {
        dropped--;
        batch.push({ type: "del", key: versionKey(path, entry[0]) });
      } else kept.push(entry);
    }
    return kept;
  }

  /**
   * Writes `metadata` as the record of `path` in `batch`, with the object (frozen from here on)
   * for the cache.
   */
  private putMetadata(batch: StateBatch, path: string, metadata: SecretMetadata): void {
    batch.push({ type: "metadata", key: metadataKey(path), metadata: freezeMetadata(metadata) });
  }

  /** The metadata record of `path`, or null: from the cache, else from the writes behind or LevelDB. */
  private async readMetadataRecord(path: string): Promise<SecretMetadata | null> {
    const key = metadataKey(path);
    const name = keyString(key);
    const cached = this.metadataCache.get(name);
    if (cached !== undefined) {
      this.metadataCache.delete(name);
      this.metadataCache.set(name, cached);
      return cached;
    }
    const pending = this.unwritten.get(name)?.operation;
    let metadata: SecretMetadata | null;
    if (pending?.type === "metadata") metadata = pending.metadata;
    else {
      const value =
        pending === undefined ? this.db.getSync(key) : pending.type === "put" ? pending.value : undefined;
      metadata = value === undefined ? null : this.decodeMetadata(path, value);
    }
    this.cacheMetadata(name, metadata);
    return metadata;
  }

  /**
   * A stored metadata record. LevelDB does not verify checksums on every read, so a damaged block
   * can come back as bytes that do not decode: that is corruption too, and is reported as such.
   */
  private decodeMetadata(path: string, value: Uint8Array): SecretMetadata {
    try {
      return decodeMetadata(value);
    } catch (error) {
      throw new StateError(
        "STORAGE_CORRUPT",
        `the secret store in ${this.directory} is corrupt (the metadata of ${path} does not decode: ${(error as Error).message})`,
        { cause: error },
      );
    }
  }
}

/** Whether any kept version still has its value (not destroyed). Every apply asks: no array. */
function holdsAValue(metadata: SecretMetadata): boolean {
  for (const version of metadata.versions.values()) if (!version.destroyed) return true;
  return false;
}

/**
 * When a secret written at `from` (as `version`) rotates next: a period later, plus a jitter of up
 * to a tenth of the period (at most an hour) so that secrets created together do not rotate in one
 * burst. The jitter is a hash of the path and version: every replica computes the same time.
 */
function nextRotation(path: string, version: number, from: number, metadata: SecretMetadata): number {
  if (metadata.generator === null || metadata.rotationPeriodMs <= 0) return 0;
  const spread = Math.min(metadata.rotationPeriodMs * 0.1, 3_600_000);
  const hash = createHash("sha256").update(`${path}\u0000${version}`).digest();
  return from + metadata.rotationPeriodMs + Math.floor((hash.readUInt32BE(0) / 0x1_0000_0000) * spread);
}

// Keys are built in slices of Node's shared buffer pool (Buffer.allocUnsafe), not as typed arrays
// of their own: a key lives only until its LevelDB write, and a Uint8Array of its own costs a
// malloc (over 64 bytes, or once its .buffer is read, as keyString and a DataView do) that V8
// must then track and free. Built this way, an apply's keys cost a tenth of what they did (a
// scratch loop: 0.3 against 2.5 µs for a version key and its map name).

function metadataKey(path: string): Uint8Array {
  const pathLength = Buffer.byteLength(path);
  const key = Buffer.allocUnsafe(1 + pathLength);
  key[0] = metadataKind;
  key.write(path, 1, pathLength, "utf8");
  return key;
}

function versionKey(path: string, version: number): Uint8Array {
  const pathLength = Buffer.byteLength(path);
  const key = Buffer.allocUnsafe(1 + pathLength + 1 + 4);
  key[0] = versionKind;
  key.write(path, 1, pathLength, "utf8");
  key[1 + pathLength] = 0x00;
  key.writeUInt32BE(version, 2 + pathLength);
  return key;
}

/** The SHA-256 of a stored system record, as a check-and-set of sys.put and sys.delete names it. */
export function recordDigest(value: Uint8Array): Buffer {
  return createHash("sha256").update(value).digest();
}

/** The system area a stored key belongs to, or null for any other kind of key. */
export function systemAreaOfKey(key: Uint8Array): SystemArea | null {
  if (key[0] !== systemKind) return null;
  return systemAreas[key[1] ?? -1] ?? null;
}

/** Whether a stored key is that of the system record `record`. */
export function isSystemRecordKey(key: Uint8Array, record: { area: SystemArea; name: string }): boolean {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).equals(systemKey(record.area, record.name));
}

function systemKey(area: SystemArea, name: string): Uint8Array {
  const nameLength = Buffer.byteLength(name);
  const key = Buffer.allocUnsafe(2 + nameLength);
  key[0] = systemKind;
  key[1] = systemAreas.indexOf(area);
  key.write(name, 2, nameLength, "utf8");
  return key;
}

function encryptionsKey(term: number): Uint8Array {
  const key = Buffer.allocUnsafe(5);
  key[0] = encryptionsKind;
  key.writeUInt32BE(term, 1);
  return key;
}

/** The first key after every key that starts with `start`. */
function prefixEnd(start: Uint8Array): Uint8Array {
  const end = new Uint8Array(start);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] ?? 0) < 0xff) {
      end[i] = (end[i] ?? 0) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Uint8Array.of(0xff, 0xff);
}
