// The records of the Raft log's segment files (segment-log-store.ts), encoded and decoded. A
// segment starts with a magic and holds records back to back; the bytes after the last record are
// zeros (segments are preallocated), so a record header of zeros ends a segment.
//
// Record: crc32 (u32 BE, over everything after it) | body length (u32 BE) | kind (u8) | body
//   kind 1, append: first index (u64) | entry count (u32) | hard state length (u32, 0: none) |
//           hard state (JSON) | entries, each: crc32 (u32, over its index and the rest) |
//           term (u64) | type (u8) | data length (u32) | data
//     Stored entries from `first` on are replaced by the record's entries (conflict truncation).
//   kind 2, state (JSON): the hard state, the compaction offset, the snapshot record and the last
//     index; entries outside (offset, last] are dropped. It starts every segment (so that older
//     segments can be deleted) and records every snapshot and compaction.

import { crc32 } from "node:zlib";
import type { Entry, EntryType, HardState, LogOffset, SnapshotMeta } from "../../raft/core/index.js";
import type { SnapshotFileRef } from "./snapshot-files.js";

export const segmentMagic = new TextEncoder().encode("srlog\u0000v1");
export const recordHeaderBytes = 9;
/** An entry's bytes before its data: crc32, term, type, data length. */
export const entryHeaderBytes = 4 + 8 + 1 + 4;
const appendHeaderBytes = 8 + 4 + 4;

const appendKind = 1;
const stateKind = 2;
const entryTypes: readonly EntryType[] = ["normal", "config"];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The snapshot the log's state names: its meta and its file. */
export interface SnapshotRecord {
  readonly meta: SnapshotMeta;
  readonly ref: SnapshotFileRef;
}

/** What a state record sets. */
export interface LogState {
  readonly hardState: HardState;
  readonly offset: LogOffset;
  readonly snapshot: SnapshotRecord | null;
  /** The last index of the log: entries after it are dropped (after an installed snapshot). */
  readonly last: number;
}

/** Where an entry's bytes are in its record, for reading it back alone, and its term. */
export interface EntryPlace {
  /** From the record's start. */
  readonly at: number;
  readonly bytes: number;
  readonly term: number;
}

export type DecodedRecord =
  | {
      readonly kind: "append";
      readonly first: number;
      /** One per entry, from `first` on. */
      readonly places: EntryPlace[];
      readonly hardState: HardState | null;
      readonly bytes: number;
    }
  | { readonly kind: "state"; readonly state: LogState; readonly bytes: number };

/** One decoded record, the end of the records (a zero header), or a record that fails its checks. */
export type RecordRead =
  | DecodedRecord
  | { readonly kind: "end" }
  | { readonly kind: "bad"; readonly claimedEnd: number; readonly why: string };

export function encodeAppend(entries: readonly Entry[], hardState: HardState | null): Uint8Array {
  const hardStateBytes = hardState === null ? new Uint8Array(0) : encoder.encode(JSON.stringify(hardState));
  let bodyBytes = appendHeaderBytes + hardStateBytes.length;
  for (const entry of entries) bodyBytes += entryHeaderBytes + entry.data.length;
  const record = new Uint8Array(recordHeaderBytes + bodyBytes);
  const view = new DataView(record.buffer);
  view.setUint8(8, appendKind);
  let at = recordHeaderBytes;
  view.setBigUint64(at, BigInt(entries[0]?.index ?? 0));
  view.setUint32(at + 8, entries.length);
  view.setUint32(at + 12, hardStateBytes.length);
  at += appendHeaderBytes;
  record.set(hardStateBytes, at);
  at += hardStateBytes.length;
  for (const entry of entries) {
    view.setBigUint64(at + 4, BigInt(entry.term));
    view.setUint8(at + 12, entryTypes.indexOf(entry.type));
    view.setUint32(at + 13, entry.data.length);
    record.set(entry.data, at + entryHeaderBytes);
    const end = at + entryHeaderBytes + entry.data.length;
    view.setUint32(at, entryChecksum(entry.index, record.subarray(at + 4, end)));
    at = end;
  }
  return seal(record, view);
}

export function encodeState(state: LogState): Uint8Array {
  const body = encoder.encode(JSON.stringify(state));
  const record = new Uint8Array(recordHeaderBytes + body.length);
  const view = new DataView(record.buffer);
  view.setUint8(8, stateKind);
  record.set(body, recordHeaderBytes);
  return seal(record, view);
}

/** Fills in the body's length and the record's checksum. */
function seal(record: Uint8Array, view: DataView): Uint8Array {
  view.setUint32(4, record.length - recordHeaderBytes);
  view.setUint32(0, crc32(record.subarray(4)));
  return record;
}

/**
 * The record at `position` of a segment's bytes. Its entries are not decoded: `places` say where
 * each one's bytes are, from the record's start, and its term; the record's checksum covers them,
 * and each is checked again when read back alone (decodeEntry).
 */
export function decodeRecord(segment: Uint8Array, position: number): RecordRead {
  if (position + recordHeaderBytes > segment.length) return { kind: "end" };
  const view = new DataView(segment.buffer, segment.byteOffset + position, segment.length - position);
  const checksum = view.getUint32(0);
  const bodyBytes = view.getUint32(4);
  if (checksum === 0 && bodyBytes === 0 && view.getUint8(8) === 0) return { kind: "end" };
  const end = position + recordHeaderBytes + bodyBytes;
  const bad = (why: string): RecordRead => ({ kind: "bad", claimedEnd: Math.min(end, segment.length), why });
  if (end > segment.length) return bad(`a record of ${bodyBytes} bytes runs past the end of the file`);
  const record = segment.subarray(position, end);
  if (crc32(record.subarray(4)) !== checksum) return bad("a record fails its checksum");
  const kind = view.getUint8(8);
  try {
    if (kind === appendKind) return decodeAppend(record, view);
    if (kind === stateKind)
      return {
        kind: "state",
        state: JSON.parse(decoder.decode(record.subarray(recordHeaderBytes))) as LogState,
        bytes: record.length,
      };
  } catch (error) {
    return bad(`a record that passes its checksum is unreadable (${(error as Error).message})`);
  }
  return bad(`a record of unknown kind ${kind}`);
}

function decodeAppend(record: Uint8Array, view: DataView): DecodedRecord {
  let at = recordHeaderBytes;
  const first = Number(view.getBigUint64(at));
  const count = view.getUint32(at + 8);
  const hardStateBytes = view.getUint32(at + 12);
  at += appendHeaderBytes;
  const hardState =
    hardStateBytes === 0
      ? null
      : (JSON.parse(decoder.decode(record.subarray(at, at + hardStateBytes))) as HardState);
  at += hardStateBytes;
  const places: EntryPlace[] = [];
  for (let i = 0; i < count; i++) {
    if (at + entryHeaderBytes > record.length) throw new Error(`entry ${first + i} runs past its record`);
    const bytes = entryHeaderBytes + view.getUint32(at + 13);
    if (at + bytes > record.length) throw new Error(`entry ${first + i} runs past its record`);
    if (entryTypes[view.getUint8(at + 12)] === undefined)
      throw new Error(`entry ${first + i} has an unknown type`);
    places.push({ at, bytes, term: Number(view.getBigUint64(at + 4)) });
    at += bytes;
  }
  if (at !== record.length) throw new Error("bytes after the last entry");
  return { kind: "append", first, places, hardState, bytes: record.length };
}

/** One entry's bytes (at an EntryPlace), checked against its checksum and copied out. */
export function decodeEntry(index: number, bytes: Uint8Array): Entry {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < entryHeaderBytes || bytes.length !== entryHeaderBytes + view.getUint32(13))
    throw new Error(`entry ${index} is truncated`);
  if (view.getUint32(0) !== entryChecksum(index, bytes.subarray(4)))
    throw new Error(`entry ${index} fails its checksum`);
  const type = entryTypes[view.getUint8(12)];
  if (type === undefined) throw new Error(`entry ${index} has an unknown type`);
  // A copy, as a plain Uint8Array: a Buffer read from the file would be sliced as a view of it.
  return {
    index,
    term: Number(view.getBigUint64(4)),
    type,
    data: new Uint8Array(bytes.subarray(entryHeaderBytes)),
  };
}

/**
 * entryChecksum's index bytes, filled and read within one call: not a typed array per entry, whose
 * `.buffer` would cost a malloc each (on every node, for every entry written or read back).
 */
const checksumIndex = new Uint8Array(8);
const checksumIndexView = new DataView(checksumIndex.buffer);

/** CRC-32 over the index and the entry's bytes: an entry read from the wrong place fails. */
function entryChecksum(index: number, body: Uint8Array): number {
  checksumIndexView.setBigUint64(0, BigInt(index));
  return crc32(body, crc32(checksumIndex));
}
