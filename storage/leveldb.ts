// What every LevelDB store of strongroom shares: binary keys and values, and the recognition of
// LevelDB's corruption error (which does not say which store it came from).

import { ClassicLevel } from "classic-level";

export type BinaryLevel = ClassicLevel<Uint8Array, Uint8Array>;

export type LevelBatch = (
  | { type: "put"; key: Uint8Array; value: Uint8Array }
  | { type: "del"; key: Uint8Array }
)[];

/** Opens (creating if needed) a LevelDB with binary keys and values. One process at a time: it is locked. */
export async function openBinaryLevel(directory: string): Promise<BinaryLevel> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(directory, {
    keyEncoding: "view",
    valueEncoding: "view",
  });
  await db.open();
  return db;
}

export function isLevelCorruption(error: unknown): error is Error {
  return error instanceof Error && (error as { code?: string }).code === "LEVEL_CORRUPTION";
}
