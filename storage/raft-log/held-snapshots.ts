// The snapshots a durable log store holds beside its log, as files (snapshot-files.ts): the one its
// record names and the one before it (readable by the Raft core), those staged beside the loop and
// not recorded yet, the one the leader is sending, and those received whole and not installed. The
// store keeps the record (which snapshot is the node's) in its own format and asks this class which
// file a save or an install records, then tells it once the record is durable (recorded()).

import type { Snapshot, SnapshotMeta, StoredSnapshot } from "../../raft/core/index.js";
import { checkSnapshotRead, LogStoreError } from "../../raft/node/index.js";
import { type ReceivedSnapshotFile, type SnapshotFileRef, SnapshotFiles } from "./snapshot-files.js";

/** Where a recorded snapshot's bytes are read from: its open file (or a legacy store's data). */
interface SnapshotSource {
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

/** A recorded snapshot, read a range at a time for the Raft core (readSnapshotChunk). */
interface ReadableSnapshot {
  readonly meta: SnapshotMeta;
  readonly bytes: number;
  readonly source: SnapshotSource;
}

export class HeldSnapshots {
  readonly files: SnapshotFiles;
  /** The index of the recorded snapshot (0: none): a save of an older one is refused. */
  recordedIndex = 0;
  /** Snapshots written beside the loop (stage), by file name, for a save to record. */
  private readonly staged = new Map<string, SnapshotFileRef>();
  /**
   * The newest recorded snapshot and the one before it, open: the core reads the one before until
   * compact() hands it the newest, and the file stays readable after the newest's record removed it.
   */
  private readable: ReadableSnapshot[] = [];
  /** The snapshot the leader is sending now, written as its chunks arrive (receiveChunk). */
  private receiving: ReceivedSnapshotFile | null = null;
  /** Snapshots received whole and not recorded yet: readable, and one of them being installed. */
  private receivedWhole: ReceivedSnapshotFile[] = [];

  /** `logDirectory` holds the snapshots directory; `where` names the store in errors. */
  constructor(
    logDirectory: string,
    private readonly where: string,
  ) {
    this.files = new SnapshotFiles(logDirectory);
  }

  /**
   * At open (or a reload): the record names `recorded` (null: no snapshot), in its file (`ref`) or,
   * in a legacy store, as `data`. Its file is checked whole; every file no record names goes (a
   * snapshot written but not recorded, or replaced, before a crash). Answers it as loaded.
   */
  async load(
    recorded: { meta: SnapshotMeta; ref: SnapshotFileRef } | { meta: SnapshotMeta; data: Uint8Array } | null,
  ): Promise<Snapshot | StoredSnapshot | null> {
    if (recorded !== null && "ref" in recorded) await this.files.check(recorded.ref);
    this.files.removeUnnamed(recorded !== null && "ref" in recorded ? recorded.ref.file : null);
    this.closeReadable();
    this.recordedIndex = recorded?.meta.index ?? 0;
    if (recorded === null) return null;
    if ("ref" in recorded) {
      this.keepReadable(recorded.meta, recorded.ref.bytes, this.files.openForReading(recorded.ref));
      return { meta: recorded.meta, totalBytes: recorded.ref.bytes };
    }
    const data = recorded.data;
    this.keepReadable(recorded.meta, data.length, {
      read: (offset, length) => data.slice(offset, offset + length),
      close: () => {},
    });
    return { meta: recorded.meta, data };
  }

  /**
   * Writes a chunk of the snapshot the leader is sending into its file as the core accepts it
   * (synchronously, into the page cache); the file is synced only when installed. A reception
   * from offset 0 replaces an unfinished one; a snapshot received whole replaces an older one
   * received whole that no install has taken.
   */
  receiveChunk(meta: SnapshotMeta, totalBytes: number, offset: number, chunk: Uint8Array): void {
    if (offset === 0) {
      if (this.receiving !== null) this.files.discardReceived(this.receiving);
      this.receiving = this.files.receive(meta, totalBytes);
    }
    const receiving = this.receiving;
    if (receiving === null || receiving.meta.index !== meta.index || receiving.meta.term !== meta.term)
      throw new LogStoreError(
        `${this.where} was handed bytes at ${offset} of the snapshot at ${meta.index} out of order (it is not being received)`,
      );
    receiving.append(offset, chunk);
    if (!receiving.whole) return;
    this.receiving = null;
    for (const older of this.receivedWhole.filter((file) => !file.installing))
      this.files.discardReceived(older);
    this.receivedWhole = [...this.receivedWhole.filter((file) => file.installing), receiving];
  }

  /**
   * Writes a snapshot the node took as its file, durably, a part at a time as the state machine
   * reads it out, without recording it: a save of the answer then records the file as it is. One
   * staged and never saved (one from the leader overtook it) is removed by a later save or at open.
   */
  async stage(
    meta: SnapshotMeta,
    parts: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<StoredSnapshot> {
    const ref = await this.files.write(meta, parts);
    this.staged.set(ref.file, ref);
    return { meta, totalBytes: ref.bytes };
  }

  /**
   * The durable file a save of a snapshot the node took records: the one staged for it, or its
   * data written now. A snapshot older than the recorded one, or never staged, is refused.
   */
  async fileToSave(snapshot: Snapshot | StoredSnapshot): Promise<SnapshotFileRef> {
    if (snapshot.meta.index < this.recordedIndex) {
      throw new LogStoreError(
        `snapshot at ${snapshot.meta.index} is older than the stored one at ${this.recordedIndex}`,
      );
    }
    const name = SnapshotFiles.nameOf(snapshot.meta);
    const staged = this.staged.get(name);
    if ("data" in snapshot) {
      this.staged.delete(name);
      if (staged !== undefined && staged.bytes === snapshot.data.length) return staged;
      return this.files.write(snapshot.meta, [snapshot.data]);
    }
    if (staged?.bytes !== snapshot.totalBytes)
      throw new LogStoreError(
        `save of the snapshot at ${snapshot.meta.index} in ${this.where}, which was not staged`,
      );
    this.staged.delete(name);
    return staged;
  }

  /**
   * The durable file an install of the leader's snapshot records: its data written now, or the
   * snapshot received whole that `snapshot` stands for, under its own name (one not received whole
   * is refused).
   */
  async fileToInstall(snapshot: Snapshot | StoredSnapshot): Promise<SnapshotFileRef> {
    if ("data" in snapshot) return this.files.write(snapshot.meta, [snapshot.data]);
    const received = this.receivedWhole.find(
      (file) =>
        file.meta.index === snapshot.meta.index &&
        file.meta.term === snapshot.meta.term &&
        file.totalBytes === snapshot.totalBytes &&
        !file.installing,
    );
    if (received === undefined)
      throw new LogStoreError(
        `install of the snapshot at ${snapshot.meta.index} in ${this.where}, which was not received whole`,
      );
    received.installing = true;
    return this.files.placeReceived(received);
  }

  /** A range of a recorded snapshot, or of one received whole. */
  readChunk(meta: SnapshotMeta, offset: number, length: number): Uint8Array {
    const readable = [
      ...this.readable,
      ...this.receivedWhole.map((file) => ({ meta: file.meta, bytes: file.totalBytes, source: file })),
    ];
    return checkSnapshotRead(readable, meta, offset, length, this.where).source.read(offset, length);
  }

  /** Once a record names `ref`, the files it replaced go (never before: a crash keeps the old one). */
  async recorded(meta: SnapshotMeta, ref: SnapshotFileRef): Promise<void> {
    this.recordedIndex = meta.index;
    // Opened before the files it replaced are removed: the one before it is open already.
    this.keepReadable(meta, ref.bytes, this.files.openForReading(ref));
    // A received file installed now is read through the record's descriptor from here on.
    for (const file of this.receivedWhole.filter(
      (received) => SnapshotFiles.nameOf(received.meta) === ref.file,
    ))
      this.files.discardReceived(file);
    this.receivedWhole = this.receivedWhole.filter(
      (received) => SnapshotFiles.nameOf(received.meta) !== ref.file,
    );
    for (const name of this.staged.keys()) {
      if (name <= ref.file) this.staged.delete(name);
    }
    await this.files.removeStale(ref.file, meta.index);
  }

  /** Closes what is open; what was received and not installed does not outlive the process. */
  close(): void {
    this.closeReadable();
    if (this.receiving !== null) this.files.discardReceived(this.receiving);
    this.receiving = null;
    for (const file of this.receivedWhole.splice(0)) this.files.discardReceived(file);
  }

  /** Keeps `source` readable as the newest snapshot; the one before stays, older ones close. */
  private keepReadable(meta: SnapshotMeta, bytes: number, source: SnapshotSource): void {
    this.readable.unshift({ meta, bytes, source });
    for (const old of this.readable.splice(2)) old.source.close();
  }

  private closeReadable(): void {
    for (const held of this.readable.splice(0)) held.source.close();
  }
}
