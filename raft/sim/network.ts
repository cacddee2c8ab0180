// The simulated network: every message gets a delivery time from the seeded PRNG, and may be
// dropped, duplicated, delayed past later messages (reordering) or blocked by a partition. Links are
// directed, so one-way (asymmetric) partitions are as easy as symmetric ones.

import type { Message, NodeId, SeededRandom } from "../core/index.js";

export interface NetworkConditions {
  /** Probability that a message is lost. */
  readonly dropRate: number;
  /** Probability that a message is delivered twice. */
  readonly duplicateRate: number;
  /** Delivery delay in time units, uniform in [delayMin, delayMax]. */
  readonly delayMin: number;
  readonly delayMax: number;
}

export const calmNetwork: NetworkConditions = { dropRate: 0, duplicateRate: 0, delayMin: 1, delayMax: 3 };

interface InFlight {
  readonly at: number;
  readonly sequence: number;
  readonly message: Message;
}

export class SimNetwork {
  conditions: NetworkConditions = calmNetwork;
  private readonly blocked = new Set<string>();
  /** Min-heap by (at, sequence): deterministic order for equal times. */
  private readonly heap: InFlight[] = [];
  private sequence = 0;
  sent = 0;
  dropped = 0;

  constructor(private readonly random: SeededRandom) {}

  send(message: Message, now: number): void {
    this.sent++;
    if (this.random.chance(this.conditions.dropRate)) {
      this.dropped++;
      return;
    }
    const copies = this.random.chance(this.conditions.duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay =
        this.conditions.delayMin +
        this.random.nextInt(this.conditions.delayMax - this.conditions.delayMin + 1);
      this.push({ at: now + delay, sequence: this.sequence++, message });
    }
  }

  /** Removes and returns the messages due at or before `now` that the partition lets through. */
  deliverDue(now: number): Message[] {
    const due: Message[] = [];
    while (this.heap.length > 0 && (this.heap[0]?.at ?? Infinity) <= now) {
      const next = this.pop();
      // A partition is checked on delivery, so messages in flight when it starts are cut too.
      if (this.isBlocked(next.message.from, next.message.to)) this.dropped++;
      else due.push(next.message);
    }
    return due;
  }

  inFlight(): number {
    return this.heap.length;
  }

  /** Drops everything addressed to or from `id` (its process is gone; so are its sockets). */
  discardFor(id: NodeId): void {
    const kept = this.heap.filter((item) => item.message.to !== id && item.message.from !== id);
    this.heap.length = 0;
    for (const item of kept) this.push(item);
  }

  block(from: NodeId, to: NodeId): void {
    this.blocked.add(`${from}>${to}`);
  }

  isBlocked(from: NodeId, to: NodeId): boolean {
    return this.blocked.has(`${from}>${to}`);
  }

  /** No two nodes in different groups can talk, either way. */
  partition(groups: readonly (readonly NodeId[])[]): void {
    for (const [i, source] of groups.entries()) {
      for (const [j, target] of groups.entries()) {
        if (i === j) continue;
        for (const from of source) for (const to of target) this.block(from, to);
      }
    }
  }

  heal(): void {
    this.blocked.clear();
  }

  hasPartition(): boolean {
    return this.blocked.size > 0;
  }

  private push(item: InFlight): void {
    const heap = this.heap;
    heap.push(item);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent];
      const c = heap[i];
      if (p === undefined || c === undefined || !before(c, p)) break;
      heap[parent] = c;
      heap[i] = p;
      i = parent;
    }
  }

  private pop(): InFlight {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined) throw new Error("pop from an empty network");
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        const l = heap[left];
        const r = heap[right];
        const s = heap[smallest];
        if (l !== undefined && s !== undefined && before(l, s)) smallest = left;
        const s2 = heap[smallest];
        if (r !== undefined && s2 !== undefined && before(r, s2)) smallest = right;
        if (smallest === i) break;
        const a = heap[i];
        const b = heap[smallest];
        if (a === undefined || b === undefined) break;
        heap[i] = b;
        heap[smallest] = a;
        i = smallest;
      }
    }
    return top;
  }
}

function before(a: InFlight, b: InFlight): boolean {
  return a.at < b.at || (a.at === b.at && a.sequence < b.sequence);
}
