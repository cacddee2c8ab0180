// What a leader knows of one follower's log, and the flow control that bounds what it sends:
// probe (one append at a time until a match is found), replicate (pipelined appends, bounded in
// count and bytes), snapshot (chunks of an InstallSnapshot, bounded in flight).

import { invariant } from "./errors.js";
import type { SnapshotMeta } from "./types.js";

/** A bounded FIFO of appends in flight: (last index, bytes) per message. */
export class Inflights {
  private readonly lastIndexes: number[] = [];
  private readonly sizes: number[] = [];
  private head = 0;
  private bytesInFlight = 0;

  constructor(
    private readonly messagesMax: number,
    private readonly bytesMax: number,
  ) {}

  count(): number {
    return this.lastIndexes.length - this.head;
  }

  bytes(): number {
    return this.bytesInFlight;
  }

  full(): boolean {
    return this.count() >= this.messagesMax || this.bytesInFlight >= this.bytesMax;
  }

  add(lastIndex: number, bytes: number): void {
    invariant(!this.full(), "add to full inflights");
    this.lastIndexes.push(lastIndex);
    this.sizes.push(bytes);
    this.bytesInFlight += bytes;
  }

  /** Frees every message whose last index is at or below `index`. */
  freeTo(index: number): void {
    while (this.head < this.lastIndexes.length && (this.lastIndexes[this.head] ?? Infinity) <= index) {
      this.bytesInFlight -= this.sizes[this.head] ?? 0;
      this.head++;
    }
    // Compact the arrays once the consumed prefix dominates, keeping memory bounded by messagesMax.
    if (this.head > 64 && this.head * 2 > this.lastIndexes.length) {
      this.lastIndexes.splice(0, this.head);
      this.sizes.splice(0, this.head);
      this.head = 0;
    }
  }

  /** Frees the oldest message, so a leader whose appends were lost can probe again. */
  freeFirst(): void {
    const first = this.lastIndexes[this.head];
    if (first !== undefined) this.freeTo(first);
  }

  reset(): void {
    this.lastIndexes.length = 0;
    this.sizes.length = 0;
    this.head = 0;
    this.bytesInFlight = 0;
  }
}

export type ProgressState = "probe" | "replicate" | "snapshot";

export interface SnapshotTransfer {
  readonly meta: SnapshotMeta;
  readonly totalBytes: number;
  /** The next byte offset to send. */
  sentOffset: number;
  /** At least one chunk must go out from sentOffset even if nothing remains there (an empty snapshot, a resend). */
  chunkOwed: boolean;
  /** The follower confirmed it holds everything before this offset. */
  ackedOffset: number;
  /**
   * Ticks since the follower last confirmed more of the snapshot. After an election timeout's
   * worth, what is in flight is taken as lost and sent again from the acked offset.
   */
  idleTicks: number;
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  /** In probe state: an append is out and unanswered; wait for its answer or a heartbeat. */
  probeSent = false;
  /** Heard from since the last CheckQuorum round. */
  recentActive = true;
  snapshot: SnapshotTransfer | null = null;
  readonly inflights: Inflights;

  constructor(next: number, inflightMessagesMax: number, inflightBytesMax: number) {
    this.next = next;
    this.inflights = new Inflights(inflightMessagesMax, inflightBytesMax);
  }

  becomeProbe(): void {
    // After a snapshot the follower continues right after it; otherwise from what is known to match.
    const snapshotIndex = this.snapshot?.meta.index ?? 0;
    this.state = "probe";
    this.next = Math.max(this.match + 1, snapshotIndex + 1);
    this.probeSent = false;
    this.snapshot = null;
    this.inflights.reset();
  }

  becomeReplicate(): void {
    this.state = "replicate";
    this.next = this.match + 1;
    this.probeSent = false;
    this.snapshot = null;
    this.inflights.reset();
  }

  becomeSnapshot(transfer: SnapshotTransfer): void {
    this.state = "snapshot";
    this.probeSent = false;
    this.snapshot = transfer;
    this.inflights.reset();
  }

  /** The follower acknowledged entries through `index`. Returns whether that is news. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * The follower rejected an append at `rejected`; `probeFrom` is where the leader should try next
   * (from the follower's hint). Returns false for a stale rejection that must be ignored.
   */
  maybeDecreaseTo(rejected: number, probeFrom: number): boolean {
    if (this.state === "replicate") {
      // Rejections at or below a known match come from reordered, older appends.
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // In probe state only the answer to the latest probe (at next - 1) counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, probeFrom + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  /** Whether the leader must hold further appends to this follower. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }
}
