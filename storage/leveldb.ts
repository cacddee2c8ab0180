// What every LevelDB store of strongroom shares: binary keys and values, and the recognition of
// LevelDB's corruption error (which does not say which store it came from).

import { ClassicLevel } from "classic-level";

export type BinaryLevel = ClassicLevel<Uint8Array, Uint8Array>;

export type LevelBatch = (
  | { type: "put"; key: Uint8Array; value: Uint8Array }
  | { type: "del"; key: Uint8Array }
)[];

export interface LevelOptions {
  /**
   * Bytes of writes LevelDB keeps in memory (and its log) before it writes them to a table file
   * (LevelDB's default, 4 MiB, when absent): a larger buffer means fewer compactions of values
   * written again and again, for that much more memory.
   */
  readonly writeBufferBytes?: number;
}

/** Opens (creating if needed) a LevelDB with binary keys and values. One process at a time: it is locked. */
export async function openBinaryLevel(directory: string, options: LevelOptions = {}): Promise<BinaryLevel> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(directory, {
    keyEncoding: "view",
    valueEncoding: "view",
    ...(options.writeBufferBytes === undefined ? {} : { writeBufferSize: options.writeBufferBytes }),
  });
  try {
    await db.open();
  } catch (error) {
    // abstract-level says "Database failed to open" and puts the reason in its cause.
    throw new Error(openFailure(error, directory), { cause: error });
  }
  return db;
}

/** Why LevelDB did not open: the innermost cause, and what to do where that is plain. */
function openFailure(error: unknown, directory: string): string {
  let innermost = error as { code?: unknown; message?: unknown; cause?: unknown };
  while (innermost.cause !== undefined && innermost.cause !== null)
    innermost = innermost.cause as typeof innermost;
  const message = String(innermost.message);
  if (innermost.code === "LEVEL_LOCKED")
    return `another process has ${directory} open (is a node already running with this dataDir?): ${message}`;
  if (/No space left on device/.test(message)) return `the disk is full: ${message}`;
  return message;
}

/**
 * Writes `batch` atomically, synced to disk when `sync`. Through LevelDB's chained batch, not
 * `db.batch(array)`: abstract-level copies every operation of an array into a new object with the
 * options spread in, which cost 10-14 µs per operation on this machine against 1-5 µs chained,
 * and was a tenth of a follower's CPU under load (docs/performance.md, eighth session). Each
 * operation is added, and its key and value copied by LevelDB, before the next is taken from
 * `batch`: a value may be a view of a buffer that the next operation's making reuses.
 */
export async function writeBatch(
  db: BinaryLevel,
  batch: Iterable<LevelBatch[number]>,
  options: { sync: boolean },
): Promise<void> {
  const chained = db.batch();
  try {
    for (const operation of batch) {
      if (operation.type === "put") chained.put(operation.key, operation.value);
      else chained.del(operation.key);
    }
  } catch (error) {
    await chained.close();
    throw error;
  }
  if (chained.length === 0) return chained.close();
  await chained.write(options);
}

export function isLevelCorruption(error: unknown): error is Error {
  return error instanceof Error && (error as { code?: string }).code === "LEVEL_CORRUPTION";
}
