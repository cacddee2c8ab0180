// A LogStore in memory, for tests and in-process clusters. It enforces the same rules as the
// durable store (contiguous entries, compaction only behind a snapshot), so the shared conformance
// suite holds it to the same contract. "Durable" here means: it survives a RaftNode being stopped
// and started again on the same store object.

import type {
  Entry,
  HardState,
  LogOffset,
  PersistentState,
  Snapshot,
  SnapshotMeta,
  StoredSnapshot,
} from "../core/index.js";
import {
  checkAppendable,
  checkCompactable,
  collectParts,
  type LogStore,
  LogStoreError,
  readSnapshotChunkOf,
  readStoredEntries,
  SnapshotCollector,
} from "./log-store.js";

export class MemoryLogStore implements LogStore {
  private hardState: HardState = { term: 0, vote: null, commit: 0 };
  private snapshot: Snapshot | null = null;
  /** The snapshot before the newest, still readable until the core moves on (LogStore). */
  private previousSnapshot: Snapshot | null = null;
  /** Snapshots staged and not yet saved, by index. */
  private readonly staged = new Map<number, Snapshot>();
  /** A snapshot from the leader as it arrives, kept whole until installed. */
  private readonly receiver = new SnapshotCollector("the stored log");
  private offset: LogOffset = { index: 0, term: 0 };
  private entries: Entry[] = [];
  private closed = false;

  async load(): Promise<PersistentState> {
    this.assertOpen();
    return {
      hardState: this.hardState,
      snapshot: this.snapshot,
      offset: this.offset,
      entries: [...this.entries],
    };
  }

  async append(entries: readonly Entry[], hardState: HardState | null): Promise<void> {
    this.assertOpen();
    const first = entries[0];
    checkAppendable({ offset: this.offset.index, last: this.offset.index + this.entries.length }, entries);
    // Validate everything before changing anything: the update is all or nothing.
    if (first !== undefined) {
      this.entries.length = first.index - this.offset.index - 1;
      for (const entry of entries) this.entries.push(entry);
    }
    if (hardState !== null) this.hardState = hardState;
  }

  readEntries(low: number, high: number, bytesMax: number): Entry[] {
    this.assertOpen();
    return readEntriesOf(this.offset, this.entries, low, high, bytesMax);
  }

  readSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Uint8Array {
    this.assertOpen();
    return readSnapshotChunkOf(
      [this.snapshot, this.previousSnapshot, this.receiver.received],
      meta,
      offset,
      length,
      "the stored log",
    );
  }

  receiveSnapshotChunk(meta: SnapshotMeta, totalBytes: number, offset: number, chunk: Uint8Array): void {
    this.assertOpen();
    this.receiver.receiveSnapshotChunk(meta, totalBytes, offset, chunk);
  }

  async installSnapshot(received: Snapshot | StoredSnapshot): Promise<void> {
    this.assertOpen();
    const snapshot = "data" in received ? received : this.receiver.take(received);
    this.keepSnapshot(snapshot);
    this.offset = { index: snapshot.meta.index, term: snapshot.meta.term };
    this.entries = [];
    this.raiseCommitTo(snapshot.meta.index);
  }

  /** A snapshot holds only committed entries; the stored commit index may lag it (raft.ts). */
  private raiseCommitTo(index: number): void {
    if (this.hardState.commit < index) this.hardState = { ...this.hardState, commit: index };
  }

  /** Collects the parts: a store in memory holds the whole snapshot anyway. */
  async stageSnapshot(
    meta: SnapshotMeta,
    parts: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<StoredSnapshot> {
    this.assertOpen();
    const data = await collectParts(parts);
    this.staged.set(meta.index, { meta, data });
    return { meta, totalBytes: data.length };
  }

  async saveSnapshot(snapshot: Snapshot | StoredSnapshot): Promise<void> {
    this.assertOpen();
    if (this.snapshot !== null && snapshot.meta.index < this.snapshot.meta.index) {
      throw new LogStoreError(
        `snapshot at ${snapshot.meta.index} is older than the stored one at ${this.snapshot.meta.index}`,
      );
    }
    const kept = "data" in snapshot ? snapshot : this.stagedAs(snapshot);
    for (const index of this.staged.keys()) if (index <= kept.meta.index) this.staged.delete(index);
    this.keepSnapshot(kept);
    this.raiseCommitTo(kept.meta.index);
  }

  /** The staged snapshot `stored` stands for; one never staged is refused. */
  private stagedAs(stored: StoredSnapshot): Snapshot {
    const staged = this.staged.get(stored.meta.index);
    if (staged?.meta.term !== stored.meta.term || staged.data.length !== stored.totalBytes)
      throw new LogStoreError(`save of the snapshot at ${stored.meta.index}, which was not staged`);
    return staged;
  }

  private keepSnapshot(snapshot: Snapshot): void {
    if (this.snapshot !== snapshot) this.previousSnapshot = this.snapshot;
    this.snapshot = snapshot;
  }

  async compact(offset: LogOffset): Promise<void> {
    this.assertOpen();
    const kept = compactedEntriesOf(this.offset, this.entries, this.snapshot?.meta.index ?? 0, offset);
    if (kept === null) return;
    this.entries = kept;
    this.offset = offset;
  }

  async close(): Promise<void> {
    this.closed = true;
    // What a process had received and not installed does not survive it.
    this.receiver.clear();
  }

  /** Opens the store again after close(), as a restarted process would open its files. */
  reopen(): void {
    this.closed = false;
  }

  private assertOpen(): void {
    if (this.closed) throw new LogStoreError("the log store is closed");
  }
}

/**
 * The entries left once a log held in memory as an array after `offset` is compacted through
 * `through` (null: nothing to drop); refused as every log store refuses (checkCompactable: not
 * past the snapshot at `snapshotIndex` nor the last entry). The simulators' disks compact with it too.
 */
export function compactedEntriesOf(
  offset: LogOffset,
  entries: readonly Entry[],
  snapshotIndex: number,
  through: LogOffset,
): Entry[] | null {
  if (through.index <= offset.index) return null;
  checkCompactable(
    { offset: offset.index, last: offset.index + entries.length, snapshotIndex },
    through,
    entries[through.index - offset.index - 1]?.term,
  );
  return entries.slice(through.index - offset.index);
}

/**
 * Entries in [low, high) of a log held in memory as an array after `offset`, at most `bytesMax`
 * bytes of data but always at least one (StableEntryReader.readEntries); the simulators' disks
 * answer with it too. A read outside the log is refused: the core asked for what it must not.
 */
export function readEntriesOf(
  offset: LogOffset,
  entries: readonly Entry[],
  low: number,
  high: number,
  bytesMax: number,
): Entry[] {
  const stored = { first: offset.index + 1, last: offset.index + entries.length, where: "the stored log" };
  return readStoredEntries(
    stored,
    low,
    high,
    bytesMax,
    (index) => entries[index - offset.index - 1] as Entry,
  );
}
