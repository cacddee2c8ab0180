// When each secret was last read on this node, for the "not read in N days" part of the Stale
// report. Reads are not replicated (a read is served by the node that takes it), so each node keeps
// its own record and the node that builds the report asks the others for theirs. The record is in
// memory and written to <dataDir>/last-reads.json every minute and at shutdown (a crash loses at
// most a minute of it: a secret read only in that minute may be reported unread once, never the
// other way round). Paths are not secret (they are in the audit trail too); values never come here.

import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { z } from "zod";

const fileSchema = z.strictObject({
  /** Since when this node has recorded reads (its first start with the tracker). */
  since: z.number().int().nonnegative(),
  reads: z.record(z.string(), z.number().int().nonnegative()),
});

export interface ReadTimes {
  /** Last read per path, for the paths read since `since`. */
  readonly lastRead: ReadonlyMap<string, number>;
  readonly since: number;
}

export class ReadTracker {
  private readonly reads = new Map<string, number>();
  private since: number;
  private dirty = false;
  private writing = false;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly file: string,
    /** Paths tracked at most (the oldest reads are forgotten first past it). */
    private readonly pathsMax: number,
    private readonly now: () => number = Date.now,
  ) {
    this.since = now();
  }

  /** Reads the record of an earlier run; a missing or damaged file starts a new one (from now). */
  load(): void {
    if (!existsSync(this.file)) {
      this.dirty = true;
      return;
    }
    try {
      const parsed = fileSchema.parse(JSON.parse(readFileSync(this.file, "utf8")));
      this.since = parsed.since;
      for (const [path, at] of Object.entries(parsed.reads)) this.reads.set(path, at);
    } catch {
      this.dirty = true;
    }
  }

  start(persistEveryMs = 60_000): void {
    this.timer = setInterval(() => void this.persistInBackground(), persistEveryMs);
    this.timer.unref();
  }

  /**
   * Stops the periodic writes and writes the record one last time. A write that fails (a full
   * disk) is answered, not thrown: the node's stop goes on to flush and close its stores, and
   * loses at most this run's last reads, as a crash would.
   */
  stop(): Error | null {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.stopped = true;
    // A periodic write in flight will not be renamed into place: this one must be.
    if (this.writing) this.dirty = true;
    try {
      this.persist();
      return null;
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    }
  }

  /** A value of `path` was served to a client. */
  noteRead(path: string): void {
    // Re-inserted so the map's order is the order of last reads (the oldest first, to evict).
    this.reads.delete(path);
    this.reads.set(path, this.now());
    if (this.reads.size > this.pathsMax) {
      const oldest = this.reads.keys().next().value;
      if (oldest !== undefined) this.reads.delete(oldest);
    }
    this.dirty = true;
  }

  /** This node's reads of paths under `prefix`. */
  readTimes(prefix: string): ReadTimes {
    const lastRead = new Map<string, number>();
    for (const [path, at] of this.reads) if (path.startsWith(prefix)) lastRead.set(path, at);
    return { lastRead, since: this.since };
  }

  /** Writes the record now (to a temporary file, then renamed over the old one). */
  persist(): void {
    if (!this.dirty) return;
    const temporary = `${this.file}.tmp`;
    writeFileSync(temporary, this.serialized());
    renameSync(temporary, this.file);
    this.dirty = false;
  }

  /**
   * The periodic write, off the event loop (a large record takes a while to write); one at a
   * time, and never renamed over what stop() wrote after it.
   */
  private async persistInBackground(): Promise<void> {
    if (!this.dirty || this.writing) return;
    this.writing = true;
    this.dirty = false;
    const temporary = `${this.file}.periodic.tmp`;
    try {
      await writeFile(temporary, this.serialized());
      if (!this.stopped) renameSync(temporary, this.file);
    } catch {
      // Tried again at the next period (and at stop).
      this.dirty = true;
    } finally {
      this.writing = false;
    }
  }

  private serialized(): string {
    return JSON.stringify({ since: this.since, reads: Object.fromEntries(this.reads) });
  }
}

/**
 * Every node's reads merged: the latest read of each path anywhere, and the latest `since` (reads
 * before it may have gone unrecorded on some node).
 */
export function mergeReadTimes(all: readonly ReadTimes[]): ReadTimes {
  const lastRead = new Map<string, number>();
  let since = 0;
  for (const times of all) {
    since = Math.max(since, times.since);
    for (const [path, at] of times.lastRead) lastRead.set(path, Math.max(at, lastRead.get(path) ?? 0));
  }
  return { lastRead, since };
}
