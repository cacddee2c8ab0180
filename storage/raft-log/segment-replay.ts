// Reading a segment log back (segment-log-store.ts): every segment in order, each record checked and
// applied to the log being rebuilt, the entries' places in their files kept for reading them back.
// No entry's data is kept: a log as large as its state may allow (raft.snapshotLogBytesMax) would
// be held whole in memory at every start. Nor is a segment: each is read through one reused window
// (SegmentWindow), as a segment's fresh 64 MiB read whole cost more in page faults than the reading.
// Only the last record of the last segment may be torn (a crash while it was written); damage
// anywhere else, or entries missing between the offset and the last index, is refused.

import { readdirSync, rmSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { join } from "node:path";
import type { HardState } from "../../raft/core/index.js";
import { LogStoreError } from "../../raft/node/index.js";
import {
  type DecodedRecord,
  decodeRecord,
  type LogState,
  recordHeaderBytes,
  segmentMagic,
} from "./segment-records.js";

/** A segment file of the log. */
export interface Segment {
  readonly sequence: number;
  readonly path: string;
  /** Opened for the first read back of one of its entries. */
  reader: number | null;
  /** The highest index of a live entry written into it (0: none): it goes once compacted past. */
  highestIndex: number;
}

/** Where an entry stored earlier is, for reading it back (readEntries) and for its term. */
export interface EntryLocation {
  readonly segment: Segment;
  readonly position: number;
  readonly bytes: number;
  readonly term: number;
}

/** The last segment as replay left it: where records end, how many, a torn one, its size. */
export interface SegmentTail {
  readonly position: number;
  readonly records: number;
  readonly torn: { readonly from: number; readonly to: number } | null;
  readonly bytes: number;
}

export interface ReplayedLog {
  readonly segments: Segment[];
  readonly state: LogState;
  /** Where each of the entries offset + 1 .. last is. */
  readonly locations: EntryLocation[];
  /** Null: no segment yet. */
  readonly tail: SegmentTail | null;
}

const namePattern = /^(\d{16})\.seg$/;
/** The hard state of a log nothing was written to. */
export const emptyHardState: HardState = { term: 0, vote: null, commit: 0 };

export function segmentName(sequence: number): string {
  return `${String(sequence).padStart(16, "0")}.seg`;
}

/**
 * Reads the log in `directory` back; `where` names it in errors. Segments being started when a
 * crash came (`.seg.tmp`) are removed: none was in use.
 */
export async function replaySegments(directory: string, where: string): Promise<ReplayedLog> {
  for (const name of readdirSync(directory)) {
    if (name.endsWith(".seg.tmp")) rmSync(join(directory, name), { force: true });
  }
  const names = readdirSync(directory)
    .filter((name) => namePattern.test(name))
    .sort();
  const rebuilt = new LogBeingRebuilt(where);
  const window = new SegmentWindow();
  let tail: SegmentTail | null = null;
  for (const [i, name] of names.entries()) {
    const segment: Segment = {
      sequence: Number(namePattern.exec(name)?.[1]),
      path: join(directory, name),
      reader: null,
      highestIndex: 0,
    };
    rebuilt.segments.push(segment);
    const file = await window.open(segment.path, where);
    try {
      tail = await replaySegment(file, segment, rebuilt, i === names.length - 1, where);
    } finally {
      await file.close();
    }
  }
  return { ...rebuilt.finish(), segments: rebuilt.segments, tail };
}

/** Applies one segment's records to the log being rebuilt; answers where they end. */
async function replaySegment(
  file: OpenSegment,
  segment: Segment,
  rebuilt: LogBeingRebuilt,
  last: boolean,
  where: string,
): Promise<SegmentTail> {
  const magic = await file.at(0, segmentMagic.length);
  if (magic.length < segmentMagic.length || !segmentMagic.every((byte, at) => magic[at] === byte))
    throw new LogStoreError(`${where} is corrupt: ${segment.path} does not start as a Raft log segment`);
  let position = segmentMagic.length;
  let records = 0;
  for (;;) {
    // The header says the record's length; a length past the file's end is read as far as it
    // goes, and decodeRecord calls the record bad.
    const header = await file.at(position, recordHeaderBytes);
    const bodyBytes =
      header.length < recordHeaderBytes
        ? 0
        : new DataView(header.buffer, header.byteOffset, header.byteLength).getUint32(4);
    const record = decodeRecord(await file.at(position, recordHeaderBytes + bodyBytes), 0);
    if (record.kind === "end") break;
    if (record.kind === "bad") {
      // Only the last record written can be torn: zeros after it, and in the last segment.
      const claimedEnd = position + record.claimedEnd;
      if (last && (await file.zerosFrom(claimedEnd)))
        return { position, records, torn: { from: position, to: claimedEnd }, bytes: file.size };
      throw new LogStoreError(`${where} is corrupt: ${record.why} at byte ${position} of ${segment.path}`);
    }
    rebuilt.apply(record, segment, position);
    position += record.bytes;
    records++;
  }
  return { position, records, torn: null, bytes: file.size };
}

/** The bytes a segment is read through at a time (a larger record gets a window of its size). */
const windowBytes = 4 * 1024 * 1024;

/** One buffer through which segment files are read front to back, one file at a time. */
class SegmentWindow {
  private buffer = Buffer.allocUnsafe(windowBytes);

  async open(path: string, where: string): Promise<OpenSegment> {
    let handle: FileHandle;
    let size: number;
    try {
      handle = await open(path, "r");
      size = (await handle.stat()).size;
    } catch (error) {
      throw new LogStoreError(`${where} cannot be read: ${(error as Error).message}`, { cause: error });
    }
    return new OpenSegment(handle, size, where, (bytes) => {
      if (this.buffer.length < bytes) this.buffer = Buffer.allocUnsafe(bytes);
      return this.buffer;
    });
  }
}

/** A segment file being read: views of its bytes, valid until the next read. */
class OpenSegment {
  /** The file positions the buffer holds. */
  private start = 0;
  private end = 0;
  private buffer: Buffer | null = null;

  constructor(
    private readonly handle: FileHandle,
    readonly size: number,
    private readonly where: string,
    private readonly bufferOf: (bytes: number) => Buffer,
  ) {}

  /** The file's bytes from `position`, `length` of them or as many as the file has. */
  async at(position: number, length: number): Promise<Uint8Array> {
    const wanted = Math.max(0, Math.min(length, this.size - position));
    if (this.buffer === null || position < this.start || position + wanted > this.end) {
      const buffer = this.bufferOf(wanted);
      const bytes = Math.min(buffer.length, this.size - position);
      let read = 0;
      try {
        while (read < bytes) {
          const { bytesRead } = await this.handle.read(buffer, read, bytes - read, position + read);
          if (bytesRead === 0) break;
          read += bytesRead;
        }
      } catch (error) {
        throw new LogStoreError(`${this.where} cannot be read: ${(error as Error).message}`, {
          cause: error,
        });
      }
      if (read < wanted)
        throw new LogStoreError(`${this.where} cannot be read: a segment shrank while it was read`);
      this.buffer = buffer;
      this.start = position;
      this.end = position + read;
    }
    const from = position - this.start;
    return this.buffer.subarray(from, from + wanted);
  }

  /** Whether every byte from `position` to the file's end is zero. */
  async zerosFrom(position: number): Promise<boolean> {
    for (let at = position; at < this.size; ) {
      const bytes = await this.at(at, windowBytes);
      if (!bytes.every((byte) => byte === 0)) return false;
      at += bytes.length;
    }
    return true;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** The log as the records read so far make it. */
class LogBeingRebuilt {
  readonly segments: Segment[] = [];
  private state: LogState = {
    hardState: emptyHardState,
    offset: { index: 0, term: 0 },
    snapshot: null,
    last: 0,
  };
  /**
   * Where the entries are, by index. A segment deleted as compacted may leave entries its records
   * held missing until a later record's offset passes them: only finish() requires them all.
   */
  private readonly entries = new Map<number, EntryLocation>();

  constructor(private readonly where: string) {}

  apply(record: DecodedRecord, segment: Segment, position: number): void {
    if (record.kind === "state") {
      const { offset, last } = record.state;
      for (const index of this.entries.keys()) {
        if (index <= offset.index || index > last) this.entries.delete(index);
      }
      this.lowerHighest(last);
      this.state = record.state;
      return;
    }
    const hardState = record.hardState ?? this.state.hardState;
    if (record.places.length === 0) {
      this.state = { ...this.state, hardState };
      return;
    }
    const { first } = record;
    const { offset, last } = this.state;
    if (first <= offset.index || first > last + 1)
      throw new LogStoreError(
        `${this.where} is corrupt: entries from ${first} at byte ${position} of ${segment.path}, where the log holds ${offset.index + 1} to ${last}`,
      );
    // Conflict truncation: the record's entries replace every stored one from its first on.
    for (let index = first; index <= last; index++) this.entries.delete(index);
    this.lowerHighest(first - 1);
    record.places.forEach((place, i) => {
      this.entries.set(first + i, {
        segment,
        position: position + place.at,
        bytes: place.bytes,
        term: place.term,
      });
    });
    const newLast = first + record.places.length - 1;
    segment.highestIndex = Math.max(segment.highestIndex, newLast);
    this.state = { ...this.state, hardState, last: newLast };
  }

  /** The log, once every entry from the offset to the last index is there. */
  finish(): { state: LogState; locations: EntryLocation[] } {
    const locations: EntryLocation[] = [];
    for (let index = this.state.offset.index + 1; index <= this.state.last; index++) {
      const location = this.entries.get(index);
      if (location === undefined)
        throw new LogStoreError(
          `${this.where} has a gap: entry ${index} is missing (a segment file removed?)`,
        );
      locations.push(location);
    }
    return { state: this.state, locations };
  }

  /** No segment holds a live entry above `index` any more. */
  private lowerHighest(index: number): void {
    for (const segment of this.segments) segment.highestIndex = Math.min(segment.highestIndex, index);
  }
}
