// The core's in-memory queue of entries: positions, slices and byte counts stay right however the
// front is dropped (with and without the array being copied) and the end truncated.

import { describe, expect, it } from "vitest";
import { HeldEntries } from "../../raft/core/held-entries.js";
import type { Entry } from "../../raft/core/index.js";

const entry = (index: number): Entry => ({
  index,
  term: 1,
  type: "normal",
  data: new Uint8Array(index),
});
const indexes = (entries: readonly Entry[]) => entries.map((e) => e.index);

describe("HeldEntries", () => {
  it("keeps positions, slices and bytes right through drops at the front and truncation at the end", () => {
    const held = new HeldEntries([1, 2, 3].map(entry));
    for (let index = 4; index <= 10; index++) held.push(entry(index));
    expect(held.length).toBe(10);
    expect(held.bytes).toBe(55);

    held.dropFirst(3); // 3 of 10 dropped: the array is not copied yet
    expect(held.length).toBe(7);
    expect(held.at(0)?.index).toBe(4);
    expect(held.at(-1)).toBeUndefined();
    expect(indexes(held.slice(1, 3))).toEqual([5, 6]);
    expect(held.bytes).toBe(55 - 6);

    held.dropFirst(3); // 6 of 10: copied
    expect(indexes(held.slice(0))).toEqual([7, 8, 9, 10]);
    expect(held.bytes).toBe(7 + 8 + 9 + 10);

    held.truncate(2);
    held.push(entry(9));
    expect(indexes(held.slice(0))).toEqual([7, 8, 9]);
    expect(held.bytes).toBe(7 + 8 + 9);

    held.dropFirst(10); // more than held: all of them
    expect(held.length).toBe(0);
    expect(held.bytes).toBe(0);
    held.push(entry(10));
    expect(held.at(0)?.index).toBe(10);
    held.clear();
    expect(held.length).toBe(0);
    expect(held.bytes).toBe(0);
  });
});
