// Every seal against the shared Seal contract: Shamir (5 of 3, and a single share), and the
// PKCS#11 seal on a real SoftHSM2 token with AES-GCM and with AES key wrap (RFC 5649).

import { afterAll } from "vitest";
import { Pkcs11Client } from "../../hsm/pkcs11/pkcs11-client.js";
import type { Pkcs11Mechanism } from "../../hsm/pkcs11/pkcs11-config.js";
import { Pkcs11Seal } from "../../hsm/pkcs11/pkcs11-seal.js";
import type { Seal } from "../../hsm/seal.js";
import { initializeSeal, type SealInitOptions } from "../../hsm/seal-operations.js";
import { pkcs11ProtectorOf, type SealRecord, shamirProtectorOf } from "../../hsm/seal-record.js";
import { ShamirSeal } from "../../hsm/shares/shamir-seal.js";
import { type SealUnderTest, sealConformance } from "../conformance/seal-conformance.js";
import { SoftHsm } from "./softhsm-fixture.js";

const hsm = new SoftHsm();
const token = hsm.initToken("conformance");
afterAll(() => hsm.cleanup());

/** Inits a seal as asked and builds the seal under test (and its altered twins) from the record. */
async function underTest(
  options: SealInitOptions,
  sealFromRecord: (record: SealRecord) => Seal,
  unsealFully: (seal: Seal, shares: readonly string[]) => Promise<void>,
): Promise<SealUnderTest> {
  const { record, rootKey, unsealShares } = await initializeSeal(options);
  const shares = unsealShares?.shares ?? [];
  return {
    record,
    rootKey,
    seal: sealFromRecord(record),
    sealFromRecord,
    unsealFully: (seal) => unsealFully(seal, shares),
  };
}

for (const [count, threshold] of [
  [5, 3],
  [1, 1],
] as const) {
  sealConformance(`Shamir ${threshold} of ${count}`, {
    tamperedCode: "SEAL_RECORD_INVALID",
    create: () =>
      underTest(
        { shamir: { count, threshold } },
        (record) => new ShamirSeal(record, shamirProtectorOf(record) ?? fail("no Shamir protector")),
        // Shares from the end of the list: any threshold of them will do.
        async (seal, shares) => {
          for (const share of shares.slice(count - threshold)) await seal.unseal({ share });
        },
      ),
  });
}

let keys = 0;
for (const mechanism of ["aes-gcm", "aes-key-wrap-pad"] as const satisfies readonly Pkcs11Mechanism[]) {
  sealConformance(`PKCS#11 ${mechanism} (SoftHSM2)`, {
    tamperedCode: "HSM_UNWRAP_FAILED",
    create() {
      const client = new Pkcs11Client({
        libraryPath: hsm.libraryPath,
        tokenLabel: token.label,
        pinFile: token.pinFile,
        keyLabel: `conformance-${mechanism}-${++keys}`,
        mechanism,
      });
      return underTest(
        { pkcs11: { client, generateKey: true } },
        (record) => new Pkcs11Seal(record, pkcs11ProtectorOf(record) ?? fail("no PKCS#11 protector"), client),
        async (seal) => {
          await seal.unseal();
        },
      );
    },
  });
}

function fail(why: string): never {
  throw new Error(why);
}
