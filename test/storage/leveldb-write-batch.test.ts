// writeBatch, the one way strongroom's stores write LevelDB batches: every put and delete of a
// batch lands together, in order, and a batch with a bad operation writes nothing and says why.
// On a real LevelDB on disk, reopened to read what was written.

import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { type LevelBatch, openBinaryLevel, writeBatch } from "../../storage/leveldb.js";
import { eventually } from "../support/eventually.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-write-batch-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined) =>
  value === undefined ? undefined : new TextDecoder().decode(value);

it("puts and deletes of a batch land together and in order, and survive a reopen", async () => {
  const directory = join(root, "ordered");
  const db = await openBinaryLevel(directory);
  await writeBatch(db, [{ type: "put", key: bytes("gone"), value: bytes("old") }], { sync: true });
  const batch: LevelBatch = [
    { type: "put", key: bytes("a"), value: bytes("first") },
    { type: "put", key: bytes("a"), value: bytes("second") },
    { type: "del", key: bytes("gone") },
    { type: "put", key: bytes("b"), value: new Uint8Array([0, 255, 7]) },
  ];
  await writeBatch(db, batch, { sync: true });
  await db.close();

  const reopened = await openBinaryLevel(directory);
  expect(text(await reopened.get(bytes("a")))).toBe("second");
  expect(await reopened.get(bytes("gone"))).toBeUndefined();
  expect([...((await reopened.get(bytes("b"))) ?? [])]).toEqual([0, 255, 7]);
  await reopened.close();
});

it("a batch with a bad operation writes none of it and names the problem", async () => {
  const db = await openBinaryLevel(join(root, "bad"));
  const batch = [
    { type: "put", key: bytes("kept-out"), value: bytes("x") },
    { type: "put", key: null, value: bytes("y") },
  ] as unknown as LevelBatch;
  await expect(writeBatch(db, batch, { sync: false })).rejects.toThrow(/key/i);
  expect(await db.get(bytes("kept-out"))).toBeUndefined();
  // The refused batch was closed: the database still takes writes and closes cleanly.
  await writeBatch(db, [{ type: "put", key: bytes("after"), value: bytes("ok") }], { sync: false });
  expect(text(await db.get(bytes("after")))).toBe("ok");
  await db.close();
});

it("adds each operation before it takes the next: a value may be a view that the next one reuses", async () => {
  const directory = join(root, "reused");
  const db = await openBinaryLevel(directory);
  const shared = new Uint8Array(1);
  function* operations(): Generator<LevelBatch[number]> {
    for (let i = 0; i < 3; i++) {
      shared[0] = i;
      yield { type: "put", key: bytes(`k${i}`), value: shared };
    }
  }
  await writeBatch(db, operations(), { sync: true });
  await db.close();
  const reopened = await openBinaryLevel(directory);
  for (let i = 0; i < 3; i++) expect([...((await reopened.get(bytes(`k${i}`))) ?? [])]).toEqual([i]);
  await reopened.close();
});

it("an empty batch writes nothing, and a closed database refuses a batch", async () => {
  const db = await openBinaryLevel(join(root, "closed"));
  await writeBatch(db, [], { sync: true });
  await db.close();
  await expect(
    writeBatch(db, [{ type: "put", key: bytes("k"), value: bytes("v") }], { sync: false }),
  ).rejects.toThrow(/not open/i);
});

it("keeps writes in memory up to the write buffer it was opened with, then writes a table file", async () => {
  // 3 MiB of values that do not compress (ciphertext, as the state machine's are).
  const fill = async (directory: string, writeBufferBytes: number) => {
    const db = await openBinaryLevel(directory, { writeBufferBytes });
    for (let i = 0; i < 48; i++) {
      await writeBatch(db, [{ type: "put", key: bytes(`k${i}`), value: randomBytes(64 * 1024) }], {
        sync: false,
      });
    }
    return db;
  };
  const tables = (directory: string) => readdirSync(directory).filter((name) => name.endsWith(".ldb"));
  const small = join(root, "buffer-1m");
  const smallDb = await fill(small, 1024 * 1024);
  await eventually(() => tables(small).length > 0, 5000);
  await smallDb.close();
  const large = join(root, "buffer-64m");
  const largeDb = await fill(large, 64 * 1024 * 1024);
  expect(tables(large)).toEqual([]);
  expect((await largeDb.get(bytes("k47")))?.length).toBe(64 * 1024);
  await largeDb.close();
});
