// The PKCS#11 seal against a real SoftHSM2 and the faults operators meet: a wrong or missing PIN,
// a missing library or token, a token removed while the node runs and put back, a deleted key, an
// altered blob, and HSM key rotation. Each must name its cause; an unreachable HSM must leave the
// node sealed, retrying with backoff, and unseal it by itself when the HSM returns.

import { writeFileSync } from "node:fs";
import { Registry } from "prom-client";
import { afterAll, describe, expect, it } from "vitest";
import { AutoUnsealer } from "../../hsm/auto-unsealer.js";
import { SealError } from "../../hsm/errors.js";
import { Pkcs11Client } from "../../hsm/pkcs11/pkcs11-client.js";
import { type Pkcs11Config, validatePkcs11Config } from "../../hsm/pkcs11/pkcs11-config.js";
import { initializedLibrary, pkcs11Binding } from "../../hsm/pkcs11/pkcs11-library.js";
import { registerSealMetrics } from "../../hsm/seal-metrics.js";
import { initializeSeal, rewrapWithHsmKey } from "../../hsm/seal-operations.js";
import { encodeSealRecord, type SealRecord } from "../../hsm/seal-record.js";
import { SealSet } from "../../hsm/seal-set.js";
import { eventually } from "../support/eventually.js";
import { SoftHsm, type SoftHsmToken } from "./softhsm-fixture.js";

const hsm = new SoftHsm();
const token = hsm.initToken("strongroom-test");
afterAll(() => hsm.cleanup());

let keys = 0;
function configFor(tokenUnderTest: SoftHsmToken, overrides: Partial<Pkcs11Config> = {}): Pkcs11Config {
  return {
    libraryPath: hsm.libraryPath,
    tokenLabel: tokenUnderTest.label,
    pinFile: tokenUnderTest.pinFile,
    keyLabel: `root-wrap-${++keys}`,
    mechanism: "aes-gcm",
    ...overrides,
  };
}

async function initWithHsm(config: Pkcs11Config): Promise<{ record: SealRecord; rootKey: Uint8Array }> {
  const client = new Pkcs11Client(config);
  try {
    const { record, rootKey } = await initializeSeal({ pkcs11: { client, generateKey: true } });
    return { record, rootKey };
  } finally {
    client.close();
  }
}

async function unsealError(record: SealRecord, config: Pkcs11Config): Promise<SealError> {
  const seals = new SealSet(record, { pkcs11Client: new Pkcs11Client(config) });
  try {
    await seals.unsealWithHsm();
  } catch (error) {
    expect(seals.status().sealed).toBe(true);
    expect(error).toBeInstanceOf(SealError);
    return error as SealError;
  } finally {
    seals.close();
  }
  throw new Error("the unseal succeeded");
}

describe("init", () => {
  it("generates a sensitive, non-extractable AES-256 key and stores only the wrapped root key", async () => {
    const config = configFor(token);
    const { record, rootKey } = await initWithHsm(config);
    expect(record.protectors).toEqual([
      { type: "pkcs11", keyLabel: config.keyLabel, mechanism: "aes-gcm", wrappedRootKey: expect.any(String) },
    ]);
    expect(record.recovery).toMatchObject({ count: 5, threshold: 3 });
    const stored = Buffer.from(encodeSealRecord(record));
    expect(stored.includes(Buffer.from(rootKey))).toBe(false);
    expect(stored.includes(Buffer.from(Buffer.from(rootKey).toString("base64")))).toBe(false);

    const pkcs11 = pkcs11Binding();
    const flags = hsm.keyFlags(token, config.keyLabel, [
      pkcs11.CKA_SENSITIVE,
      pkcs11.CKA_EXTRACTABLE,
      pkcs11.CKA_TOKEN,
    ]);
    expect(flags).toEqual([1, 0, 1]);
  });

  it("uses an existing key by label, and refuses to generate over it or to use a missing one", async () => {
    const config = configFor(token);
    const client = new Pkcs11Client(config);
    await client.ensureKey(config.keyLabel, { generate: true });
    const { record } = await initializeSeal({ pkcs11: { client } });
    expect(record.protectors[0]).toMatchObject({ type: "pkcs11", keyLabel: config.keyLabel });
    await expect(initializeSeal({ pkcs11: { client, generateKey: true } })).rejects.toMatchObject({
      code: "HSM_KEY_AMBIGUOUS",
      message: expect.stringMatching(
        `a key labelled "${config.keyLabel}" already exists on token "strongroom-test"`,
      ),
    });
    const missing = new Pkcs11Client({ ...config, keyLabel: "nobody-made-this" });
    await expect(initializeSeal({ pkcs11: { client: missing } })).rejects.toMatchObject({
      code: "HSM_KEY_NOT_FOUND",
      message: 'no key labelled "nobody-made-this" on token "strongroom-test"',
    });
    client.close();
    missing.close();
  });

  it("finds the token by slot id as well as by label", async () => {
    const { module } = initializedLibrary(hsm.libraryPath);
    const slot = module
      .C_GetSlotList(true)
      .find((s) => module.C_GetTokenInfo(s).label.trim() === token.label);
    if (slot === undefined) throw new Error("token missing");
    const slotId = Number(slot.readBigUInt64LE(0));
    const { tokenLabel: _label, ...byLabel } = configFor(token);
    const bySlot: Pkcs11Config = { ...byLabel, slot: slotId };
    const { record, rootKey } = await initWithHsm(bySlot);
    const seals = new SealSet(record, { pkcs11Client: new Pkcs11Client(bySlot) });
    await seals.unsealWithHsm();
    expect(Buffer.from(seals.rootKey()).equals(Buffer.from(rootKey))).toBe(true);
    seals.close();
  });
});

describe("configuration", () => {
  it.each([
    [{ pin: "1234" }, /unknown field "pin" \(the PIN goes in pinFile or pinEnv, never in the config\)/],
    [{ slot: 1 }, /give exactly one of tokenLabel and slot/],
    [{ pinEnv: "HSM_PIN" }, /give exactly one of pinFile and pinEnv/],
    [{ mechanism: "des" }, /mechanism must be one of aes-gcm, aes-key-wrap-pad, got "des"/],
    [{ keyLabel: "" }, /keyLabel must be 1 to 32 bytes/],
    [{ libraryPath: 7 }, /libraryPath must be the path of the PKCS#11 module/],
    [{ callTimeoutMs: 50 }, /callTimeoutMs must be an integer from 100 to 600000, got 50/],
    [{ callTimeoutMs: "10s" }, /callTimeoutMs must be an integer from 100 to 600000, got "10s"/],
  ])("refuses %j", (change, message) => {
    expect(() => validatePkcs11Config({ ...configFor(token), ...change })).toThrow(message);
  });

  it("accepts a complete config", () => {
    const config = configFor(token);
    expect(validatePkcs11Config(config)).toEqual(config);
    expect(validatePkcs11Config({ ...config, callTimeoutMs: 2500 })).toEqual({
      ...config,
      callTimeoutMs: 2500,
    });
  });
});

describe("unseal faults", () => {
  it("a wrong PIN is named, never retried by the auto-unsealer, and unseals once fixed", async () => {
    const config = configFor(token);
    const { record } = await initWithHsm(config);
    writeFileSync(token.pinFile, "0000-wrong\n");
    try {
      const error = await unsealError(record, config);
      expect(error.code).toBe("HSM_PIN_INCORRECT");
      expect(error.message).toMatch(/token "strongroom-test" .* refused the PIN \(CKR_PIN_INCORRECT\)/);
      expect(error.message).not.toContain("0000-wrong");

      const seals = new SealSet(record, { pkcs11Client: new Pkcs11Client(config) });
      const unsealer = new AutoUnsealer(() => seals.unsealWithHsm(), { initialDelayMs: 5, maxDelayMs: 20 });
      await unsealer.start();
      await new Promise((resolve) => setTimeout(resolve, 60));
      expect(unsealer.status()).toMatchObject({
        state: "needs-operator",
        attempts: 1,
        lastError: { code: "HSM_PIN_INCORRECT" },
      });
      writeFileSync(token.pinFile, `${token.pin}\n`);
      await unsealer.retryNow();
      expect(unsealer.status()).toMatchObject({ state: "unsealed", attempts: 2, lastError: null });
      expect(seals.status()).toMatchObject({ sealed: false, unsealedBy: "pkcs11" });
      seals.close();
    } finally {
      writeFileSync(token.pinFile, `${token.pin}\n`);
    }
  });

  it("reads the PIN from an environment variable, and names a missing one", async () => {
    const { pinFile: _file, ...base } = configFor(token);
    const config: Pkcs11Config = { ...base, pinEnv: "STRONGROOM_TEST_HSM_PIN" };
    process.env.STRONGROOM_TEST_HSM_PIN = token.pin;
    const { record } = await initWithHsm(config);
    delete process.env.STRONGROOM_TEST_HSM_PIN;
    const error = await unsealError(record, config);
    expect(error).toMatchObject({
      code: "HSM_PIN_INCORRECT",
      message: "the environment variable STRONGROOM_TEST_HSM_PIN (the HSM PIN) is not set",
    });
  });

  it("names a library that cannot be loaded and a token that is not present", async () => {
    const config = configFor(token);
    const { record } = await initWithHsm(config);
    const noLibrary = await unsealError(record, { ...config, libraryPath: "/nonexistent/libpkcs11.so" });
    expect(noLibrary).toMatchObject({
      code: "HSM_UNAVAILABLE",
      message: "cannot load the PKCS#11 library /nonexistent/libpkcs11.so",
    });
    const noToken = await unsealError(record, { ...config, tokenLabel: "elsewhere" });
    expect(noToken.code).toBe("HSM_UNAVAILABLE");
    expect(noToken.message).toMatch(/^token "elsewhere" is not present in .*libsofthsm2\.so/);
  });

  it("names a deleted key", async () => {
    const config = configFor(token);
    const { record } = await initWithHsm(config);
    expect(hsm.deleteKey(token, config.keyLabel)).toBe(1);
    const error = await unsealError(record, config);
    expect(error).toMatchObject({
      code: "HSM_KEY_NOT_FOUND",
      message: `no key labelled "${config.keyLabel}" on token "strongroom-test"`,
    });
  });

  it("names a blob the key cannot open (altered, or wrapped by another key of that label)", async () => {
    const config = configFor(token);
    const { record } = await initWithHsm(config);
    hsm.deleteKey(token, config.keyLabel);
    await new Pkcs11Client(config).ensureKey(config.keyLabel, { generate: true });
    const error = await unsealError(record, config);
    expect(error.code).toBe("HSM_UNWRAP_FAILED");
    expect(error.message).toMatch(
      `the HSM key "${config.keyLabel}" on token "strongroom-test" cannot decrypt the stored root key`,
    );
  });

  it("a token removed while the node runs: sealed and retrying, then unsealed by itself when it is back", async () => {
    const removable = hsm.initToken("removable");
    const config = configFor(removable);
    const { record, rootKey } = await initWithHsm(config);

    // An unsealed node does not need the HSM again: removing the token changes nothing for it.
    const running = new SealSet(record, { pkcs11Client: new Pkcs11Client(config) });
    await running.unsealWithHsm();
    hsm.removeToken(removable);
    expect(running.status().sealed).toBe(false);
    expect(Buffer.from(running.rootKey()).equals(Buffer.from(rootKey))).toBe(true);
    running.close();

    // A node (re)starting now stays sealed, says why, and keeps trying.
    const seals = new SealSet(record, { pkcs11Client: new Pkcs11Client(config) });
    const registry = new Registry();
    const failures: string[] = [];
    const unsealer = new AutoUnsealer(() => seals.unsealWithHsm(), {
      initialDelayMs: 10,
      maxDelayMs: 40,
      onFailure: (error) => failures.push(error.code),
    });
    registerSealMetrics(registry, { seals: () => seals, autoUnsealer: () => unsealer });
    await unsealer.start();
    await eventually(() => unsealer.status().failures >= 3, 5000);
    const waiting = unsealer.status();
    expect(waiting.state === "waiting" || waiting.state === "trying").toBe(true);
    expect(waiting.lastError?.code).toBe("HSM_UNAVAILABLE");
    expect(waiting.lastError?.message).toMatch(/token "removable" is not present/);
    expect(seals.status().sealed).toBe(true);
    const metrics = await registry.metrics();
    expect(metrics).toMatch(/^strongroom_seal_sealed 1$/m);
    expect(metrics).toMatch(/^strongroom_seal_hsm_reachable 0$/m);
    expect(metrics).toMatch(/^strongroom_seal_auto_unseal_failures\{code="HSM_UNAVAILABLE"\} [3-9]\d*$/m);

    hsm.restoreToken(removable);
    await eventually(() => unsealer.status().state === "unsealed", 5000);
    expect(seals.status()).toMatchObject({ sealed: false, unsealedBy: "pkcs11" });
    expect(Buffer.from(seals.rootKey()).equals(Buffer.from(rootKey))).toBe(true);
    expect(new Set(failures)).toEqual(new Set(["HSM_UNAVAILABLE"]));
    const after = await registry.metrics();
    expect(after).toMatch(/^strongroom_seal_sealed 0$/m);
    expect(after).toMatch(/^strongroom_seal_hsm_reachable 1$/m);
    unsealer.stop();
    seals.close();
  });
});

describe("HSM key rotation", () => {
  it("rewraps the root key under a new key; the old key can then be deleted", async () => {
    const oldConfig = configFor(token);
    const { record, rootKey } = await initWithHsm(oldConfig);
    const newConfig = {
      ...oldConfig,
      keyLabel: `${oldConfig.keyLabel}-next`,
      mechanism: "aes-key-wrap-pad" as const,
    };
    const newClient = new Pkcs11Client(newConfig);
    const rotated = await rewrapWithHsmKey(record, rootKey, { client: newClient, generateKey: true });
    expect(rotated.protectors).toEqual([
      {
        type: "pkcs11",
        keyLabel: newConfig.keyLabel,
        mechanism: "aes-key-wrap-pad",
        wrappedRootKey: expect.any(String),
      },
    ]);
    expect(rotated.rootKeyCheck).toBe(record.rootKeyCheck);
    expect(rotated.recovery).toEqual(record.recovery);
    hsm.deleteKey(token, oldConfig.keyLabel);

    const seals = new SealSet(rotated, { pkcs11Client: newClient });
    await seals.unsealWithHsm();
    expect(Buffer.from(seals.rootKey()).equals(Buffer.from(rootKey))).toBe(true);
    seals.close();
    await expect(rewrapWithHsmKey(rotated, rootKey, { client: newClient })).rejects.toThrow(
      /rotation needs a new key label/,
    );
    await expect(rewrapWithHsmKey(rotated, new Uint8Array(32), { client: newClient })).rejects.toThrow(
      /not this cluster's root key/,
    );
  });
});
