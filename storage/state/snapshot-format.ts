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
      yield* chunkParts(concatenate(pending, pendingBytes));
      pending = [];
      pendingBytes = 0;
    }
  }
  if (pendingBytes > 0) yield* chunkParts(concatenate(pending, pendingBytes));
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

function concatenate(parts: readonly Uint8Array[], totalBytes: number): Uint8Array {
  const out = new Uint8Array(totalBytes);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Checks every chunk and returns the applied index and the records; throws before yielding anything bad. */
export function readSnapshot(data: Uint8Array): { appliedIndex: number; records: SnapshotRecord[] } {
  const fail = (why: string): never => {
    throw new StateError("MALFORMED_COMMAND", `the state machine snapshot is unusable: ${why}`);
  };
  if (data.length < headerBytes || !magic.every((byte, i) => data[i] === byte))
    fail("it does not start with the snapshot header");
  if (data[magic.length] !== formatVersion) fail(`unknown format version ${data[magic.length]}`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const appliedIndex = Number(view.getBigUint64(magic.length + 1));
  const records: SnapshotRecord[] = [];
  let offset = headerBytes;
  let chunk = 0;
  for (;;) {
    chunk++;
    if (offset + 8 > data.length) fail(`it ends inside chunk ${chunk} (truncated)`);
    const length = view.getUint32(offset);
    const checksum = view.getUint32(offset + 4);
    offset += 8;
    if (length === 0) break;
    if (offset + length > data.length) fail(`chunk ${chunk} is truncated`);
    const payload = data.subarray(offset, offset + length);
    if (crc32(payload) !== checksum) fail(`chunk ${chunk} fails its checksum (corrupt)`);
    offset += length;
    const payloadView = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    let position = 0;
    while (position < payload.length) {
      if (position + 4 > payload.length) fail(`chunk ${chunk} has a torn record`);
      const keyLength = payloadView.getUint32(position);
      const key = payload.subarray(position + 4, position + 4 + keyLength);
      position += 4 + keyLength;
      if (position + 4 > payload.length) fail(`chunk ${chunk} has a torn record`);
      const valueLength = payloadView.getUint32(position);
      const value = payload.subarray(position + 4, position + 4 + valueLength);
      position += 4 + valueLength;
      if (position > payload.length || key.length !== keyLength || value.length !== valueLength)
        fail(`chunk ${chunk} has a torn record`);
      records.push({ key, value });
    }
  }
  if (offset !== data.length) fail("there are bytes after its last chunk");
  return { appliedIndex, records };
}
