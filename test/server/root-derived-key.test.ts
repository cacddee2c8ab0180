// A key derived from the root key is derived once per root key buffer, and zeroed when the root
// key changes or the holder forgets it: it never outlives the root key it came from.

import { describe, expect, it } from "vitest";
import { deriveTokenKey } from "../../server/access/token-ids.js";
import { deriveAuditKey } from "../../server/audit/audit-trail.js";
import { RootDerivedKey } from "../../server/root-derived-key.js";

describe("RootDerivedKey", () => {
  it("derives once per root key buffer and answers what the derivation gives", () => {
    let derivations = 0;
    const memo = new RootDerivedKey((rootKey) => {
      derivations++;
      return deriveAuditKey(rootKey);
    });
    const rootKey = new Uint8Array(32).fill(1);
    const first = memo.of(rootKey);
    expect(memo.of(rootKey)).toBe(first);
    expect(derivations).toBe(1);
    expect(Buffer.from(first).equals(Buffer.from(deriveAuditKey(rootKey)))).toBe(true);
    expect(Buffer.from(first).equals(Buffer.from(deriveTokenKey(rootKey)))).toBe(false);
  });

  it("zeroes the derived key when the root key changes, and after forget", () => {
    const memo = new RootDerivedKey(deriveTokenKey);
    const before = memo.of(new Uint8Array(32).fill(1));
    const expected = deriveTokenKey(new Uint8Array(32).fill(2));
    const after = memo.of(new Uint8Array(32).fill(2));
    expect(before.every((byte) => byte === 0)).toBe(true);
    expect(Buffer.from(after).equals(Buffer.from(expected))).toBe(true);
    memo.forget();
    expect(after.every((byte) => byte === 0)).toBe(true);
    // Asked again after forget, it derives afresh.
    expect(Buffer.from(memo.of(new Uint8Array(32).fill(2))).equals(Buffer.from(expected))).toBe(true);
  });
});
