// MessagePack bytes that own their memory (storage/msgpack-owned.ts): what is kept is not changed
// by later encodings and holds no shared buffer, and encoding does not use up msgpackr's buffer
// (each fresh one was a costly allocation).

import { Packr, unpack } from "msgpackr";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { packOwned, packTransient } from "../../storage/msgpack-owned.js";

const packr = new Packr({ useRecords: false, mapsAsObjects: true });
const record = (i: number) => ({ index: i, path: `app/secret-${i}`, value: "x".repeat(400) });

// msgpackr's buffer is shared by the whole process, and its size and fill are whatever the last
// encodings left (a large value grows it): each test starts from an empty 8 KiB one, as a fresh
// process does.
beforeEach(() => {
  packr.useBuffer(Buffer.allocUnsafeSlow(8192));
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe("packOwned", () => {
  it("answers bytes of their own, which later encodings, ours or anyone's, leave as they were", () => {
    const kept = packOwned(packr, record(1));
    const small = packOwned(packr, { index: 7 });
    for (let i = 2; i < 200; i++) {
      packOwned(packr, record(i));
      packr.pack(record(i)); // another user of msgpackr, encoding into the shared buffer as usual
    }
    expect(unpack(kept)).toEqual(record(1));
    expect(unpack(small)).toEqual({ index: 7 });
    // No view of a larger buffer: keeping the record keeps only its bytes.
    expect(kept.buffer.byteLength).toBe(kept.length);
    expect(small.buffer.byteLength).toBe(small.length);
  });

  it("never uses up msgpackr's shared buffer, where plain encoding takes a fresh 8 KiB every few values", () => {
    const allocations = vi.spyOn(Buffer, "allocUnsafeSlow");
    for (let i = 0; i < 1000; i++) packOwned(packr, record(i));
    expect(allocations).not.toHaveBeenCalled();
    for (let i = 0; i < 1000; i++) packr.pack(record(i));
    expect(allocations.mock.calls.length).toBeGreaterThan(50);
  });
});

describe("packTransient", () => {
  it("answers the encoding, valid until the next one, without using up the buffer", () => {
    const allocations = vi.spyOn(Buffer, "allocUnsafeSlow");
    for (let i = 0; i < 1000; i++) expect(unpack(packTransient(packr, record(i)))).toEqual(record(i));
    expect(allocations).not.toHaveBeenCalled();
  });
});
