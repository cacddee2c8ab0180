// Entering shares one call at a time, as operators at several terminals do: progress and a nonce,
// a refused share that keeps the attempt, a reset, and an attempt that expires.

import { describe, expect, it } from "vitest";
import { ShareCollector } from "../../hsm/shares/share-collector.js";
import { newShareSet } from "../../hsm/shares/share-set.js";

async function fiveOfThree() {
  const set = await newShareSet(5, 3);
  const secret = Buffer.from(set.secret);
  set.secret.fill(0);
  return { ...set, secret };
}

describe("ShareCollector", () => {
  it("counts shares under one nonce and returns the secret at the threshold", async () => {
    const { descriptor, shares, secret } = await fiveOfThree();
    const collector = new ShareCollector();
    expect(collector.progress(descriptor)).toEqual({ progress: 0, threshold: 3, nonce: "", expiresAt: 0 });
    const first = await collector.submit(descriptor, shares[4] ?? "");
    expect(first).toMatchObject({ complete: false, progress: 1, threshold: 3 });
    const nonce = first.complete ? "" : first.nonce;
    expect(nonce).toMatch(/^[0-9a-f]{32}$/);
    expect(await collector.submit(descriptor, shares[0] ?? "", nonce)).toMatchObject({ progress: 2, nonce });
    const last = await collector.submit(descriptor, shares[2] ?? "");
    expect(last.complete).toBe(true);
    if (last.complete) expect(Buffer.from(last.secret).equals(secret)).toBe(true);
    expect(collector.progress(descriptor).progress).toBe(0);
  });

  it("keeps the attempt when a share is mistyped, wrong or entered twice", async () => {
    const { descriptor, shares } = await fiveOfThree();
    const other = await newShareSet(5, 3);
    other.secret.fill(0);
    const collector = new ShareCollector();
    await collector.submit(descriptor, shares[0] ?? "");
    const typo = (shares[1] ?? "").replace(/^./, (c) => (c === "a" ? "b" : "a"));
    await expect(collector.submit(descriptor, typo)).rejects.toMatchObject({ code: "SHARE_MISTYPED" });
    await expect(collector.submit(descriptor, other.shares[1] ?? "")).rejects.toMatchObject({
      code: "SHARE_MISMATCH",
    });
    await expect(collector.submit(descriptor, shares[0] ?? "")).rejects.toThrow(
      "share 1 was already entered in this attempt",
    );
    expect(collector.progress(descriptor).progress).toBe(1);
    await collector.submit(descriptor, shares[1] ?? "");
    expect((await collector.submit(descriptor, shares[3] ?? "")).complete).toBe(true);
  });

  it("refuses a nonce that is not the attempt in progress", async () => {
    const { descriptor, shares } = await fiveOfThree();
    const collector = new ShareCollector();
    await expect(collector.submit(descriptor, shares[0] ?? "", "0".repeat(32))).rejects.toThrow(
      /no attempt with that nonce is in progress/,
    );
    await collector.submit(descriptor, shares[0] ?? "");
    await expect(collector.submit(descriptor, shares[1] ?? "", "f".repeat(32))).rejects.toMatchObject({
      code: "NONCE_MISMATCH",
      message: expect.stringMatching(/someone else started one/),
    });
  });

  it("forgets the attempt on reset, on expiry, and when the share set changes", async () => {
    const { descriptor, shares } = await fiveOfThree();
    let now = 1_000_000;
    const collector = new ShareCollector({ attemptTimeoutMs: 60_000, now: () => now });
    const first = await collector.submit(descriptor, shares[0] ?? "");
    expect(first).toMatchObject({ progress: 1, expiresAt: 1_060_000 });
    collector.reset();
    expect(collector.progress(descriptor).progress).toBe(0);

    const again = await collector.submit(descriptor, shares[0] ?? "");
    const nonce = again.complete ? "" : again.nonce;
    now += 59_999;
    expect(collector.progress(descriptor)).toMatchObject({ progress: 1, nonce });
    now += 1;
    expect(collector.progress(descriptor)).toEqual({ progress: 0, threshold: 3, nonce: "", expiresAt: 0 });
    await expect(collector.submit(descriptor, shares[1] ?? "", nonce)).rejects.toMatchObject({
      code: "NONCE_MISMATCH",
    });

    await collector.submit(descriptor, shares[0] ?? "");
    const rekeyed = await newShareSet(5, 3);
    rekeyed.secret.fill(0);
    expect(collector.progress(rekeyed.descriptor).progress).toBe(0);
    expect(collector.progress(descriptor).progress).toBe(0);
  });

  it("refuses a timeout under a second", () => {
    expect(() => new ShareCollector({ attemptTimeoutMs: 10 })).toThrow(
      /attemptTimeoutMs must be an integer of at least 1000/,
    );
  });
});
