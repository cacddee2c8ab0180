// The tokens' keyed hashes kept between calls: each token is hashed once per key buffer, a new key
// (or forget, on seal) drops every hash kept, no more than `capacity` tokens are held, and no value
// longer than a token is.

import { describe, expect, it } from "vitest";
import { tokenHash } from "../../server/access/token-ids.js";
import { keptTokenLengthMax, TokenHashMemo } from "../../server/token-hash-memo.js";

/** tokenHash, counting its calls. */
function countedHash(): { hash: (key: Uint8Array, token: string) => string; calls: () => number } {
  let calls = 0;
  return {
    hash: (key, token) => {
      calls++;
      return tokenHash(key, token);
    },
    calls: () => calls,
  };
}

const tokenA = `sr.${"a".repeat(43)}`;
const tokenB = `sr.${"b".repeat(43)}`;
const tokenC = `sr.${"c".repeat(43)}`;

describe("TokenHashMemo", () => {
  it("answers what the hash gives, hashing each token once under one key", () => {
    const counted = countedHash();
    const memo = new TokenHashMemo(counted.hash);
    const key = new Uint8Array(32).fill(1);
    expect(memo.of(key, tokenA)).toBe(tokenHash(key, tokenA));
    expect(memo.of(key, tokenA)).toBe(tokenHash(key, tokenA));
    expect(memo.of(key, tokenB)).toBe(tokenHash(key, tokenB));
    expect(memo.of(key, tokenA)).not.toBe(memo.of(key, tokenB));
    expect(counted.calls()).toBe(2);
    expect(memo.size).toBe(2);
  });

  it("drops every hash when the key changes, even to a buffer of the same bytes", () => {
    const counted = countedHash();
    const memo = new TokenHashMemo(counted.hash);
    const first = new Uint8Array(32).fill(1);
    const second = new Uint8Array(32).fill(2);
    memo.of(first, tokenA);
    memo.of(first, tokenB);
    expect(memo.of(second, tokenA)).toBe(tokenHash(second, tokenA));
    expect(memo.size).toBe(1);
    // A new buffer of the same bytes (a seal, then an unseal, derives the key again): hashed afresh.
    const sameBytes = new Uint8Array(32).fill(2);
    expect(memo.of(sameBytes, tokenA)).toBe(tokenHash(second, tokenA));
    expect(counted.calls()).toBe(4);
  });

  it("holds at most `capacity` tokens, dropping the oldest", () => {
    const counted = countedHash();
    const memo = new TokenHashMemo(counted.hash, 2);
    const key = new Uint8Array(32).fill(3);
    memo.of(key, tokenA);
    memo.of(key, tokenB);
    memo.of(key, tokenC);
    expect(memo.size).toBe(2);
    expect(counted.calls()).toBe(3);
    // B and C are kept; A was dropped and is hashed again.
    memo.of(key, tokenB);
    memo.of(key, tokenC);
    expect(counted.calls()).toBe(3);
    expect(memo.of(key, tokenA)).toBe(tokenHash(key, tokenA));
    expect(counted.calls()).toBe(4);
  });

  it("hashes a value longer than a token without keeping it", () => {
    const counted = countedHash();
    const memo = new TokenHashMemo(counted.hash);
    const key = new Uint8Array(32).fill(5);
    const junk = "x".repeat(keptTokenLengthMax + 1);
    expect(memo.of(key, junk)).toBe(tokenHash(key, junk));
    expect(memo.of(key, junk)).toBe(tokenHash(key, junk));
    expect(counted.calls()).toBe(2);
    expect(memo.size).toBe(0);
    // A value of the longest kept length is kept.
    memo.of(key, "y".repeat(keptTokenLengthMax));
    expect(memo.size).toBe(1);
  });

  it("forgets every token and hash (the node sealed)", () => {
    const counted = countedHash();
    const memo = new TokenHashMemo(counted.hash);
    const key = new Uint8Array(32).fill(4);
    memo.of(key, tokenA);
    memo.forget();
    expect(memo.size).toBe(0);
    expect(memo.of(key, tokenA)).toBe(tokenHash(key, tokenA));
    expect(counted.calls()).toBe(2);
  });

  it("refuses a capacity under one token", () => {
    expect(() => new TokenHashMemo(tokenHash, 0)).toThrow("a token hash memo holds at least 1 token: got 0");
    expect(() => new TokenHashMemo(tokenHash, 1.5)).toThrow(/at least 1 token: got 1.5/);
  });
});
