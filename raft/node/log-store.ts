// Where a node's Raft state lives between restarts. The driver calls these in the order the Ready
// contract demands and waits for each to be durable before it sends a message that depends on it.
// Implementations: MemoryLogStore (tests, simulations) and, in the storage issue, LevelDB.

import {
  concatBytes,
  type Entry,
  type HardState,
  type LogOffset,
  type PersistentState,
  type Snapshot,
  type SnapshotMeta,
  type SnapshotReceiver,
  type StableEntryReader,
  type StableSnapshotReader,
  type StoredSnapshot,
} from "../core/index.js";

/** What LogStore.load may leave out. */
export interface LogLoadOptions {
  /**
   * The entries before this index may be left on disk, their data not loaded
   * (PersistentState.notLoaded): the caller has applied them. A store may load them all the same.
   */
  readonly dataFrom?: number;
}

/**
 * The core reads entries back through readEntries (StableEntryReader), synchronously, for a follower
 * that lags behind what it keeps in memory: only entries an append already stored, never compacted.
 * And the chunks of a snapshot it sends through readSnapshotChunk (StableSnapshotReader): of the
 * newest snapshot saved or installed, or of the one before it (the core moves to the newest when
 * the driver calls compact() after saveSnapshot returned), or of one received whole and not yet
 * installed. A snapshot from the leader arrives through receiveSnapshotChunk (SnapshotReceiver),
 * synchronously, a chunk at a time as the core accepts it; installSnapshot then makes it durable.
 */
export interface LogStore extends StableEntryReader, StableSnapshotReader, SnapshotReceiver {
  /** Everything persisted so far; an empty store gives term 0, no snapshot and no entries. */
  load(options?: LogLoadOptions): Promise<PersistentState>;
  /**
   * Atomically and durably (fsynced before the promise resolves): drop stored entries from
   * `entries[0].index` on, store `entries`, and store `hardState` when it is not null. Entries must
   * continue the stored log without a gap.
   */
  append(entries: readonly Entry[], hardState: HardState | null): Promise<void>;
  /**
   * Durably replace the log with a snapshot received from the leader: no entries remain. One
   * without its data is the snapshot receiveSnapshotChunk took whole (another is refused).
   */
  installSnapshot(snapshot: Snapshot | StoredSnapshot): Promise<void>;
  /**
   * Durably keep a snapshot the node took itself: one with its data, or the one stageSnapshot
   * answered (a snapshot not staged is refused). The log is untouched.
   */
  saveSnapshot(snapshot: Snapshot | StoredSnapshot): Promise<void>;
  /**
   * Durably write the snapshot at `meta` from its parts as the state machine reads them out,
   * without keeping it yet: the driver's loop goes on meanwhile, and a store that writes a file
   * holds one part at a time, never the whole state. saveSnapshot of the answer then only records
   * it. Required, so that a wrapper cannot drop it unnoticed (the metrics wrapper once did, and
   * every snapshot was written inside the loop).
   */
  stageSnapshot(
    meta: SnapshotMeta,
    parts: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<StoredSnapshot>;
  /** Drop entries through `offset.index`, which a saved snapshot covers. */
  compact(offset: LogOffset): Promise<void>;
  close(): Promise<void>;
}

/** Thrown by a LogStore for a request that would corrupt the log (a bug in the caller). */
export class LogStoreError extends Error {
  override readonly name = "LogStoreError";
}

/** What a stored log holds: entries after `offset` (the last compacted index) through `last`. */
export interface StoredLogBounds {
  readonly offset: number;
  readonly last: number;
}

/**
 * Refuses entries that would not continue the stored log without a gap (LogStore.append): into
 * its compacted part, after a gap, or not numbered one after another.
 */
export function checkAppendable(stored: StoredLogBounds, entries: readonly Entry[]): void {
  const first = entries[0];
  if (first === undefined) return;
  if (first.index <= stored.offset)
    throw new LogStoreError(`append at ${first.index} into the compacted log (through ${stored.offset})`);
  if (first.index > stored.last + 1)
    throw new LogStoreError(`append at ${first.index} leaves a gap after ${stored.last}`);
  entries.forEach((entry, i) => {
    if (entry.index !== first.index + i)
      throw new LogStoreError(`entries are not contiguous at ${entry.index}`);
  });
}

/**
 * Refuses a compaction through `offset` (LogStore.compact) beyond the snapshot at `snapshotIndex`
 * or the last entry, or whose term is not the stored entry's (`storedTerm`: undefined, none).
 */
export function checkCompactable(
  stored: StoredLogBounds & { readonly snapshotIndex: number },
  offset: LogOffset,
  storedTerm: number | undefined,
): void {
  if (offset.index > stored.snapshotIndex)
    throw new LogStoreError(`compact through ${offset.index} beyond the snapshot at ${stored.snapshotIndex}`);
  if (offset.index > stored.last)
    throw new LogStoreError(`compact through ${offset.index} beyond the last entry ${stored.last}`);
  if (storedTerm !== offset.term)
    throw new LogStoreError(`compact through ${offset.index}: term ${offset.term} does not match`);
}

/**
 * Entries [low, high) of a stored log that holds `first` to `last`, taken one at a time through
 * `read`: at most `bytesMax` bytes of data but always at least one (StableEntryReader.readEntries).
 * A read outside the stored log is refused (the core asked for what it must not); `where` names
 * the store in that error.
 */
export function readStoredEntries(
  stored: { readonly first: number; readonly last: number; readonly where: string },
  low: number,
  high: number,
  bytesMax: number,
  read: (index: number) => Entry,
): Entry[] {
  if (low < stored.first || high - 1 > stored.last || low >= high) {
    throw new LogStoreError(
      `read of entries [${low}, ${high}) outside ${stored.where} (${stored.first} to ${stored.last})`,
    );
  }
  const result: Entry[] = [];
  let bytes = 0;
  for (let index = low; index < high; index++) {
    const entry = read(index);
    bytes += entry.data.length;
    if (result.length > 0 && bytes > bytesMax) break;
    result.push(entry);
  }
  return result;
}

/**
 * Checks a read of `length` bytes from `offset` of the snapshot at `meta` against the snapshots a
 * store can read (StableSnapshotReader.readSnapshotChunk): `readable` finds one by its meta, with
 * its size. A snapshot the store does not hold, or a range beyond its end, is refused: the core
 * asked for what it must not. Returns the one found; `where` names the store in the errors.
 */
export function checkSnapshotRead<Held extends { readonly meta: SnapshotMeta; readonly bytes: number }>(
  readable: readonly Held[],
  meta: SnapshotMeta,
  offset: number,
  length: number,
  where: string,
): Held {
  const held = readable.find(
    (candidate) => candidate.meta.index === meta.index && candidate.meta.term === meta.term,
  );
  if (held === undefined) {
    throw new LogStoreError(
      `read of the snapshot at ${meta.index} (term ${meta.term}), which ${where} does not hold (it holds ${readable.map((candidate) => candidate.meta.index).join(", ") || "none"})`,
    );
  }
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > held.bytes
  ) {
    throw new LogStoreError(
      `read of bytes [${offset}, ${offset + length}) of the snapshot at ${meta.index} in ${where}, which has ${held.bytes}`,
    );
  }
  return held;
}

/**
 * Snapshots held in memory whole (the in-memory store, the simulators' disks), read a chunk at a
 * time. The chunk is a view of the snapshot's bytes, which nobody changes.
 */
export function readSnapshotChunkOf(
  snapshots: readonly (Snapshot | null)[],
  meta: SnapshotMeta,
  offset: number,
  length: number,
  where: string,
): Uint8Array {
  const readable = snapshots
    .filter((snapshot): snapshot is Snapshot => snapshot !== null)
    .map((snapshot) => ({ meta: snapshot.meta, bytes: snapshot.data.length, data: snapshot.data }));
  return checkSnapshotRead(readable, meta, offset, length, where).data.subarray(offset, offset + length);
}

/** The parts of a snapshot as one buffer (a store that keeps it in memory, a small state machine). */
export async function collectParts(
  parts: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<Uint8Array> {
  const collected: Uint8Array[] = [];
  let totalBytes = 0;
  for await (const part of parts) {
    collected.push(part);
    totalBytes += part.length;
  }
  return concatBytes(collected, totalBytes);
}

/** Bytes a stored snapshot is read back in (readStoredSnapshot): one synchronous read each. */
const storedSnapshotPartBytes = 1024 * 1024;

/**
 * A snapshot the store holds, read back from the start a part at a time (a state machine
 * restoring it), with the event loop served between parts.
 */
export async function* readStoredSnapshot(
  reader: StableSnapshotReader,
  snapshot: StoredSnapshot,
): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < snapshot.totalBytes; offset += storedSnapshotPartBytes) {
    const length = Math.min(storedSnapshotPartBytes, snapshot.totalBytes - offset);
    yield reader.readSnapshotChunk(snapshot.meta, offset, length);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * A SnapshotReceiver that collects a received snapshot in memory (the in-memory store, the
 * simulator's nodes): chunks in order, a reception from offset 0 replacing an unfinished one, the
 * snapshot received whole kept until installed, and read back meanwhile (`received`).
 */
export class SnapshotCollector implements SnapshotReceiver {
  private receiving: { meta: SnapshotMeta; totalBytes: number; chunks: Uint8Array[]; bytes: number } | null =
    null;
  /** The snapshot received whole, not installed yet. */
  received: Snapshot | null = null;

  constructor(private readonly where: string) {}

  receiveSnapshotChunk(meta: SnapshotMeta, totalBytes: number, offset: number, chunk: Uint8Array): void {
    if (offset === 0) this.receiving = { meta, totalBytes, chunks: [], bytes: 0 };
    const receiving = this.receiving;
    if (
      receiving === null ||
      receiving.meta.index !== meta.index ||
      receiving.meta.term !== meta.term ||
      receiving.bytes !== offset ||
      offset + chunk.length > totalBytes
    )
      throw new LogStoreError(
        `${this.where} was handed bytes at ${offset} of the snapshot at ${meta.index} out of order`,
      );
    receiving.chunks.push(chunk);
    receiving.bytes += chunk.length;
    if (receiving.bytes < totalBytes) return;
    this.received = { meta, data: concatBytes(receiving.chunks, totalBytes) };
    this.receiving = null;
  }

  /** The snapshot received whole that `stored` stands for; one not received whole is refused. */
  take(stored: StoredSnapshot): Snapshot {
    const received = this.received;
    if (
      received === null ||
      received.meta.index !== stored.meta.index ||
      received.meta.term !== stored.meta.term ||
      received.data.length !== stored.totalBytes
    )
      throw new LogStoreError(
        `${this.where} was asked to install the snapshot at ${stored.meta.index}, which was not received whole`,
      );
    this.received = null;
    return received;
  }

  /** A crash or a restart: what was being received is gone. */
  clear(): void {
    this.receiving = null;
    this.received = null;
  }
}
