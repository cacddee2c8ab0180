// The core's view of the replicated log: entries after the last compaction point, which of them
// are persisted (stable), committed and handed to the application. The core keeps every entry's
// term in memory, but an entry's data only while it may need it there: until it is persisted and
// applied and (on a leader) every follower has it. Older entries are read back from the driver's
// log store (StableEntryReader) for a follower that lags; the driver mirrors every change into
// that store through Ready.

import { broken, invariant } from "./errors.js";
import { HeldEntries } from "./held-entries.js";
import type { Entry, LogOffset, StableEntryReader } from "./types.js";

/** Shared by every Ready with nothing in a list: most Readys carry only messages or a commit. */
const noEntries: readonly Entry[] = Object.freeze([]);

export class RaftLog {
  /** The last compacted entry; the log continues at offset.index + 1. */
  private offset: LogOffset;
  /** The term of every entry after the offset: terms[i] is the term of entry offset.index + 1 + i. */
  private terms: number[];
  /** The entries still held in memory: the last `held.length` of the log. */
  private held: HeldEntries;
  /** Where released entries are read back; without one, the log holds every entry. */
  private readonly reader: StableEntryReader | null;
  /** Entries up to here are persisted (the driver acknowledged them through advance). */
  stableIndex: number;
  committed: number;
  /** Entries up to here were handed to the application in a Ready. */
  applying: number;
  /** Entries up to here were applied (the application acknowledged them through advance). */
  applied: number;

  /**
   * `notLoadedTerms`: the terms of the entries from `offset.index + 1` that the store left on disk
   * (PersistentState.notLoaded), before `entries`; they must be applied already and readable
   * through `reader`.
   */
  constructor(
    offset: LogOffset,
    entries: readonly Entry[],
    committed: number,
    applied: number,
    reader: StableEntryReader | null = null,
    notLoadedTerms: readonly number[] = [],
  ) {
    this.offset = offset;
    this.held = new HeldEntries(entries);
    const heldFrom = offset.index + 1 + notLoadedTerms.length;
    this.terms = [
      ...notLoadedTerms,
      ...entries.map((entry, i) => {
        invariant(entry.index === heldFrom + i, `log entries are not contiguous at ${entry.index}`);
        return entry.term;
      }),
    ];
    this.reader = reader;
    this.stableIndex = this.lastIndex();
    invariant(
      committed <= this.lastIndex(),
      `commit ${committed} is beyond the last index ${this.lastIndex()}`,
    );
    invariant(applied <= committed, `applied ${applied} is beyond commit ${committed}`);
    invariant(
      notLoadedTerms.length === 0 || (reader !== null && applied >= heldFrom - 1),
      `entries through ${heldFrom - 1} were not loaded, but they are not applied (${applied}) or cannot be read back`,
    );
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
    return this.offset.index + this.terms.length;
  }

  /** The first entry held in memory (lastIndex() + 1 when none is). */
  heldFrom(): number {
    return this.lastIndex() + 1 - this.held.length;
  }

  /** How many entries are held in memory, and their data bytes. */
  heldCount(): { entries: number; bytes: number } {
    return { entries: this.held.length, bytes: this.held.bytes };
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0;
  }

  /** The term of the entry at `index`, or undefined when it is compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.offset.index) return this.offset.term;
    if (index < this.offset.index || index > this.lastIndex()) return undefined;
    return this.terms[index - this.offset.index - 1];
  }

  /** The entry at `index` (read back from the log store when released), or undefined when compacted or beyond the end. */
  entry(index: number): Entry | undefined {
    if (index <= this.offset.index || index > this.lastIndex()) return undefined;
    const heldFrom = this.heldFrom();
    if (index >= heldFrom) return this.held.at(index - heldFrom);
    return this.readStable(index, index + 1, 0)[0];
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
    const end = Math.min(high, this.lastIndex() + 1);
    const heldFrom = this.heldFrom();
    let result: Entry[] = [];
    let bytes = 0;
    if (low < heldFrom && low < end) {
      const storedEnd = Math.min(end, heldFrom);
      result = this.readStable(low, storedEnd, bytesMax);
      for (const entry of result) bytes += entry.data.length;
      // The store stopped at the byte limit: the held entries would not fit either.
      if (low + result.length < storedEnd) return result;
    }
    for (let index = Math.max(low, heldFrom); index < end; index++) {
      const entry = this.held.at(index - heldFrom);
      if (entry === undefined) broken(`missing entry ${index}`);
      bytes += entry.data.length;
      if (result.length > 0 && bytes > bytesMax) break;
      result.push(entry);
    }
    return result;
  }

  private readStable(low: number, high: number, bytesMax: number): Entry[] {
    if (this.reader === null) broken(`entry ${low} is neither held nor readable`);
    if (high - 1 > this.stableIndex)
      broken(`read of entry ${high - 1} beyond the stable index ${this.stableIndex}`);
    const entries = this.reader.readEntries(low, high, bytesMax);
    entries.forEach((entry, i) => {
      invariant(
        entry.index === low + i && entry.term === this.term(entry.index),
        `the log store answered entry ${entry.index} (term ${entry.term}) for ${low + i} (term ${this.term(low + i)})`,
      );
    });
    invariant(entries.length > 0, `the log store answered no entry from ${low}`);
    return entries;
  }

  /** A leader appends its own new entries. */
  append(entry: Entry): void {
    if (entry.index !== this.lastIndex() + 1) broken(`append at ${entry.index} after ${this.lastIndex()}`);
    this.hold(entry);
  }

  private hold(entry: Entry): void {
    this.terms.push(entry.term);
    this.held.push(entry);
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
      this.hold(entry);
    }
    return lastNew;
  }

  private truncateFrom(index: number): void {
    const heldFrom = this.heldFrom();
    // Only uncommitted entries are replaced, and only committed, applied ones are released.
    invariant(index >= heldFrom, `truncation at ${index} below the held entries (from ${heldFrom})`);
    this.held.truncate(index - heldFrom);
    this.terms.length = index - this.offset.index - 1;
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
    return this.held.slice(this.stableIndex + 1 - this.heldFrom());
  }

  /** Committed entries the application has not been handed yet. */
  entriesToApply(): readonly Entry[] {
    if (this.committed <= this.applying) return noEntries;
    const heldFrom = this.heldFrom();
    return this.held.slice(this.applying + 1 - heldFrom, this.committed + 1 - heldFrom);
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
    this.terms = [];
    this.held.clear();
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
    this.dropHeldThrough(index);
    this.terms = this.terms.slice(index - this.offset.index);
    this.offset = { index, term };
    return this.offset;
  }

  /**
   * Lets go of the data of entries no longer needed in memory (they stay in the log store, which
   * answers for them). Entries through `settled` (persisted and applied) may go; of those, the ones
   * from `wantedFrom` on (a follower has not acknowledged them yet) stay while they take at most
   * `wantedBytesMax`: a follower that stopped answering must not hold the log in memory.
   */
  release(settled: number, wantedFrom: number, wantedBytesMax: number): void {
    if (this.reader === null) return;
    invariant(
      settled <= this.applied && settled <= this.stableIndex,
      `release through ${settled} beyond applied ${this.applied} or stable ${this.stableIndex}`,
    );
    const heldFrom = this.heldFrom();
    if (settled < heldFrom) return;
    // Not below what is held: a follower down for long wants entries let go of long ago, and
    // walking up from its match at every advance would cost as much as the outage was long.
    let through = Math.max(Math.min(settled, wantedFrom - 1), heldFrom - 1);
    if (through < settled) {
      // The bytes of the wanted settled entries: all held bytes but the unsettled ones and those
      // released anyway (walked: both are short lists).
      let wantedBytes = this.held.bytes;
      for (let i = settled + 1 - heldFrom; i < this.held.length; i++)
        wantedBytes -= this.held.at(i)?.data.length ?? 0;
      for (let i = 0; i <= through - heldFrom; i++) wantedBytes -= this.held.at(i)?.data.length ?? 0;
      while (through < settled && wantedBytes > wantedBytesMax) {
        through++;
        wantedBytes -= this.held.at(through - heldFrom)?.data.length ?? 0;
      }
    }
    this.dropHeldThrough(through);
  }

  private dropHeldThrough(index: number): void {
    const count = index + 1 - this.heldFrom();
    if (count > 0) this.held.dropFirst(count);
  }

  offsetPoint(): LogOffset {
    return this.offset;
  }
}
