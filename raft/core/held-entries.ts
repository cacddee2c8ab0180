// The log entries the core holds in memory: a queue that grows at the end (appends), shrinks at
// the end (a follower's conflict truncation) and at the front (entries let go of once settled),
// and counts their data bytes. Dropping from the front moves a start position and copies the
// array only once the dropped part is the larger half: a leader holding a lagging follower's
// entries lets go of a few at every advance, and a copy of the whole array each time would cost
// as much as the entries kept.

import type { Entry } from "./types.js";

export class HeldEntries {
  private entries: Entry[];
  /** Entries before this position in `entries` were dropped. */
  private start = 0;
  private dataBytes = 0;

  constructor(entries: readonly Entry[]) {
    this.entries = [...entries];
    for (const entry of entries) this.dataBytes += entry.data.length;
  }

  get length(): number {
    return this.entries.length - this.start;
  }

  /** The data bytes of the held entries. */
  get bytes(): number {
    return this.dataBytes;
  }

  /** The i-th held entry (0: the oldest). */
  at(i: number): Entry | undefined {
    return i < 0 ? undefined : this.entries[this.start + i];
  }

  push(entry: Entry): void {
    this.entries.push(entry);
    this.dataBytes += entry.data.length;
  }

  /** Held entries [from, to) (positions, as in at()). */
  slice(from: number, to = this.length): Entry[] {
    return this.entries.slice(this.start + from, this.start + to);
  }

  /** Keeps the first `length` held entries. */
  truncate(length: number): void {
    for (let i = length; i < this.length; i++) this.dataBytes -= this.at(i)?.data.length ?? 0;
    this.entries.length = this.start + length;
  }

  /** Drops the oldest `count` held entries. */
  dropFirst(count: number): void {
    const dropped = Math.min(count, this.length);
    for (let i = 0; i < dropped; i++) this.dataBytes -= this.at(i)?.data.length ?? 0;
    this.start += dropped;
    if (this.start === this.entries.length) {
      this.entries = [];
      this.start = 0;
    } else if (this.start * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.start);
      this.start = 0;
    }
  }

  clear(): void {
    this.entries = [];
    this.start = 0;
    this.dataBytes = 0;
  }
}
