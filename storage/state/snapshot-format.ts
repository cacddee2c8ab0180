// The state machine's snapshot format: every key and value of its LevelDB, read through one
// iterator (LevelDB iterators see a consistent point-in-time view), framed as checksummed chunks
// so a damaged transfer or file is refused before anything is overwritten. Values are barrier
// ciphertext and non-secret metadata: a snapshot holds no secret in the clear.
//
//   header: "SRSNAP" | format version (u8 = 1) | applied index (u64 BE)
//   chunks: length (u32 BE) | CRC-32 of the payload (u32 BE) | payload
//   payload: records, each key length (u32 BE) | key | value length (u32 BE) | value
//   the last chunk is empty (length 0): a truncated snapshot is detected

import { crc32 } from "node:zlib";
import { concatBytes } from "../../raft/core/index.js";
import { StateError } from "./errors.js";

const magic = new TextEncoder().encode("SRSNAP");
const formatVersion = 1;
const headerBytes = magic.length + 1 + 8;
const chunkPayloadBytes = 256 * 1024;

export interface SnapshotRecord {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

/**
 * Encodes records (in key order) as a snapshot, a part at a time: the header, then each chunk's
 * frame and payload as soon as 256 KiB of records are in it. A caller writing the parts to a file
 * holds one chunk of the state in memory, never the whole of it.
 */
export async function* encodeSnapshot(
  appliedIndex: number,
  records: AsyncIterable<SnapshotRecord> | Iterable<SnapshotRecord>,
): AsyncGenerator<Uint8Array> {
  const header = new Uint8Array(headerBytes);
  header.set(magic, 0);
  header[magic.length] = formatVersion;
  new DataView(header.buffer).setBigUint64(magic.length + 1, BigInt(appliedIndex));
  yield header;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  for await (const record of records) {
    const lengths = new Uint8Array(8);
    const view = new DataView(lengths.buffer);
    view.setUint32(0, record.key.length);
    view.setUint32(4, record.value.length);
    pending.push(lengths.subarray(0, 4), record.key, lengths.subarray(4), record.value);
    pendingBytes += 8 + record.key.length + record.value.length;
    if (pendingBytes >= chunkPayloadBytes) {
      yield* chunkParts(concatBytes(pending, pendingBytes));
      pending = [];
      pendingBytes = 0;
    }
  }
  if (pendingBytes > 0) yield* chunkParts(concatBytes(pending, pendingBytes));
  // The empty last chunk: a snapshot cut short anywhere before it is refused.
  yield* chunkParts(new Uint8Array(0));
}

/** A chunk's frame (length, CRC-32), then its payload unless empty. */
function chunkParts(payload: Uint8Array): Uint8Array[] {
  const frame = new Uint8Array(8);
  const view = new DataView(frame.buffer);
  view.setUint32(0, payload.length);
  view.setUint32(4, crc32(payload));
  return payload.length > 0 ? [frame, payload] : [frame];
}

/**
 * Reads a snapshot from its parts as they come, a chunk at a time: the applied index at once,
 * then each chunk's records once its checksum held. A fault is thrown when reached, after the
 * chunks before it were handed out: a caller that must change nothing on a bad snapshot reads
 * it through once first (checkSnapshot).
 */
export async function decodeSnapshot(
  parts: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<{ appliedIndex: number; chunks: AsyncGenerator<SnapshotRecord[]> }> {
  const reader = new PartReader(parts);
  const header = await reader.take(headerBytes);
  const appliedIndex = parseHeader(header);
  async function* chunks(): AsyncGenerator<SnapshotRecord[]> {
    try {
      yield* readChunks();
    } finally {
      await reader.close();
    }
  }
  async function* readChunks(): AsyncGenerator<SnapshotRecord[]> {
    for (let chunk = 1; ; chunk++) {
      const frame = await reader.take(8);
      if (frame.length < 8) fail(`it ends inside chunk ${chunk} (truncated)`);
      const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
      const length = view.getUint32(0);
      const checksum = view.getUint32(4);
      if (length === 0) break;
      const payload = await reader.take(length);
      if (payload.length < length) fail(`chunk ${chunk} is truncated`);
      yield parsePayload(payload, checksum, chunk);
    }
    if (!(await reader.atEnd())) fail("there are bytes after its last chunk");
  }
  return { appliedIndex, chunks: chunks() };
}

/**
 * Reads the whole snapshot through, checking every chunk, and answers its applied index and a copy
 * of the records `keep` picks (a few: they are held until the caller is done).
 */
export async function checkSnapshot(
  parts: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  keep: (record: SnapshotRecord) => boolean = () => false,
): Promise<{ appliedIndex: number; kept: SnapshotRecord[] }> {
  const { appliedIndex, chunks } = await decodeSnapshot(parts);
  const kept: SnapshotRecord[] = [];
  for await (const records of chunks) {
    for (const record of records)
      if (keep(record)) kept.push({ key: Uint8Array.from(record.key), value: Uint8Array.from(record.value) });
  }
  return { appliedIndex, kept };
}

function fail(why: string): never {
  throw new StateError("MALFORMED_COMMAND", `the state machine snapshot is unusable: ${why}`);
}

/** The applied index a header names; a header that is short, foreign or of another version is refused. */
function parseHeader(header: Uint8Array): number {
  if (header.length < headerBytes || !magic.every((byte, i) => header[i] === byte))
    fail("it does not start with the snapshot header");
  if (header[magic.length] !== formatVersion) fail(`unknown format version ${header[magic.length]}`);
  return Number(new DataView(header.buffer, header.byteOffset, headerBytes).getBigUint64(magic.length + 1));
}

/** The records of chunk number `chunk`, once its payload matches its checksum. */
function parsePayload(payload: Uint8Array, checksum: number, chunk: number): SnapshotRecord[] {
  if (crc32(payload) !== checksum) fail(`chunk ${chunk} fails its checksum (corrupt)`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const records: SnapshotRecord[] = [];
  let position = 0;
  while (position < payload.length) {
    if (position + 4 > payload.length) fail(`chunk ${chunk} has a torn record`);
    const keyLength = view.getUint32(position);
    const key = payload.subarray(position + 4, position + 4 + keyLength);
    position += 4 + keyLength;
    if (position + 4 > payload.length) fail(`chunk ${chunk} has a torn record`);
    const valueLength = view.getUint32(position);
    const value = payload.subarray(position + 4, position + 4 + valueLength);
    position += 4 + valueLength;
    if (position > payload.length || key.length !== keyLength || value.length !== valueLength)
      fail(`chunk ${chunk} has a torn record`);
    records.push({ key, value });
  }
  return records;
}

/** Bytes taken in the lengths the format asks for from parts cut anywhere. */
class PartReader {
  private readonly iterator: AsyncIterator<Uint8Array> | Iterator<Uint8Array>;
  private buffered: Uint8Array[] = [];
  private bufferedBytes = 0;
  private ended = false;

  constructor(parts: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
    this.iterator = Symbol.asyncIterator in parts ? parts[Symbol.asyncIterator]() : parts[Symbol.iterator]();
  }

  /** The next `length` bytes, or fewer where the parts end first. */
  async take(length: number): Promise<Uint8Array> {
    while (this.bufferedBytes < length && (await this.pull()));
    const first = this.buffered[0];
    if (first !== undefined && first.length >= length) {
      // Within one part: a view, no copy.
      this.shift(length);
      return first.subarray(0, length);
    }
    const out = new Uint8Array(Math.min(length, this.bufferedBytes));
    let filled = 0;
    while (filled < out.length) {
      const part = this.buffered[0] as Uint8Array;
      const used = Math.min(part.length, out.length - filled);
      out.set(part.subarray(0, used), filled);
      filled += used;
      this.shift(used);
    }
    return out;
  }

  /** Whether every part has been taken. */
  async atEnd(): Promise<boolean> {
    while (this.bufferedBytes === 0 && (await this.pull()));
    return this.bufferedBytes === 0;
  }

  /** Lets the parts' source go (a file's reader) when the decoding stops before their end. */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.iterator.return?.();
  }

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.iterator.next();
    if (next.done === true) {
      this.ended = true;
      return false;
    }
    if (next.value.length > 0) {
      this.buffered.push(next.value);
      this.bufferedBytes += next.value.length;
    }
    return true;
  }

  /** Drops `length` bytes from the front of the first part. */
  private shift(length: number): void {
    const first = this.buffered[0] as Uint8Array;
    if (length === first.length) this.buffered.shift();
    else this.buffered[0] = first.subarray(length);
    this.bufferedBytes -= length;
  }
}
