// The file `cluster snapshot save` writes and `cluster snapshot restore` reads: the chunks as the
// cluster streams them, one frame each, so that neither command holds the whole state.
//
// Format 2: the line "strongroom snapshot 2\n", then per chunk a 4-byte big-endian length and the
// chunk as its protobuf message (SnapshotChunk): the file is the state's size plus a few bytes per
// 1 MiB chunk. Format 1 (no header; each chunk as JSON with its bytes in base64, a third larger
// than the state) is still read, so backups saved before stay restorable.

import { open } from "node:fs/promises";
import { SnapshotChunk } from "../proto/gen/strongroom/v1/cluster.gen.js";
import { UsageError } from "./client-connection.js";

/** The first bytes of a format-2 file. A format-1 file starts with a frame's length, below 64 MiB. */
export const snapshotFileHeader = Buffer.from("strongroom snapshot 2\n", "utf8");

/** A frame larger than this is not one `snapshot save` wrote (its chunks are about 1 MiB). */
const snapshotFrameBytesMax = 64 * 1024 * 1024;

/** One chunk as a format-2 file keeps it: a 4-byte length, then the chunk's protobuf message. */
export function snapshotFrame(chunk: SnapshotChunk): Buffer {
  const body = SnapshotChunk.encode(chunk).finish();
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, body]);
}

/** The chunks of a file `snapshot save` wrote, read a frame at a time; a malformed file is refused. */
export async function* readSnapshotFile(file: string): AsyncGenerator<SnapshotChunk> {
  const handle = await open(file, "r").catch((error: unknown) => {
    throw new UsageError(`cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`);
  });
  try {
    const readExactly = async (length: number, position: number): Promise<Buffer> => {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, position);
      if (bytesRead < length) throw new UsageError(`${file} is not a snapshot file (cut short)`);
      return buffer;
    };
    const size = (await handle.stat()).size;
    const head = await readExactly(Math.min(size, snapshotFileHeader.length), 0);
    const format = head.equals(snapshotFileHeader) ? 2 : 1;
    const first = format === 2 ? snapshotFileHeader.length : 0;
    // Sent, an empty file would reach the node as a snapshot whose SHA-256 does not match.
    if (size <= first) throw new UsageError(`${file} is not a snapshot file (it is empty)`);
    for (let position = first; position < size; ) {
      const length = (await readExactly(4, position)).readUInt32BE(0);
      if (length > snapshotFrameBytesMax) throw new UsageError(`${file} is not a snapshot file`);
      const body = await readExactly(length, position + 4);
      yield format === 2 ? protobufChunk(file, body) : jsonChunk(file, body);
      position += 4 + length;
    }
  } finally {
    await handle.close();
  }
}

function protobufChunk(file: string, body: Buffer): SnapshotChunk {
  try {
    return SnapshotChunk.decode(body);
  } catch {
    throw new UsageError(`${file} is not a snapshot file`);
  }
}

/** A format-1 frame: the chunk as JSON, its bytes in base64. */
function jsonChunk(file: string, body: Buffer): SnapshotChunk {
  let frame: { data: string; totalBytes: number; appliedIndex: number; sha256: string };
  try {
    frame = JSON.parse(body.toString("utf8"));
  } catch {
    throw new UsageError(`${file} is not a snapshot file`);
  }
  if (
    typeof frame !== "object" ||
    frame === null ||
    typeof frame.data !== "string" ||
    typeof frame.sha256 !== "string" ||
    !Number.isSafeInteger(frame.totalBytes) ||
    !Number.isSafeInteger(frame.appliedIndex)
  )
    throw new UsageError(`${file} is not a snapshot file`);
  return {
    data: Buffer.from(frame.data, "base64"),
    totalBytes: frame.totalBytes,
    appliedIndex: frame.appliedIndex,
    sha256: Buffer.from(frame.sha256, "base64"),
  };
}
