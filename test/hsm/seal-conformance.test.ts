// Every seal against the shared Seal contract: Shamir (5 of 3, and a single share), and the
// PKCS#11 seal on a real SoftHSM2 token with AES-GCM and with AES key wrap (RFC 5649).

import { afterAll } from "vitest";
import { Pkcs11Client } from "../../hsm/pkcs11/pkcs11-client.js";
import type { Pkcs11Mechanism } from "../../hsm/pkcs11/pkcs11-config.js";
import { Pkcs11Seal } from "../../hsm/pkcs11/pkcs11-seal.js";
import { initializeSeal } from "../../hsm/seal-operations.js";
import { pkcs11ProtectorOf, type SealRecord, shamirProtectorOf } from "../../hsm/seal-record.js";
import { ShamirSeal } from "../../hsm/shares/shamir-seal.js";
import { sealConformance } from "../conformance/seal-conformance.js";
import { SoftHsm } from "./softhsm-fixture.js";

const hsm = new SoftHsm();
const token = hsm.initToken("conformance");
afterAll(() => hsm.cleanup());

for (const [count, threshold] of [
  [5, 3],
  [1, 1],
] as const) {
  sealConformance(`Shamir ${threshold} of ${count}`, {
    tamperedCode: "SEAL_RECORD_INVALID",
    async create() {
      const { record, rootKey, unsealShares } = await initializeSeal({ shamir: { count, threshold } });
      const shares = unsealShares?.shares ?? [];
      const fromRecord = (changed: SealRecord) => {
        const protector = shamirProtectorOf(changed);
        if (protector === undefined) throw new Error("no Shamir protector");
        return new ShamirSeal(changed, protector);
      };
      return {
        record,
        rootKey,
        seal: fromRecord(record),
        sealFromRecord: fromRecord,
        // Shares from the end of the list: any threshold of them will do.
        async unsealFully(seal) {
          for (const share of shares.slice(count - threshold)) await seal.unseal({ share });
        },
      };
    },
  });
}

let keys = 0;
for (const mechanism of ["aes-gcm", "aes-key-wrap-pad"] as const satisfies readonly Pkcs11Mechanism[]) {
  sealConformance(`PKCS#11 ${mechanism} (SoftHSM2)`, {
    tamperedCode: "HSM_UNWRAP_FAILED",
    async create() {
      const client = new Pkcs11Client({
        libraryPath: hsm.libraryPath,
        tokenLabel: token.label,
        pinFile: token.pinFile,
        keyLabel: `conformance-${mechanism}-${++keys}`,
        mechanism,
      });
      const { record, rootKey } = await initializeSeal({ pkcs11: { client, generateKey: true } });
      const fromRecord = (changed: SealRecord) => {
        const protector = pkcs11ProtectorOf(changed);
        if (protector === undefined) throw new Error("no PKCS#11 protector");
        return new Pkcs11Seal(changed, protector, client);
      };
      return {
        record,
        rootKey,
        seal: fromRecord(record),
        sealFromRecord: fromRecord,
        async unsealFully(seal) {
          await seal.unseal();
        },
      };
    },
  });
}
