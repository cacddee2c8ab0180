// The seal record is read from replicated state before anything trusts it: a record that breaks
// a field or an invariant is refused with SEAL_RECORD_INVALID and a reason, never half-used.

import { describe, expect, it } from "vitest";
import { initializeSeal } from "../../hsm/seal-operations.js";
import { decodeSealRecord, encodeSealRecord, type SealRecord } from "../../hsm/seal-record.js";

const { record: shamirRecord } = await initializeSeal({ shamir: { count: 3, threshold: 2 } });
const shamir = shamirRecord.protectors[0];
const pkcs11 = {
  type: "pkcs11",
  keyLabel: "root",
  mechanism: "aes-gcm",
  wrappedRootKey: Buffer.alloc(60).toString("base64"),
};
const shares = shamir?.type === "shamir" ? shamir.shares : null;

function decodeJson(value: unknown): SealRecord {
  return decodeSealRecord(new TextEncoder().encode(JSON.stringify(value)));
}

describe("seal record", () => {
  it("round-trips as JSON", () => {
    expect(decodeSealRecord(encodeSealRecord(shamirRecord))).toEqual(shamirRecord);
  });

  it.each([
    ["another version", { ...shamirRecord, version: 2 }, /unknown version 2/],
    ["a short root key check", { ...shamirRecord, rootKeyCheck: "AAAA" }, /rootKeyCheck is not 32 bytes/],
    ["no protector", { ...shamirRecord, protectors: [] }, /one or two protectors/],
    [
      "two Shamir protectors",
      { ...shamirRecord, protectors: [shamir, shamir] },
      /two protectors of one type/,
    ],
    [
      "recovery beside unseal shares",
      { ...shamirRecord, recovery: shares },
      /recovery shares exist beside unseal shares/,
    ],
    [
      "an HSM without recovery shares",
      { ...shamirRecord, protectors: [pkcs11] },
      /an HSM-only seal needs recovery shares/,
    ],
    [
      "an unknown protector",
      { ...shamirRecord, protectors: [{ type: "tpm" }] },
      /protector 0 has unknown type "tpm"/,
    ],
    [
      "an unknown mechanism",
      { ...shamirRecord, recovery: shares, protectors: [{ ...pkcs11, mechanism: "des" }] },
      /unknown PKCS#11 mechanism "des"/,
    ],
    [
      "a wrapped key that is not base64",
      { ...shamirRecord, recovery: shares, protectors: [{ ...pkcs11, wrappedRootKey: "!".repeat(80) }] },
      /wrappedRootKey is malformed/,
    ],
    [
      "a share set with a digest missing",
      {
        ...shamirRecord,
        protectors: [{ ...shamir, shares: { ...shares, digests: shares?.digests.slice(1) } }],
      },
      /unseal shares: it must hold 3 share digests/,
    ],
    [
      "a share set with threshold 1 of 3",
      { ...shamirRecord, protectors: [{ ...shamir, shares: { ...shares, threshold: 1 } }] },
      /threshold must be at least 2/,
    ],
  ])("refuses %s", (_name, value, message) => {
    let caught: unknown = null;
    try {
      decodeJson(value);
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: "SEAL_RECORD_INVALID", message: expect.stringMatching(message) });
  });

  it("refuses bytes that are not JSON", () => {
    expect(() => decodeSealRecord(new Uint8Array([0xff, 0x00]))).toThrow("the seal record is not JSON");
  });
});
