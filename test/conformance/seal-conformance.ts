// The contract every Seal keeps, as a suite each seal runs against itself (Shamir shares, the
// PKCS#11 HSM with each mechanism): it starts sealed and says so; unsealing yields exactly the root
// key the record protects; seal() zeroes it and it can be unsealed again; a seal built from an
// altered record stays sealed with a clear error instead of handing out a wrong key.

import { describe, expect, it } from "vitest";
import { SealError } from "../../hsm/errors.js";
import type { Seal } from "../../hsm/seal.js";
import type { SealRecord } from "../../hsm/seal-record.js";

export interface SealUnderTest {
  readonly seal: Seal;
  readonly rootKey: Uint8Array;
  /** Brings the seal to unsealed the way its users do (shares one by one, or the HSM). */
  unsealFully(seal: Seal): Promise<void>;
  /** A seal of the same kind over an altered copy of the record. */
  sealFromRecord(record: SealRecord): Seal;
  readonly record: SealRecord;
}

export interface SealFactory {
  create(): Promise<SealUnderTest>;
  /** The error code an altered wrapped root key gives. */
  readonly tamperedCode: string;
}

export function sealConformance(name: string, factory: SealFactory): void {
  describe(`Seal conformance: ${name}`, () => {
    it("starts sealed, refuses to give a key, and reports its type", async () => {
      const { seal } = await factory.create();
      expect(seal.status()).toMatchObject({ type: seal.type, sealed: true, progress: 0 });
      expect(() => seal.rootKey()).toThrow(SealError);
      expect(() => seal.rootKey()).toThrow(/sealed: unseal it first/);
      seal.close();
    });

    it("unseals to exactly the protected root key", async () => {
      const { seal, rootKey, unsealFully } = await factory.create();
      await unsealFully(seal);
      expect(seal.status().sealed).toBe(false);
      expect(Buffer.from(seal.rootKey()).equals(Buffer.from(rootKey))).toBe(true);
      seal.close();
    });

    it("zeroes the key on seal() and unseals again afterwards", async () => {
      const { seal, rootKey, unsealFully } = await factory.create();
      await unsealFully(seal);
      const held = seal.rootKey();
      seal.seal();
      expect(held.every((byte) => byte === 0)).toBe(true);
      expect(seal.status().sealed).toBe(true);
      expect(() => seal.rootKey()).toThrow(/sealed/);
      await unsealFully(seal);
      expect(Buffer.from(seal.rootKey()).equals(Buffer.from(rootKey))).toBe(true);
      seal.close();
    });

    it("unsealing an unsealed seal changes nothing", async () => {
      const { seal, rootKey, unsealFully } = await factory.create();
      await unsealFully(seal);
      expect((await seal.unseal()).sealed).toBe(false);
      expect(Buffer.from(seal.rootKey()).equals(Buffer.from(rootKey))).toBe(true);
      seal.close();
    });

    it("stays sealed when the wrapped root key was altered", async () => {
      const { record, sealFromRecord, unsealFully } = await factory.create();
      const protectors = record.protectors.map((protector) => {
        const wrapped = Buffer.from(protector.wrappedRootKey, "base64");
        wrapped[wrapped.length - 3] = (wrapped[wrapped.length - 3] ?? 0) ^ 0x40;
        return { ...protector, wrappedRootKey: wrapped.toString("base64") };
      });
      const seal = sealFromRecord({ ...record, protectors });
      await expect(unsealFully(seal)).rejects.toMatchObject({ code: factory.tamperedCode });
      expect(seal.status().sealed).toBe(true);
      seal.close();
    });

    it("refuses a key that is not the record's root key", async () => {
      const { record, sealFromRecord, unsealFully } = await factory.create();
      const seal = sealFromRecord({ ...record, rootKeyCheck: Buffer.alloc(32, 1).toString("base64") });
      await expect(unsealFully(seal)).rejects.toMatchObject({
        code: "ROOT_KEY_MISMATCH",
        message: expect.stringMatching(/is not this cluster's root key/),
      });
      expect(seal.status().sealed).toBe(true);
      seal.close();
    });
  });
}
