// The durable LogStore: a node's Raft log, hard state and snapshot in LevelDB (classic-level).
// Every change is one atomic batch written with `sync: true` — LevelDB does not fsync by default,
// and a vote or an acknowledged append that is not on disk is a broken promise to the cluster.
// Entries carry a CRC-32 over their index and contents, so a damaged file is reported (naming the
// directory and index), never applied. It stores what Raft hands it: strongroom proposes
// ciphertext only, so nothing here is a secret in the clear.
//
// Key layout (one byte of kind, then the key):
//   0x01                  hard state       JSON {term, vote, commit}
//   0x02                  log offset       JSON {index, term} of the last compacted entry
//   0x03                  snapshot record  JSON {index, term, membership, file, bytes, crc32}
//   0x04                  snapshot data    raw bytes: stores written before snapshot files only
//   0x10 + index (u64 BE) entry            crc32 (u32 BE) | term (u64 BE) | type (u8) | data
//
// The snapshot's data is a file the record names (snapshot-files.ts).

import { crc32 } from "node:zlib";
import type {
  Entry,
  EntryType,
  HardState,
  LogOffset,
  PersistentState,
  Snapshot,
  SnapshotMeta,
  StoredSnapshot,
} from "../../raft/core/index.js";
import {
  checkAppendable,
  checkCompactable,
  type LogStore,
  LogStoreError,
  readStoredEntries,
} from "../../raft/node/index.js";
import {
  type BinaryLevel,
  isLevelCorruption,
  type LevelBatch,
  openBinaryLevel,
  writeBatch,
} from "../leveldb.js";
import { HeldSnapshots } from "./held-snapshots.js";
import type { SnapshotFileRef } from "./snapshot-files.js";

const hardStateKey = Uint8Array.of(0x01);
const offsetKey = Uint8Array.of(0x02);
const snapshotMetaKey = Uint8Array.of(0x03);
/** Where stores written before snapshot files kept the data; read when a record names no file. */
const legacySnapshotDataKey = Uint8Array.of(0x04);
const entryKind = 0x10;
const entryHeaderBytes = 4 + 8 + 1;
const entryTypes: readonly EntryType[] = ["normal", "config"];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Durability is the point: every write waits for fsync. Named so the call sites read as a decision. */
const synced = { sync: true } as const;

export class LevelLogStore implements LogStore {
  private db: BinaryLevel | null;
  private offset: LogOffset = { index: 0, term: 0 };
  private lastIndex = 0;
  /** The snapshot files: recorded, staged, being received. */
  private readonly snapshots: HeldSnapshots;
  /** What open read, for the first load; dropped by any change to the store. */
  private loadedAtOpen: PersistentState | null = null;

  private constructor(
    readonly directory: string,
    db: BinaryLevel,
  ) {
    this.db = db;
    this.snapshots = new HeldSnapshots(directory, `the Raft log in ${directory}`);
  }

  /** Opens (creating if needed) the store in `directory`. One process at a time: LevelDB locks it. */
  static async open(directory: string): Promise<LevelLogStore> {
    let db: BinaryLevel;
    try {
      db = await openBinaryLevel(directory);
    } catch (error) {
      throw new LogStoreError(`cannot open the Raft log in ${directory}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const store = new LevelLogStore(directory, db);
    try {
      store.loadedAtOpen = await store.read();
    } catch (error) {
      // Release the directory's lock: the caller reports the damage, it must not also be locked out.
      await store.close();
      if (isLevelCorruption(error)) {
        throw new LogStoreError(
          `the Raft log in ${directory} is corrupt (LevelDB: ${(error as Error).message})`,
          { cause: error },
        );
      }
      throw error;
    }
    return store;
  }

  /**
   * Everything stored; the snapshot in its file as a StoredSnapshot (read back through
   * readSnapshotChunk). The first call after open answers what open read to check the store (the
   * Raft node loads once at start), so the snapshot file is not checked twice; later calls read again.
   */
  async load(): Promise<PersistentState> {
    this.open();
    const loaded = this.loadedAtOpen;
    this.loadedAtOpen = null;
    return loaded ?? this.read();
  }

  private async read(): Promise<PersistentState> {
    const db = this.open();
    const hardState = this.parseRecord<HardState>(await db.get(hardStateKey), "hard state") ?? {
      term: 0,
      vote: null,
      commit: 0,
    };
    const offset = this.parseRecord<LogOffset>(await db.get(offsetKey), "log offset") ?? {
      index: 0,
      term: 0,
    };
    const record = this.parseRecord<SnapshotRecord>(await db.get(snapshotMetaKey), "snapshot metadata");
    // A snapshot in its file is checked, not read into memory: the core and a restore read it back.
    let snapshot: Snapshot | StoredSnapshot | null = null;
    if (record !== null) {
      const { file, bytes, crc32: checksum, ...meta } = record;
      if (file !== undefined && bytes !== undefined && checksum !== undefined) {
        snapshot = await this.snapshots.load({ meta, ref: { file, bytes, crc32: checksum } });
      } else {
        const data = await db.get(legacySnapshotDataKey);
        if (data === undefined)
          throw new LogStoreError(
            `the Raft log in ${this.directory} has snapshot metadata but no snapshot data`,
          );
        snapshot = await this.snapshots.load({ meta, data: copy(data) });
      }
    } else {
      await this.snapshots.load(null);
    }
    const entries: Entry[] = [];
    for await (const [key, value] of db.iterator({
      gt: entryKey(offset.index),
      lt: Uint8Array.of(entryKind + 1),
    })) {
      const index = indexOfKey(key);
      const expected = offset.index + entries.length + 1;
      if (index !== expected) {
        throw new LogStoreError(
          `the Raft log in ${this.directory} has a gap: entry ${index} follows ${expected - 1}`,
        );
      }
      entries.push(this.decodeEntry(index, value));
    }
    this.offset = offset;
    this.lastIndex = offset.index + entries.length;
    return { hardState, snapshot, offset, entries };
  }

  async append(entries: readonly Entry[], hardState: HardState | null): Promise<void> {
    const db = this.open();
    this.loadedAtOpen = null;
    const first = entries[0];
    const batch: LevelBatch = [];
    if (first !== undefined) {
      checkAppendable({ offset: this.offset.index, last: this.lastIndex }, entries);
      // Conflict truncation: stored entries past the new ones go in the same batch.
      const newLast = first.index + entries.length - 1;
      for (let index = newLast + 1; index <= this.lastIndex; index++)
        batch.push({ type: "del", key: entryKey(index) });
      for (const entry of entries)
        batch.push({ type: "put", key: entryKey(entry.index), value: encodeEntry(entry) });
    }
    if (hardState !== null) batch.push({ type: "put", key: hardStateKey, value: encodeRecord(hardState) });
    if (batch.length === 0) return;
    await writeBatch(db, batch, synced);
    if (first !== undefined) this.lastIndex = first.index + entries.length - 1;
  }

  /**
   * Entries read back for the Raft core, synchronously (it let go of them in memory): one LevelDB
   * get each, from LevelDB's caches or the page cache for the recent entries a follower lags by.
   * Blocks the loop for a cold read; only a lagging follower's catch-up comes here.
   */
  readEntries(low: number, high: number, bytesMax: number): Entry[] {
    const db = this.open();
    const stored = {
      first: this.offset.index + 1,
      last: this.lastIndex,
      where: `the Raft log in ${this.directory}`,
    };
    return readStoredEntries(stored, low, high, bytesMax, (index) => {
      const value = db.getSync(entryKey(index));
      if (value === undefined)
        throw new LogStoreError(`entry ${index} is missing from the Raft log in ${this.directory}`);
      return this.decodeEntry(index, value);
    });
  }

  /** A chunk of the snapshot the leader is sending, written into its file (HeldSnapshots). */
  receiveSnapshotChunk(meta: SnapshotMeta, totalBytes: number, offset: number, chunk: Uint8Array): void {
    this.open();
    this.snapshots.receiveChunk(meta, totalBytes, offset, chunk);
  }

  async installSnapshot(snapshot: Snapshot | StoredSnapshot): Promise<void> {
    const db = this.open();
    this.loadedAtOpen = null;
    const ref = await this.snapshots.fileToInstall(snapshot);
    const batch: LevelBatch = [];
    for (let index = this.offset.index + 1; index <= this.lastIndex; index++)
      batch.push({ type: "del", key: entryKey(index) });
    const offset: LogOffset = { index: snapshot.meta.index, term: snapshot.meta.term };
    batch.push(...snapshotRecordWrites(snapshot.meta, ref));
    batch.push({ type: "put", key: offsetKey, value: encodeRecord(offset) });
    batch.push(...(await this.commitRaisedTo(snapshot.meta.index)));
    await writeBatch(db, batch, synced);
    this.offset = offset;
    this.lastIndex = offset.index;
    await this.snapshots.recorded(snapshot.meta, ref);
  }

  /**
   * Writes a snapshot the node took as its file, durably, a part at a time as the state machine
   * reads it out, without making it the node's snapshot: the Raft node calls this beside its loop,
   * and saveSnapshot of the answer in the loop then only writes the record.
   */
  async stageSnapshot(
    meta: SnapshotMeta,
    parts: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<StoredSnapshot> {
    this.open();
    return this.snapshots.stage(meta, parts);
  }

  async saveSnapshot(snapshot: Snapshot | StoredSnapshot): Promise<void> {
    const db = this.open();
    this.loadedAtOpen = null;
    const ref = await this.snapshots.fileToSave(snapshot);
    await writeBatch(
      db,
      [...snapshotRecordWrites(snapshot.meta, ref), ...(await this.commitRaisedTo(snapshot.meta.index))],
      synced,
    );
    await this.snapshots.recorded(snapshot.meta, ref);
  }

  readSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Uint8Array {
    this.open();
    return this.snapshots.readChunk(meta, offset, length);
  }

  async compact(offset: LogOffset): Promise<void> {
    const db = this.open();
    this.loadedAtOpen = null;
    if (offset.index <= this.offset.index) return;
    const value =
      offset.index <= this.lastIndex && offset.index <= this.snapshots.recordedIndex
        ? await db.get(entryKey(offset.index))
        : undefined;
    checkCompactable(
      { offset: this.offset.index, last: this.lastIndex, snapshotIndex: this.snapshots.recordedIndex },
      offset,
      value === undefined ? undefined : this.decodeEntry(offset.index, value).term,
    );
    const batch: LevelBatch = [];
    for (let index = this.offset.index + 1; index <= offset.index; index++)
      batch.push({ type: "del", key: entryKey(index) });
    batch.push({ type: "put", key: offsetKey, value: encodeRecord(offset) });
    await writeBatch(db, batch, synced);
    this.offset = offset;
  }

  async close(): Promise<void> {
    const db = this.db;
    this.db = null;
    this.loadedAtOpen = null;
    this.snapshots.close();
    await db?.close();
  }

  private open(): BinaryLevel {
    if (this.db === null) throw new LogStoreError("the log store is closed");
    return this.db;
  }

  /**
   * The write that raises the stored commit index to a snapshot's (none when it is there already):
   * a snapshot holds only committed entries, and the core persists a new commit index only beside
   * other writes, so the stored one may lag the index a snapshot was taken at.
   */
  private async commitRaisedTo(index: number): Promise<LevelBatch> {
    const hardState = await this.storedHardState();
    if (hardState.commit >= index) return [];
    return [{ type: "put", key: hardStateKey, value: encodeRecord({ ...hardState, commit: index }) }];
  }

  private async storedHardState(): Promise<HardState> {
    return (
      this.parseRecord<HardState>(await this.open().get(hardStateKey), "hard state") ?? {
        term: 0,
        vote: null,
        commit: 0,
      }
    );
  }

  private parseRecord<T>(value: Uint8Array | undefined, what: string): T | null {
    if (value === undefined) return null;
    try {
      return JSON.parse(decoder.decode(value)) as T;
    } catch (error) {
      throw new LogStoreError(`the ${what} in the Raft log in ${this.directory} is unreadable (corrupt?)`, {
        cause: error,
      });
    }
  }

  private decodeEntry(index: number, value: Uint8Array): Entry {
    if (value.length < entryHeaderBytes)
      throw new LogStoreError(`entry ${index} in the Raft log in ${this.directory} is truncated`);
    const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
    const checksum = view.getUint32(0);
    if (checksum !== entryChecksum(index, value.subarray(4))) {
      throw new LogStoreError(
        `entry ${index} in the Raft log in ${this.directory} fails its checksum (corrupt)`,
      );
    }
    const term = Number(view.getBigUint64(4));
    const type = entryTypes[view.getUint8(12)];
    if (type === undefined)
      throw new LogStoreError(`entry ${index} in the Raft log in ${this.directory} has an unknown type`);
    return { index, term, type, data: copy(value.subarray(entryHeaderBytes)) };
  }
}

function entryKey(index: number): Uint8Array {
  const key = new Uint8Array(9);
  key[0] = entryKind;
  new DataView(key.buffer).setBigUint64(1, BigInt(index));
  return key;
}

function indexOfKey(key: Uint8Array): number {
  return Number(new DataView(key.buffer, key.byteOffset, key.byteLength).getBigUint64(1));
}

function encodeEntry(entry: Entry): Uint8Array {
  const value = new Uint8Array(entryHeaderBytes + entry.data.length);
  const view = new DataView(value.buffer);
  view.setBigUint64(4, BigInt(entry.term));
  view.setUint8(12, entryTypes.indexOf(entry.type));
  value.set(entry.data, entryHeaderBytes);
  view.setUint32(0, entryChecksum(entry.index, value.subarray(4)));
  return value;
}

/** CRC-32 over the index and the stored bytes: a value copied under another key fails too. */
function entryChecksum(index: number, body: Uint8Array): number {
  return crc32(body, crc32(entryKey(index)));
}

/** The snapshot record: the snapshot's meta and its file. Legacy records have no file fields. */
type SnapshotRecord = SnapshotMeta & Partial<SnapshotFileRef>;

/** Writes that make `ref` the snapshot: its record, and no legacy data left in LevelDB. */
function snapshotRecordWrites(meta: SnapshotMeta, ref: SnapshotFileRef): LevelBatch {
  const record: SnapshotRecord = { ...meta, ...ref };
  return [
    { type: "put", key: snapshotMetaKey, value: encodeRecord(record) },
    { type: "del", key: legacySnapshotDataKey },
  ];
}

function encodeRecord(record: object): Uint8Array {
  return encoder.encode(JSON.stringify(record));
}

/** LevelDB hands out views of its own buffers; entries outlive them. */
function copy(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}
