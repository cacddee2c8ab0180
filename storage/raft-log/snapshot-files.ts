// A node's Raft snapshots as files beside its LevelDB log (<raft>/snapshots/), not as one LevelDB
// value. A snapshot is the whole state (tens of MiB with 4 KiB secrets): as a LevelDB value it was
// copied on the event loop, written to LevelDB's journal, then rewritten by every compaction that
// touched it. As a file it is written once, by libuv's thread pool, part by part as the state
// machine reads it out, while the Raft loop goes on (LevelLogStore.stageSnapshot); a leader's
// snapshot is written as its chunks arrive (receive, then placeReceived).
//
// A file becomes the snapshot only when the log's snapshot record names it, with its length and
// CRC-32; the file is durable (written, fsynced, renamed into place, directory fsynced) before that
// record is written. A crash at any point leaves the previous record naming the previous file,
// which is removed only after the new record is durable; files no record names are removed when
// the store opens.

import { randomBytes } from "node:crypto";
import {
  closeSync,
  fdatasync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  writeSync,
} from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { SnapshotMeta } from "../../raft/core/index.js";
import { LogStoreError } from "../../raft/node/index.js";
import { syncDirectory } from "./sync-directory.js";

/** What the log's snapshot record holds of the file: which, how long, and its checksum. */
export interface SnapshotFileRef {
  readonly file: string;
  readonly bytes: number;
  readonly crc32: number;
}

const namePattern = /^(\d{20})-(\d{20})\.snap$/;
/** Checksummed and written a slice at a time, with the event loop served between slices. */
const sliceBytes = 4 * 1024 * 1024;

export class SnapshotFiles {
  readonly directory: string;
  /** Files being written now: never removed from under their writer. */
  private readonly writing = new Set<string>();

  constructor(logDirectory: string) {
    this.directory = join(logDirectory, "snapshots");
    mkdirSync(this.directory, { recursive: true });
  }

  /** The file name of the snapshot at `meta`: its index and term, so names sort by index. */
  static nameOf(meta: Pick<SnapshotMeta, "index" | "term">): string {
    return `${String(meta.index).padStart(20, "0")}-${String(meta.term).padStart(20, "0")}.snap`;
  }

  /**
   * Writes `parts` durably, in order, as the file of `meta` and answers its reference for the log's
   * record. Parts are written as they come (a snapshot read out of the state machine is never
   * whole in memory); a large part is written a slice at a time.
   */
  async write(
    meta: SnapshotMeta,
    parts: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<SnapshotFileRef> {
    const file = SnapshotFiles.nameOf(meta);
    // A name of its own: the leader's snapshot and the node's own may be written at once.
    const temporary = `${file}.${randomBytes(6).toString("hex")}.tmp`;
    this.writing.add(file);
    this.writing.add(temporary);
    try {
      let checksum = 0;
      let bytes = 0;
      const handle = await open(join(this.directory, temporary), "w", 0o600);
      try {
        for await (const part of parts) {
          for (let start = 0; start < part.length; start += sliceBytes) {
            const slice = part.subarray(start, start + sliceBytes);
            checksum = crc32(slice, checksum);
            let written = 0;
            while (written < slice.length) {
              const { bytesWritten } = await handle.write(slice, written, slice.length - written);
              written += bytesWritten;
            }
            bytes += slice.length;
          }
        }
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await rename(join(this.directory, temporary), join(this.directory, file));
      await syncDirectory(this.directory);
      return { file, bytes, crc32: checksum };
    } catch (error) {
      // Parts that failed mid-way (a state machine's read) leave no temporary file behind.
      await rm(join(this.directory, temporary), { force: true });
      throw error;
    } finally {
      this.writing.delete(file);
      this.writing.delete(temporary);
    }
  }

  /**
   * Checks the file a record names, a slice at a time (never whole in memory), refusing one that
   * is missing, short, long or damaged.
   */
  async check(ref: SnapshotFileRef): Promise<void> {
    const path = this.pathOf(ref);
    let bytes = 0;
    let checksum = 0;
    try {
      const handle = await open(path, "r");
      try {
        const slice = new Uint8Array(sliceBytes);
        for (;;) {
          const { bytesRead } = await handle.read(slice, 0, slice.length, bytes);
          if (bytesRead === 0) break;
          checksum = crc32(slice.subarray(0, bytesRead), checksum);
          bytes += bytesRead;
        }
      } finally {
        await handle.close();
      }
    } catch (error) {
      throw new LogStoreError(`the snapshot file ${path} cannot be read: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (bytes !== ref.bytes || checksum !== ref.crc32) {
      throw new LogStoreError(
        `the snapshot file ${path} is damaged: ${bytes} bytes where ${ref.bytes} were written, or its checksum differs`,
      );
    }
  }

  /**
   * Opens the file a record names for reading ranges of it (a leader sending it in chunks). It
   * stays readable through the descriptor after a newer snapshot's record removed the file.
   */
  openForReading(ref: SnapshotFileRef): OpenSnapshotFile {
    const path = this.pathOf(ref);
    let descriptor: number;
    try {
      descriptor = openSync(path, "r");
    } catch (error) {
      throw new LogStoreError(`the snapshot file ${path} cannot be opened: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const size = fstatSync(descriptor).size;
    if (size !== ref.bytes) {
      closeSync(descriptor);
      throw new LogStoreError(`the snapshot file ${path} has ${size} bytes where ${ref.bytes} were written`);
    }
    return new OpenSnapshotFile(path, descriptor);
  }

  /**
   * Starts the file of a snapshot received from the leader, written a chunk at a time as the Raft
   * core accepts them, under a temporary name (never removed while it is in use here).
   */
  receive(meta: SnapshotMeta, totalBytes: number): ReceivedSnapshotFile {
    const file = SnapshotFiles.nameOf(meta);
    const temporary = `${file}.${randomBytes(6).toString("hex")}.tmp`;
    const path = join(this.directory, temporary);
    let descriptor: number;
    try {
      descriptor = openSync(path, "wx+", 0o600);
    } catch (error) {
      throw new LogStoreError(`the snapshot file ${path} cannot be created: ${(error as Error).message}`, {
        cause: error,
      });
    }
    this.writing.add(temporary);
    return new ReceivedSnapshotFile(meta, totalBytes, temporary, path, descriptor);
  }

  /**
   * Makes a snapshot received whole durable under its own name (synced, renamed into place, the
   * directory synced) and answers its reference for the log's record.
   */
  async placeReceived(received: ReceivedSnapshotFile): Promise<SnapshotFileRef> {
    const ref = await received.sync();
    this.writing.add(ref.file);
    try {
      await rename(received.path, join(this.directory, ref.file));
      await syncDirectory(this.directory);
    } finally {
      this.writing.delete(ref.file);
      this.writing.delete(received.temporary);
    }
    return ref;
  }

  /** Closes a received file; removes it unless it was moved into place. */
  discardReceived(received: ReceivedSnapshotFile): void {
    received.close();
    rmSync(received.path, { force: true });
    this.writing.delete(received.temporary);
  }

  /**
   * Removes every snapshot file but `keep` (the one the record names; none with null) whose index
   * is at most `throughIndex`, and every leftover temporary file - except files being written.
   */
  async removeStale(keep: string | null, throughIndex: number): Promise<void> {
    for (const name of readdirSync(this.directory)) {
      if (name === keep || this.writing.has(name)) continue;
      const match = namePattern.exec(name);
      const stale = match === null ? name.endsWith(".tmp") : Number(match[1]) <= throughIndex;
      if (stale) await rm(join(this.directory, name), { force: true });
    }
  }

  /** At open, nothing is being written: every file but the one the record names goes. */
  removeUnnamed(keep: string | null): void {
    for (const name of readdirSync(this.directory)) {
      if (name !== keep) rmSync(join(this.directory, name), { force: true, recursive: true });
    }
  }

  /** The path of the file a record names, refusing a name that is not a snapshot file's. */
  private pathOf(ref: SnapshotFileRef): string {
    if (!namePattern.test(ref.file))
      throw new LogStoreError(
        `the snapshot record in ${this.directory} names no snapshot file (${ref.file})`,
      );
    return join(this.directory, ref.file);
  }
}

/** A snapshot file open for reading ranges, synchronously (the Raft core asks while it steps). */
export class OpenSnapshotFile {
  constructor(
    readonly path: string,
    private descriptor: number | null,
  ) {}

  /** Exactly `length` bytes from `offset`; a file that ends early is damaged. */
  read(offset: number, length: number): Uint8Array {
    if (this.descriptor === null) throw new LogStoreError(`the snapshot file ${this.path} is closed`);
    const bytes = new Uint8Array(length);
    let done = 0;
    try {
      while (done < length) {
        const read = readSync(this.descriptor, bytes, done, length - done, offset + done);
        if (read === 0) break;
        done += read;
      }
    } catch (error) {
      throw new LogStoreError(`the snapshot file ${this.path} cannot be read: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (done < length)
      throw new LogStoreError(
        `the snapshot file ${this.path} ends at ${offset + done}, before ${offset + length}`,
      );
    return bytes;
  }

  close(): void {
    if (this.descriptor !== null) closeSync(this.descriptor);
    this.descriptor = null;
  }
}

/**
 * A snapshot received from the leader, as its file under a temporary name: written a chunk at a
 * time, synchronously (the core hands each chunk while it steps; a write to the page cache), its
 * CRC-32 kept as it goes, and readable once whole (the node may lead before it is installed).
 * SnapshotFiles places it under its own name or discards it.
 */
export class ReceivedSnapshotFile {
  private bytes = 0;
  private checksum = 0;
  private readonly reader: OpenSnapshotFile;
  /** Taken by an install: not discarded when a newer snapshot is received whole meanwhile. */
  installing = false;

  constructor(
    readonly meta: SnapshotMeta,
    readonly totalBytes: number,
    /** Its name in the snapshots directory while it is received. */
    readonly temporary: string,
    readonly path: string,
    private readonly descriptor: number,
  ) {
    this.reader = new OpenSnapshotFile(path, descriptor);
  }

  get whole(): boolean {
    return this.bytes === this.totalBytes;
  }

  /** Writes `chunk` at `offset`, which must be where the bytes received so far end. */
  append(offset: number, chunk: Uint8Array): void {
    if (offset !== this.bytes || offset + chunk.length > this.totalBytes)
      throw new LogStoreError(
        `the snapshot file ${this.path} was handed bytes at ${offset} out of order (it holds ${this.bytes} of ${this.totalBytes})`,
      );
    try {
      let written = 0;
      while (written < chunk.length)
        written += writeSync(this.descriptor, chunk, written, chunk.length - written, offset + written);
    } catch (error) {
      throw new LogStoreError(
        `the snapshot file ${this.path} cannot be written: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    this.checksum = crc32(chunk, this.checksum);
    this.bytes += chunk.length;
  }

  /** Exactly `length` bytes from `offset` of the snapshot received whole. */
  read(offset: number, length: number): Uint8Array {
    return this.reader.read(offset, length);
  }

  /** Makes the whole snapshot's bytes durable; answers the reference its record will hold. */
  async sync(): Promise<SnapshotFileRef> {
    if (!this.whole)
      throw new LogStoreError(
        `the snapshot file ${this.path} holds ${this.bytes} of ${this.totalBytes} bytes`,
      );
    try {
      await new Promise<void>((resolve, reject) =>
        fdatasync(this.descriptor, (error) => (error === null ? resolve() : reject(error))),
      );
    } catch (error) {
      throw new LogStoreError(
        `the snapshot file ${this.path} cannot be synced: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    return { file: SnapshotFiles.nameOf(this.meta), bytes: this.bytes, crc32: this.checksum };
  }

  close(): void {
    this.reader.close();
  }
}
