// A damaged Raft log is reported, never applied: an entry whose bytes changed under LevelDB (a
// bit flip, a bad copy, a value under the wrong key) fails its CRC with an error naming the
// directory and the index.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClassicLevel } from "classic-level";
import { afterAll, expect, it } from "vitest";
import { LevelLogStore } from "../../storage/raft-log/level-log-store.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-level-corrupt-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const entryKey = (index: number) => {
  const key = new Uint8Array(9);
  key[0] = 0x10;
  new DataView(key.buffer).setBigUint64(1, BigInt(index));
  return key;
};

async function writeLog(directory: string): Promise<void> {
  const store = await LevelLogStore.open(directory);
  const entries = Array.from({ length: 5 }, (_, i) => ({
    index: i + 1,
    term: 1,
    type: "normal" as const,
    data: new TextEncoder().encode(`e${i + 1}`),
  }));
  await store.append(entries, { term: 1, vote: null, commit: 5 });
  await store.close();
}

it("a flipped bit in an entry fails its checksum, naming the directory and the index", async () => {
  const directory = join(root, "flipped");
  await writeLog(directory);
  const raw = new ClassicLevel<Uint8Array, Uint8Array>(directory, {
    keyEncoding: "view",
    valueEncoding: "view",
  });
  const value = new Uint8Array((await raw.get(entryKey(3))) as Uint8Array);
  value[value.length - 1] = (value[value.length - 1] ?? 0) ^ 0x04;
  await raw.put(entryKey(3), value);
  await raw.close();
  await expect(LevelLogStore.open(directory)).rejects.toThrow(
    `entry 3 in the Raft log in ${directory} fails its checksum (corrupt)`,
  );
  // The failed open released the lock: the same process can open the directory again (to repair it).
  const again = new ClassicLevel(directory);
  await again.open();
  await again.close();
});

it("an entry copied under another index fails too (the checksum covers the index)", async () => {
  const directory = join(root, "moved");
  await writeLog(directory);
  const raw = new ClassicLevel<Uint8Array, Uint8Array>(directory, {
    keyEncoding: "view",
    valueEncoding: "view",
  });
  await raw.put(entryKey(4), (await raw.get(entryKey(2))) as Uint8Array);
  await raw.close();
  await expect(LevelLogStore.open(directory)).rejects.toThrow(/entry 4 .* fails its checksum/);
});

it("a missing entry in the middle of the log is a gap, reported as such", async () => {
  const directory = join(root, "gap");
  await writeLog(directory);
  const raw = new ClassicLevel<Uint8Array, Uint8Array>(directory, {
    keyEncoding: "view",
    valueEncoding: "view",
  });
  await raw.del(entryKey(2));
  await raw.close();
  await expect(LevelLogStore.open(directory)).rejects.toThrow(
    `the Raft log in ${directory} has a gap: entry 3 follows 1`,
  );
});

it("a damaged LevelDB table file is reported as a corrupt Raft log, naming the directory", async () => {
  const { readdirSync, readFileSync, writeFileSync } = await import("node:fs");
  const directory = join(root, "table");
  const store = await LevelLogStore.open(directory);
  // Enough compressible entries that LevelDB writes (snappy-compressed) table files.
  for (let i = 0; i < 20; i++) {
    const entries = Array.from({ length: 100 }, (_, j) => ({
      index: i * 100 + j + 1,
      term: 1,
      type: "normal" as const,
      data: new TextEncoder().encode(`entry ${i * 100 + j + 1} `.repeat(20)),
    }));
    await store.append(entries, { term: 1, vote: null, commit: 0 });
  }
  await store.close();
  const raw = new ClassicLevel(directory);
  await raw.open();
  await raw.compactRange("\u0000", "\u00ff");
  await raw.close();
  const table = readdirSync(directory).find((name) => name.endsWith(".ldb"));
  expect(table).toBeDefined();
  const bytes = readFileSync(join(directory, table as string));
  for (const offset of [200, 5000, 20000])
    if (offset < bytes.length) bytes[offset] = (bytes[offset] ?? 0) ^ 0xff;
  writeFileSync(join(directory, table as string), bytes);
  const failure = await LevelLogStore.open(directory).then(
    () => "opened",
    (error: Error) => error.message,
  );
  // LevelDB notices the damaged block (its own checksum or compression) before our CRC would.
  expect(failure).toMatch(`the Raft log in ${directory} is corrupt (LevelDB: Corruption:`);
});
