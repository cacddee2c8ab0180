// Shamir shares as operators handle them: written down, typed back (with typos), combined in any
// subset of the threshold, refused below it, and refused when they belong to another set. The
// splitting itself is the audited `shamir-secret-sharing` package; these tests prove our framing.

import { describe, expect, it } from "vitest";
import { SealError } from "../../hsm/errors.js";
import { checkShare, combineShares, newShareSet, validateShareCounts } from "../../hsm/shares/share-set.js";
import { decodeShare, encodeShare } from "../../hsm/shares/share-text.js";

const alphabet = "0123456789abcdefghjkmnpqrstvwxyz";

function subsetsOf<T>(items: readonly T[], size: number): T[][] {
  if (size === 0) return [[]];
  if (items.length < size) return [];
  const [first, ...rest] = items as [T, ...T[]];
  return [...subsetsOf(rest, size - 1).map((subset) => [first, ...subset]), ...subsetsOf(rest, size)];
}

function expectSealError(action: () => unknown, code: string, message: RegExp): void {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(SealError);
    expect((error as SealError).code).toBe(code);
    expect((error as SealError).message).toMatch(message);
    return;
  }
  throw new Error(`expected a SealError ${code}`);
}

describe("share counts", () => {
  it.each([
    [5, 3],
    [1, 1],
    [2, 2],
    [255, 255],
    [255, 2],
  ])("accepts %i shares with threshold %i", (count, threshold) => {
    expect(() => validateShareCounts(count, threshold)).not.toThrow();
  });

  it.each([
    [0, 0, /share count must be an integer from 1 to 255, got 0/],
    [256, 3, /share count must be an integer from 1 to 255, got 256/],
    [2.5, 2, /share count must be an integer/],
    [5, 6, /threshold must be an integer from 1 to the share count \(5\), got 6/],
    [5, 0, /threshold must be an integer from 1/],
    [5, 1, /with more than one share the threshold must be at least 2/],
  ])("refuses %s shares with threshold %s", (count, threshold, message) => {
    expectSealError(() => validateShareCounts(count, threshold), "INVALID_ARGUMENT", message);
  });
});

describe("share text", () => {
  it("round-trips, ignoring case, dashes and spaces, and reading O as 0 and I, L as 1", async () => {
    const { shares, secret } = await newShareSet(3, 2);
    secret.fill(0);
    const share = shares[0] ?? "";
    expect(share).toMatch(/^[0-9a-hjkmnp-tv-z]{5}(-[0-9a-hjkmnp-tv-z]{1,5})+$/);
    const parsed = decodeShare(share);
    expect(parsed.index).toBe(1);
    expect(encodeShare(parsed)).toBe(share);
    const sloppy = share.toUpperCase().replaceAll("-", " ").replaceAll("0", "O").replaceAll("1", "l");
    expect(decodeShare(sloppy)).toEqual(parsed);
  });

  it("catches every single mistyped character and every swap of two neighbours", async () => {
    const { shares, secret } = await newShareSet(5, 3);
    secret.fill(0);
    const compact = (shares[2] ?? "").replaceAll("-", "");
    let typos = 0;
    // The last character also carries base32 padding bits: a typo there may change only padding.
    for (let position = 0; position < compact.length - 1; position++) {
      for (const replacement of alphabet) {
        if (replacement === compact[position]) continue;
        const typo = compact.slice(0, position) + replacement + compact.slice(position + 1);
        expectSealError(() => decodeShare(typo), "SHARE_MISTYPED", /checksum does not match/);
        typos += 1;
      }
      const swapped =
        compact.slice(0, position) + compact[position + 1] + compact[position] + compact.slice(position + 2);
      if (swapped !== compact) expectSealError(() => decodeShare(swapped), "SHARE_MISTYPED", /checksum/);
    }
    expect(typos).toBeGreaterThan(2000);
  });

  it("names the position of a character that is not a share character, without repeating it", async () => {
    const { shares, secret } = await newShareSet(2, 2);
    secret.fill(0);
    const share = `${(shares[0] ?? "").slice(0, 3)}u${(shares[0] ?? "").slice(4)}`;
    expectSealError(
      () => decodeShare(share),
      "SHARE_MISTYPED",
      /^character 4 of the share is not a share character/,
    );
  });

  it("refuses a share with a group missing", async () => {
    const { shares, secret } = await newShareSet(2, 2);
    secret.fill(0);
    const share = (shares[1] ?? "").split("-").slice(1).join("-");
    expectSealError(() => decodeShare(share), "SHARE_MISTYPED", /checksum|too short/);
    expectSealError(() => decodeShare("abcde"), "SHARE_MISTYPED", /too short/);
  });
});

describe("share sets", () => {
  for (const [count, threshold] of [
    [5, 3],
    [3, 2],
    [4, 4],
    [1, 1],
  ] as const) {
    it(`rebuilds the secret from every subset of ${threshold} of ${count} shares`, async () => {
      const { descriptor, secret, shares } = await newShareSet(count, threshold);
      expect(descriptor).toMatchObject({ count, threshold });
      expect(descriptor.digests).toHaveLength(count);
      const subsets = subsetsOf(shares, threshold);
      for (const subset of subsets) {
        const rebuilt = await combineShares(
          descriptor,
          subset.map((share) => checkShare(descriptor, share)),
        );
        expect(Buffer.from(rebuilt).equals(Buffer.from(secret))).toBe(true);
      }
      expect(subsets.length).toBe(binomial(count, threshold));
    });
  }

  it("refuses fewer shares than the threshold", async () => {
    const { descriptor, shares, secret } = await newShareSet(5, 3);
    secret.fill(0);
    const two = shares.slice(0, 2).map((share) => checkShare(descriptor, share));
    await expect(combineShares(descriptor, two)).rejects.toThrow("2 shares given, 3 needed");
  });

  it("says which share does not match when a checksum-valid share was altered", async () => {
    const { descriptor, shares, secret } = await newShareSet(5, 3);
    secret.fill(0);
    const parsed = decodeShare(shares[1] ?? "");
    const altered = new Uint8Array(parsed.payload);
    altered[0] = (altered[0] ?? 0) ^ 1;
    const forged = encodeShare({ ...parsed, payload: altered });
    expectSealError(() => checkShare(descriptor, forged), "SHARE_MISMATCH", /^share 2 of 5 does not match$/);
  });

  it("recognises a share of another set (before a rekey, or another cluster)", async () => {
    const current = await newShareSet(5, 3);
    const older = await newShareSet(5, 3);
    current.secret.fill(0);
    older.secret.fill(0);
    expectSealError(
      () => checkShare(current.descriptor, older.shares[0] ?? ""),
      "SHARE_MISMATCH",
      new RegExp(
        `share 1 belongs to share set ${older.descriptor.id}, not to the current set ${current.descriptor.id}`,
      ),
    );
  });

  it("refuses the same share twice", async () => {
    const { descriptor, shares, secret } = await newShareSet(3, 2);
    secret.fill(0);
    const share = checkShare(descriptor, shares[0] ?? "");
    await expect(combineShares(descriptor, [share, share])).rejects.toMatchObject({
      code: "SHARE_DUPLICATE",
    });
  });

  it("detects a descriptor whose check value was altered", async () => {
    const { descriptor, shares, secret } = await newShareSet(3, 2);
    secret.fill(0);
    const forged = { ...descriptor, secretCheck: Buffer.alloc(32, 7).toString("base64") };
    const parsed = shares.slice(0, 2).map((share) => checkShare(forged, share));
    await expect(combineShares(forged, parsed)).rejects.toMatchObject({ code: "SEAL_RECORD_INVALID" });
  });
});

function binomial(n: number, k: number): number {
  let result = 1;
  for (let i = 1; i <= k; i++) result = (result * (n - k + i)) / i;
  return result;
}
