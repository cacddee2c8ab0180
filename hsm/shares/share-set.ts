// A share set: a random 256-bit secret split into N Shamir shares with threshold T, and what the
// cluster keeps to check them (the descriptor). The secret is a key-encryption key (it wraps the
// root key) or, for recovery shares, only a proof of quorum; either way the cluster never stores it.
//
// The descriptor holds, per share, a digest of that share, and a check value of the secret. A
// digest reveals nothing useful: any T-1 shares are uniformly random, and the shares are 256-bit
// values that cannot be guessed from their hash. What the digests buy is the error an operator
// needs: "share 3 of 5 does not match" at entry, instead of a wrong key after the threshold.
//
// The splitting and combining is the audited `shamir-secret-sharing` package; this file only
// frames it (set ids, indexes, checks) and never implements field arithmetic of its own.

import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { combine, split } from "shamir-secret-sharing";
import { SealError } from "../errors.js";
import { decodeShare, encodeShare, type ParsedShare, shareSetIdBytes } from "./share-text.js";

export const shareSecretBytes = 32;
export const shareCountMax = 255;
export const defaultShareCount = 5;
export const defaultShareThreshold = 3;

/** What the replicated seal record keeps about a share set: no share and no secret. */
export interface ShareSetDescriptor {
  /** 8 hex digits; new for every split, so a share of an older set is recognised as such. */
  readonly id: string;
  readonly threshold: number;
  readonly count: number;
  /** Base64 digest of each share, by index - 1. */
  readonly digests: readonly string[];
  /** Base64 HMAC of the secret, to confirm what the shares combine to. */
  readonly secretCheck: string;
}

export interface NewShareSet {
  readonly descriptor: ShareSetDescriptor;
  /** The secret the shares rebuild. The caller uses it, then zeroes it. */
  readonly secret: Uint8Array;
  /** The shares as operators write them down, share i at index i - 1. */
  readonly shares: readonly string[];
}

export function validateShareCounts(count: number, threshold: number): void {
  if (!Number.isInteger(count) || count < 1 || count > shareCountMax) {
    throw new SealError(
      "INVALID_ARGUMENT",
      `the share count must be an integer from 1 to ${shareCountMax}, got ${count}`,
    );
  }
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > count) {
    throw new SealError(
      "INVALID_ARGUMENT",
      `the threshold must be an integer from 1 to the share count (${count}), got ${threshold}`,
    );
  }
  if (count > 1 && threshold < 2) {
    throw new SealError(
      "INVALID_ARGUMENT",
      "with more than one share the threshold must be at least 2 (a threshold of 1 would make every share the whole secret)",
    );
  }
}

/** Draws a new random secret and splits it into `count` shares, any `threshold` of which rebuild it. */
export async function newShareSet(count: number, threshold: number): Promise<NewShareSet> {
  validateShareCounts(count, threshold);
  const secret = new Uint8Array(randomBytes(shareSecretBytes));
  const setId = new Uint8Array(randomBytes(shareSetIdBytes));
  // One share is the secret itself at x = 0 (the polynomial's value there), in the same layout.
  const payloads =
    count === 1 ? [concatBytes(secret, new Uint8Array([0]))] : await split(secret, count, threshold);
  const shares: string[] = [];
  const digests: string[] = [];
  payloads.forEach((payload, position) => {
    const share: ParsedShare = { setId, index: position + 1, payload };
    shares.push(encodeShare(share));
    digests.push(shareDigest(share).toString("base64"));
    payload.fill(0);
  });
  const descriptor: ShareSetDescriptor = {
    id: Buffer.from(setId).toString("hex"),
    threshold,
    count,
    digests,
    secretCheck: secretCheckOf(secret).toString("base64"),
  };
  return { descriptor, secret, shares };
}

/**
 * Parses a typed share and checks it against the set: a typo is SHARE_MISTYPED, a share of
 * another set or an altered one SHARE_MISMATCH, each naming the share by its index.
 */
export function checkShare(descriptor: ShareSetDescriptor, text: string): ParsedShare {
  const share = decodeShare(text);
  const setId = Buffer.from(share.setId).toString("hex");
  if (setId !== descriptor.id) {
    share.payload.fill(0);
    throw new SealError(
      "SHARE_MISMATCH",
      `share ${share.index} belongs to share set ${setId}, not to the current set ${descriptor.id} (a share from before a rekey, or of another cluster?)`,
    );
  }
  const expected = descriptor.digests[share.index - 1];
  if (expected === undefined) {
    share.payload.fill(0);
    throw new SealError(
      "SHARE_MISMATCH",
      `share ${share.index} does not exist: the set has ${descriptor.count} shares`,
    );
  }
  const actual = shareDigest(share);
  const expectedBytes = Buffer.from(expected, "base64");
  if (expectedBytes.length !== actual.length || !timingSafeEqual(expectedBytes, actual)) {
    share.payload.fill(0);
    throw new SealError("SHARE_MISMATCH", `share ${share.index} of ${descriptor.count} does not match`);
  }
  return share;
}

/** Rebuilds the secret from `threshold` checked shares of the set and confirms it. */
export async function combineShares(
  descriptor: ShareSetDescriptor,
  shares: readonly ParsedShare[],
): Promise<Uint8Array> {
  if (shares.length < descriptor.threshold) {
    throw new SealError("INVALID_ARGUMENT", `${shares.length} shares given, ${descriptor.threshold} needed`);
  }
  const indexes = new Set(shares.map((share) => share.index));
  if (indexes.size !== shares.length) {
    throw new SealError("SHARE_DUPLICATE", "the same share was given more than once");
  }
  const payloads = shares.slice(0, descriptor.threshold).map((share) => share.payload);
  const secret =
    descriptor.threshold === 1
      ? (payloads[0] ?? new Uint8Array(0)).slice(0, shareSecretBytes)
      : await combine(payloads);
  if (!secretMatches(descriptor, secret)) {
    secret.fill(0);
    // Every share matched its digest, so the descriptor itself was altered.
    throw new SealError(
      "SEAL_RECORD_INVALID",
      `the shares of set ${descriptor.id} combine to a secret that fails the stored check value`,
    );
  }
  return secret;
}

/** True when `secret` is what the set's shares rebuild (checked against the stored check value). */
export function secretMatches(descriptor: ShareSetDescriptor, secret: Uint8Array): boolean {
  const check = Buffer.from(descriptor.secretCheck, "base64");
  const actual = secretCheckOf(secret);
  return (
    secret.length === shareSecretBytes && check.length === actual.length && timingSafeEqual(check, actual)
  );
}

/** Checks a descriptor read from the replicated seal record before it is trusted. */
export function validateShareSetDescriptor(value: unknown, what: string): ShareSetDescriptor {
  const fail = (why: string): never => {
    throw new SealError("SEAL_RECORD_INVALID", `${what}: ${why}`);
  };
  if (typeof value !== "object" || value === null) return fail("not an object");
  const record = value as Record<string, unknown>;
  const { id, threshold, count, digests, secretCheck } = record;
  if (typeof id !== "string" || !/^[0-9a-f]{8}$/.test(id)) fail("id must be 8 hex digits");
  if (typeof threshold !== "number" || typeof count !== "number")
    return fail("threshold and count must be numbers");
  try {
    validateShareCounts(count, threshold);
  } catch (error) {
    fail((error as Error).message);
  }
  if (!Array.isArray(digests) || digests.length !== count) return fail(`it must hold ${count} share digests`);
  for (const digest of digests) {
    if (typeof digest !== "string" || Buffer.from(digest, "base64").length !== 32)
      fail("a share digest is not 32 bytes of base64");
  }
  if (typeof secretCheck !== "string" || Buffer.from(secretCheck, "base64").length !== 32) {
    fail("secretCheck is not 32 bytes of base64");
  }
  return {
    id: id as string,
    threshold,
    count,
    digests: [...(digests as string[])],
    secretCheck: secretCheck as string,
  };
}

function shareDigest(share: ParsedShare): Buffer {
  return createHash("sha256")
    .update("strongroom share digest v1")
    .update(share.setId)
    .update(new Uint8Array([share.index]))
    .update(share.payload)
    .digest();
}

function secretCheckOf(secret: Uint8Array): Buffer {
  return createHmac("sha256", secret).update("strongroom share secret check v1").digest();
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
