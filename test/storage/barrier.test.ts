// The barrier: AES-256-GCM at rest with a keyring by term, AAD binding path and term, rotation
// (by hand and automatic), sealing that zeroes keys, and the keyring wrapped by the root key.

import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  Barrier,
  BarrierError,
  ciphertextOverheadBytes,
  Keyring,
  unwrapKeyring,
  wrapKeyring,
} from "../../storage/barrier/index.js";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array) => new TextDecoder().decode(value);

function unsealedBarrier(options: ConstructorParameters<typeof Barrier>[0] = {}): Barrier {
  const barrier = new Barrier(options);
  barrier.unseal(Keyring.create(1_000));
  return barrier;
}

function codeOf(action: () => unknown): string | null {
  try {
    action();
    return null;
  } catch (error) {
    if (error instanceof BarrierError) return error.code;
    throw error;
  }
}

describe("barrier", () => {
  it("decrypts what it encrypted, for empty, small and 1 MiB values, and the ciphertext hides the plaintext", () => {
    const barrier = unsealedBarrier();
    for (const value of [
      new Uint8Array(0),
      bytes("hunter2-MARKER-7f3a"),
      new Uint8Array(randomBytes(1024 * 1024)),
    ]) {
      const ciphertext = barrier.encrypt("secret/app/db", value);
      expect(ciphertext.length).toBe(value.length + ciphertextOverheadBytes);
      expect(barrier.decrypt("secret/app/db", ciphertext)).toEqual(value);
    }
    const ciphertext = barrier.encrypt("secret/app/db", bytes("hunter2-MARKER-7f3a"));
    expect(Buffer.from(ciphertext).includes("MARKER")).toBe(false);
    expect(Buffer.from(ciphertext).toString("base64")).not.toContain(
      Buffer.from("hunter2-MARKER-7f3a").toString("base64").slice(0, 12),
    );
  });

  it("uses a fresh nonce every time: the same value encrypts differently", () => {
    const barrier = unsealedBarrier();
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++)
      seen.add(Buffer.from(barrier.encrypt("p", bytes("same")).subarray(5, 17)).toString("hex"));
    expect(seen.size).toBe(1000);
  });

  it("binds a ciphertext to its path: moved to another path it does not decrypt", () => {
    const barrier = unsealedBarrier();
    const ciphertext = barrier.encrypt("tenant-a/db-password", bytes("s3cret"));
    let caught: unknown;
    try {
      barrier.decrypt("tenant-b/db-password", ciphertext);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(BarrierError);
    expect(caught).toMatchObject({ code: "INTEGRITY" });
    expect((caught as Error).message).toMatch(/tenant-b\/db-password does not authenticate/);
    expect((caught as Error).message).not.toContain("s3cret");
  });

  it("detects a change to any byte: header, nonce, ciphertext or tag", () => {
    const barrier = unsealedBarrier();
    barrier.rotate();
    const ciphertext = barrier.encrypt("p", bytes("value"));
    for (let i = 0; i < ciphertext.length; i++) {
      const tampered = new Uint8Array(ciphertext);
      tampered[i] = (tampered[i] ?? 0) ^ 0x01;
      expect(
        codeOf(() => barrier.decrypt("p", tampered)),
        `byte ${i}`,
      ).toMatch(/INTEGRITY|UNKNOWN_KEY_TERM|CIPHERTEXT_FORMAT/);
    }
    expect(codeOf(() => barrier.decrypt("p", ciphertext.subarray(0, 20)))).toBe("CIPHERTEXT_FORMAT");
  });

  it("rotation adds a term: new writes use it, old ciphertexts still decrypt with theirs", () => {
    const barrier = unsealedBarrier();
    const old = barrier.encrypt("p", bytes("old"));
    expect(barrier.rotate()).toBe(2);
    const fresh = barrier.encrypt("p", bytes("new"));
    expect(new DataView(old.buffer, old.byteOffset).getUint32(1)).toBe(1);
    expect(new DataView(fresh.buffer, fresh.byteOffset).getUint32(1)).toBe(2);
    expect(text(barrier.decrypt("p", old))).toBe("old");
    expect(text(barrier.decrypt("p", fresh))).toBe("new");
  });

  it("rotates on its own when the active key reaches its encryption limit, and reports the keyring change", () => {
    const changes: number[] = [];
    const barrier = unsealedBarrier({
      rotateAfterEncryptions: 3,
      onKeyringChange: (keyring) => changes.push(keyring.activeKey().term),
    });
    const ciphertexts = Array.from({ length: 7 }, (_, i) => barrier.encrypt("p", bytes(`v${i}`)));
    const terms = ciphertexts.map((c) => new DataView(c.buffer, c.byteOffset).getUint32(1));
    expect(terms).toEqual([1, 1, 1, 2, 2, 2, 3]);
    expect(changes).toEqual([2, 3]);
    expect(ciphertexts.map((c) => text(barrier.decrypt("p", c)))).toEqual([
      "v0",
      "v1",
      "v2",
      "v3",
      "v4",
      "v5",
      "v6",
    ]);
  });

  it("refuses a key it does not hold with UNKNOWN_KEY_TERM", () => {
    const writer = unsealedBarrier();
    writer.rotate();
    const ciphertext = writer.encrypt("p", bytes("v"));
    const reader = unsealedBarrier();
    expect(codeOf(() => reader.decrypt("p", ciphertext))).toBe("UNKNOWN_KEY_TERM");
  });

  it("sealed, it zeroes its keys and refuses to encrypt or decrypt", () => {
    const barrier = new Barrier();
    const keyring = Keyring.create(1);
    const keyBytes = keyring.activeKey().key;
    barrier.unseal(keyring);
    const ciphertext = barrier.encrypt("p", bytes("v"));
    expect(keyBytes.some((byte) => byte !== 0)).toBe(true);
    barrier.seal();
    expect(barrier.isSealed()).toBe(true);
    expect(keyBytes.every((byte) => byte === 0)).toBe(true);
    expect(codeOf(() => barrier.encrypt("p", bytes("v")))).toBe("SEALED");
    expect(codeOf(() => barrier.decrypt("p", ciphertext))).toBe("SEALED");
  });

  it("rejects bad arguments with INVALID_ARGUMENT", () => {
    const barrier = unsealedBarrier();
    expect(codeOf(() => barrier.encrypt("", bytes("v")))).toBe("INVALID_ARGUMENT");
    expect(codeOf(() => barrier.encrypt("p".repeat(4097), bytes("v")))).toBe("INVALID_ARGUMENT");
    expect(codeOf(() => barrier.encrypt("p", "text" as unknown as Uint8Array))).toBe("INVALID_ARGUMENT");
    expect(() => new Barrier({ rotateAfterEncryptions: 0 })).toThrow(
      /rotateAfterEncryptions must be an integer from 1 to 3865470566, got 0/,
    );
    expect(() => new Barrier({ rotateAfterEncryptions: 2 ** 32 })).toThrow(/rotateAfterEncryptions/);
  });
});

describe("keyring wrapped by the root key", () => {
  it("round-trips every key, term, install time and encryption count", () => {
    const keyring = Keyring.create(1_000);
    keyring.rotate(2_000);
    (keyring.key(2) as { encryptions: number }).encryptions = 42;
    const rootKey = new Uint8Array(randomBytes(32));
    const opened = unwrapKeyring(wrapKeyring(keyring, rootKey), rootKey);
    expect(opened.terms()).toEqual([1, 2]);
    expect(opened.activeKey()).toEqual(keyring.activeKey());
    expect(opened.key(1)).toEqual(keyring.key(1));
    // A barrier on the reopened keyring reads what the first one wrote.
    const first = new Barrier();
    first.unseal(keyring);
    const second = new Barrier();
    second.unseal(opened);
    expect(text(second.decrypt("p", first.encrypt("p", bytes("v"))))).toBe("v");
  });

  it("the wrapped keyring does not contain the keys in the clear", () => {
    const keyring = Keyring.create(1);
    const wrapped = Buffer.from(wrapKeyring(keyring, new Uint8Array(randomBytes(32))));
    expect(wrapped.includes(Buffer.from(keyring.activeKey().key))).toBe(false);
  });

  it("a wrong root key or an altered keyring fails with INTEGRITY, a bad root key with INVALID_ARGUMENT", () => {
    const keyring = Keyring.create(1);
    const rootKey = new Uint8Array(randomBytes(32));
    const wrapped = wrapKeyring(keyring, rootKey);
    expect(() => unwrapKeyring(wrapped, new Uint8Array(randomBytes(32)))).toThrow(
      /the root key does not open the stored keyring/,
    );
    const altered = new Uint8Array(wrapped);
    altered[20] = (altered[20] ?? 0) ^ 1;
    expect(codeOf(() => unwrapKeyring(altered, rootKey))).toBe("INTEGRITY");
    expect(codeOf(() => unwrapKeyring(new Uint8Array([9, 9, 9]), rootKey))).toBe("CIPHERTEXT_FORMAT");
    expect(codeOf(() => wrapKeyring(keyring, new Uint8Array(16)))).toBe("INVALID_ARGUMENT");
  });
});
