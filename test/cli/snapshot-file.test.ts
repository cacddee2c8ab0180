// The backup file of `cluster snapshot save`: format 2 (a header, then each chunk's protobuf
// message) read back as written and barely larger than the state; format 1 (each chunk as JSON,
// bytes in base64), what earlier versions saved, still read; a damaged file refused.

import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { readSnapshotFile, snapshotFileHeader, snapshotFrame } from "../../cli/snapshot-file.js";
import type { SnapshotChunk } from "../../proto/gen/strongroom/v1/cluster.gen.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-snapshot-file-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Three chunks as the cluster streams them: sizes first, the digest last. */
function chunks(): SnapshotChunk[] {
  const mib = 1024 * 1024;
  return [
    { data: randomBytes(mib), totalBytes: 2 * mib + 10, appliedIndex: 42, sha256: new Uint8Array(0) },
    { data: randomBytes(mib), totalBytes: 0, appliedIndex: 0, sha256: new Uint8Array(0) },
    { data: randomBytes(10), totalBytes: 0, appliedIndex: 0, sha256: randomBytes(32) },
  ];
}

async function readAll(file: string): Promise<SnapshotChunk[]> {
  const read: SnapshotChunk[] = [];
  for await (const chunk of readSnapshotFile(file)) read.push(chunk);
  return read;
}

/** A chunk with its bytes as hex digests: vitest compares a MiB of bytes one by one, slowly. */
const comparable = (chunk: SnapshotChunk) => ({
  ...chunk,
  data: createHash("sha256").update(chunk.data).digest("hex"),
  sha256: Buffer.from(chunk.sha256).toString("hex"),
});

it("reads format 2 back as written, a few bytes per chunk larger than the state", async () => {
  const written = chunks();
  const file = join(root, "format-2");
  writeFileSync(file, Buffer.concat([snapshotFileHeader, ...written.map(snapshotFrame)]));
  expect((await readAll(file)).map(comparable)).toEqual(written.map(comparable));
  const stateBytes = written.reduce((sum, chunk) => sum + chunk.data.length, 0);
  expect(statSync(file).size - stateBytes).toBeLessThan(100);
});

it("reads format 1, each chunk as JSON with its bytes in base64, as earlier versions saved it", async () => {
  const written = chunks();
  const frames = written.map((chunk) => {
    const body = Buffer.from(
      JSON.stringify({
        ...chunk,
        data: Buffer.from(chunk.data).toString("base64"),
        sha256: Buffer.from(chunk.sha256).toString("base64"),
      }),
    );
    const length = Buffer.alloc(4);
    length.writeUInt32BE(body.length);
    return Buffer.concat([length, body]);
  });
  const file = join(root, "format-1");
  writeFileSync(file, Buffer.concat(frames));
  expect((await readAll(file)).map(comparable)).toEqual(written.map(comparable));
});

it("refuses an empty file, and one with the header alone", async () => {
  const empty = join(root, "empty");
  writeFileSync(empty, "");
  await expect(readAll(empty)).rejects.toThrow(`${empty} is not a snapshot file (it is empty)`);
  const headerOnly = join(root, "header-only");
  writeFileSync(headerOnly, snapshotFileHeader);
  await expect(readAll(headerOnly)).rejects.toThrow(`${headerOnly} is not a snapshot file (it is empty)`);
});

it("refuses a format-2 file whose frame is not a chunk, or that is cut short", async () => {
  const damaged = join(root, "damaged");
  const length = Buffer.alloc(4);
  length.writeUInt32BE(3);
  writeFileSync(damaged, Buffer.concat([snapshotFileHeader, length, Buffer.from([0xff, 0xff, 0xff])]));
  await expect(readAll(damaged)).rejects.toThrow(`${damaged} is not a snapshot file`);
  const frame = snapshotFrame(chunks()[0] as SnapshotChunk);
  const cut = join(root, "cut");
  writeFileSync(cut, Buffer.concat([snapshotFileHeader, frame.subarray(0, frame.length - 1)]));
  await expect(readAll(cut)).rejects.toThrow(`${cut} is not a snapshot file (cut short)`);
});
