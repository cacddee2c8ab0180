// The core's view of the replicated log: entries after the last compaction point, which of them
// are persisted (stable), committed and handed to the application. The core keeps the
// uncompacted log in memory (compaction bounds it); the driver mirrors every change into its
// LogStore through Ready.

import { broken, invariant } from "./errors.js";
import type { Entry, LogOffset } from "./types.js";

/** Shared by every Ready with nothing in a list: most Readys carry only messages or a commit. */
const noEntries: readonly Entry[] = Object.freeze([]);

export class RaftLog {
  /** The last compacted entry; the log continues at offset.index + 1. */
  private offset: LogOffset;
  private entries: Entry[];
  /** Entries up to here are persisted (the driver acknowledged them through advance). */
  stableIndex: number;
  committed: number;
  /** Entries up to here were handed to the application in a Ready. */
  applying: number;
  /** Entries up to here were applied (the application acknowledged them through advance). */
  applied: number;

  constructor(offset: LogOffset, entries: readonly Entry[], committed: number, applied: number) {
    this.offset = offset;
    this.entries = [...entries];
    entries.forEach((entry, i) => {
      invariant(entry.index === offset.index + 1 + i, `log entries are not contiguous at ${entry.index}`);
    });
    this.stableIndex = this.lastIndex();
    invariant(
      committed <= this.lastIndex(),
      `commit ${committed} is beyond the last index ${this.lastIndex()}`,
    );
    invariant(applied <= committed, `applied ${applied} is beyond commit ${committed}`);
    this.committed = committed;
    this.applied = applied;
    this.applying = applied;
  }

  offsetIndex(): number {
    return this.offset.index;
  }

  firstIndex(): number {
    return this.offset.index + 1;
  }

  lastIndex(): number {
    return this.offset.index + this.entries.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0;
  }

  /** The term of the entry at `index`, or undefined when it is compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.offset.index) return this.offset.term;
    if (index < this.offset.index || index > this.lastIndex()) return undefined;
    return this.entries[index - this.offset.index - 1]?.term;
  }

  entry(index: number): Entry | undefined {
    if (index <= this.offset.index) return undefined;
    return this.entries[index - this.offset.index - 1];
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Section 5.4.1: is a log ending at (lastIndex, lastTerm) at least as up to date as ours? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Entries in [low, high), at most `bytesMax` of data but always at least one. */
  slice(low: number, high: number, bytesMax: number): Entry[] {
    if (low <= this.offset.index) broken(`slice from ${low} reaches into the compacted log`);
    const result: Entry[] = [];
    let bytes = 0;
    for (let index = low; index < high && index <= this.lastIndex(); index++) {
      const entry = this.entry(index);
      if (entry === undefined) broken(`missing entry ${index}`);
      bytes += entry.data.length;
      if (result.length > 0 && bytes > bytesMax) break;
      result.push(entry);
    }
    return result;
  }

  /** A leader appends its own new entries. */
  append(entry: Entry): void {
    if (entry.index !== this.lastIndex() + 1) broken(`append at ${entry.index} after ${this.lastIndex()}`);
    this.entries.push(entry);
  }

  /**
   * A follower takes entries following (prevIndex, prevTerm), which the caller checked. Entries it
   * already has are kept; from the first conflict on, its log is replaced. Returns the last new index.
   */
  appendFromLeader(prevIndex: number, entries: readonly Entry[]): number {
    const lastNew = prevIndex + entries.length;
    for (const entry of entries) {
      if (entry.index <= this.offset.index) continue;
      const ours = this.term(entry.index);
      if (ours === entry.term) continue;
      if (ours !== undefined) {
        if (entry.index <= this.committed)
          broken(`conflict at committed index ${entry.index} (commit ${this.committed})`);
        this.truncateFrom(entry.index);
      }
      if (entry.index !== this.lastIndex() + 1) broken(`gap before ${entry.index}`);
      this.entries.push(entry);
    }
    return lastNew;
  }

  private truncateFrom(index: number): void {
    this.entries.length = index - this.offset.index - 1;
    this.stableIndex = Math.min(this.stableIndex, index - 1);
  }

  commitTo(index: number): boolean {
    if (index <= this.committed) return false;
    if (index > this.lastIndex()) broken(`commit ${index} is beyond the last index ${this.lastIndex()}`);
    this.committed = index;
    return true;
  }

  /** Entries not yet persisted. */
  unstableEntries(): readonly Entry[] {
    if (this.stableIndex >= this.lastIndex()) return noEntries;
    return this.entries.slice(this.stableIndex - this.offset.index);
  }

  /** Committed entries the application has not been handed yet. */
  entriesToApply(): readonly Entry[] {
    if (this.committed <= this.applying) return noEntries;
    return this.entries.slice(this.applying - this.offset.index, this.committed - this.offset.index);
  }

  /** The driver persisted entries up to (index, term); ignored when that entry was replaced meanwhile. */
  stableTo(index: number, term: number): void {
    if (this.term(index) === term && index > this.stableIndex) this.stableIndex = index;
  }

  /**
   * Fast backtracking: the largest index at or below `index` whose term is at most `term`
   * (the compaction point when nothing later qualifies).
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let candidate = Math.min(index, this.lastIndex());
    while (candidate > this.offset.index) {
      const candidateTerm = this.term(candidate);
      if (candidateTerm !== undefined && candidateTerm <= term)
        return { index: candidate, term: candidateTerm };
      candidate--;
    }
    return { index: this.offset.index, term: this.offset.term };
  }

  /** Installs a snapshot from the leader: the whole log is replaced by its compaction point. */
  restore(offset: LogOffset): void {
    invariant(
      offset.index > this.committed,
      `snapshot ${offset.index} does not pass commit ${this.committed}`,
    );
    this.offset = offset;
    this.entries = [];
    this.stableIndex = offset.index;
    this.committed = offset.index;
    this.applying = offset.index;
  }

  /** Drops entries through `index` (already applied and covered by a snapshot). */
  compact(index: number): LogOffset {
    invariant(index <= this.applied, `compact ${index} beyond applied ${this.applied}`);
    invariant(index <= this.stableIndex, `compact ${index} beyond stable ${this.stableIndex}`);
    if (index <= this.offset.index) return this.offset;
    const term = this.term(index);
    invariant(term !== undefined, `no term at ${index}`);
    this.entries = this.entries.slice(index - this.offset.index);
    this.offset = { index, term };
    return this.offset;
  }

  offsetPoint(): LogOffset {
    return this.offset;
  }
}
