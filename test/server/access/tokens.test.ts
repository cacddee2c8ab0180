// The pure parts of tokens: their form, their keyed hash, the authorization metadata, the
// brute-force backoff (on a fake clock) and which identities a binding covers.

import { describe, expect, it } from "vitest";
import {
  bindingCovers,
  bindingRecordName,
  checkIdentityPattern,
  decodeTokenRecord,
  encodeRecord,
  rootTokenRecord,
} from "../../../server/access/access-records.js";
import { TokenBackoff } from "../../../server/access/token-backoff.js";
import {
  checkAccessor,
  deriveTokenKey,
  isWellFormedToken,
  newAccessor,
  newToken,
  tokenHash,
  tokenOfAuthorization,
} from "../../../server/access/token-ids.js";
import { NodeError } from "../../../server/errors.js";

describe("token ids", () => {
  it("makes distinct, well-formed tokens and accessors", () => {
    const tokens = new Set(Array.from({ length: 100 }, () => newToken()));
    expect(tokens.size).toBe(100);
    for (const token of tokens) expect(isWellFormedToken(token)).toBe(true);
    expect(() => checkAccessor(newAccessor())).not.toThrow();
    expect(() => checkAccessor("ABC")).toThrow(/32 lower-case hexadecimal digits/);
  });

  it("names a token by a hash keyed by the root key: another root key, another name", () => {
    const token = newToken();
    const keyA = deriveTokenKey(new Uint8Array(32).fill(1));
    const keyB = deriveTokenKey(new Uint8Array(32).fill(2));
    expect(tokenHash(keyA, token)).toMatch(/^[0-9a-f]{64}$/);
    expect(tokenHash(keyA, token)).toBe(tokenHash(keyA, token));
    expect(tokenHash(keyA, token)).not.toBe(tokenHash(keyB, token));
    expect(tokenHash(keyA, token)).not.toContain(token.slice(3, 20));
  });

  it("reads the bearer token of the authorization metadata, and passes anything else on to be refused", () => {
    const token = newToken();
    expect(tokenOfAuthorization(undefined)).toBeNull();
    expect(tokenOfAuthorization("")).toBeNull();
    expect(tokenOfAuthorization(`Bearer ${token}`)).toBe(token);
    expect(tokenOfAuthorization(token)).toBe(token);
    const odd = tokenOfAuthorization("Basic dXNlcjpwYXNz");
    expect(odd === null ? true : isWellFormedToken(odd)).toBe(false);
    expect(isWellFormedToken(`sr.${"a".repeat(42)}`)).toBe(false);
    expect(isWellFormedToken(`xx.${"a".repeat(43)}`)).toBe(false);
  });
});

describe("token backoff", () => {
  it("answers the first failures at once, then doubles the wait up to its cap; success clears it", () => {
    let now = 0;
    const backoff = new TokenBackoff({
      freeFailures: 3,
      baseMs: 100,
      maxMs: 350,
      identitiesMax: 10,
      now: () => now,
    });
    const waitOf = () => {
      try {
        backoff.check("eve");
        return 0;
      } catch (error) {
        expect(error).toBeInstanceOf(NodeError);
        expect((error as NodeError).code).toBe("RATE_LIMITED");
        return (error as NodeError).retryAfterMs;
      }
    };
    for (let i = 0; i < 2; i++) backoff.failed("eve");
    expect(waitOf()).toBe(0);
    backoff.failed("eve");
    expect(waitOf()).toBe(100);
    now += 100;
    expect(waitOf()).toBe(0);
    backoff.failed("eve");
    expect(waitOf()).toBe(200);
    now += 200;
    backoff.failed("eve");
    expect(waitOf()).toBe(350);
    expect(() => backoff.check("bob")).not.toThrow();
    now += 350;
    backoff.succeeded("eve");
    backoff.failed("eve");
    expect(waitOf()).toBe(0);
  });

  it("forgets the oldest identity beyond its bound", () => {
    const backoff = new TokenBackoff({
      freeFailures: 0,
      baseMs: 1000,
      maxMs: 1000,
      identitiesMax: 2,
      now: () => 0,
    });
    for (const identity of ["a", "b", "c"]) backoff.failed(identity);
    expect(() => backoff.check("a")).not.toThrow();
    expect(() => backoff.check("b")).toThrow(/too many invalid tokens from b/);
    expect(() => backoff.check("c")).toThrow(/too many invalid tokens from c/);
  });
});

describe("bindings and records", () => {
  it("binds an identity exactly, or a prefix of identities", () => {
    expect(bindingCovers("alice", "alice")).toBe(true);
    expect(bindingCovers("alice", "alice2")).toBe(false);
    expect(bindingCovers("ci-*", "ci-runner")).toBe(true);
    expect(bindingCovers("ci-*", "cd-runner")).toBe(false);
    expect(bindingCovers("*", "anyone")).toBe(true);
    expect(bindingRecordName("ci-*")).toBe("prefix.ci-");
    expect(bindingRecordName("*")).toBe("prefix.");
    expect(bindingRecordName("alice")).toBe("exact.alice");
    for (const bad of ["a*b", "**", "", "-x", "a/b", "x".repeat(64)])
      expect(() => checkIdentityPattern(bad), bad).toThrow(/identity binding/);
  });

  it("decodes what it encodes, and refuses a token record with a missing field", () => {
    const record = rootTokenRecord("operator", newAccessor(), 1234);
    expect(decodeTokenRecord(encodeRecord(record))).toEqual(record);
    const broken = new TextEncoder().encode(JSON.stringify({ ...record, expiresAt: "never" }));
    expect(() => decodeTokenRecord(broken)).toThrow(/token record does not have the expected fields/);
    expect(() => decodeTokenRecord(new TextEncoder().encode("not json"))).toThrow(/does not decode/);
  });
});
