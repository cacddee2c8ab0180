// What operators do to a seal, end to end with real SoftHSM2 where an HSM is involved: init in each
// mode, rekey, seal HA with the HSM gone, migration Shamir -> HSM -> Shamir, and shares encrypted
// to operators' keys. Throughout, the keyring wrapped at init must still open: no operation may
// change the root key or require a secret to be rewritten.

import { generateKeyPairSync } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { SealError } from "../../hsm/errors.js";
import { Pkcs11Client } from "../../hsm/pkcs11/pkcs11-client.js";
import type { Pkcs11Config } from "../../hsm/pkcs11/pkcs11-config.js";
import {
  checkAuthorization,
  initializeSeal,
  migrateSeal,
  rekeyShares,
  rewrapWithHsmKey,
  type SealInitResult,
} from "../../hsm/seal-operations.js";
import {
  authorizingShareSet,
  decodeSealRecord,
  encodeSealRecord,
  type SealRecord,
} from "../../hsm/seal-record.js";
import { SealSet } from "../../hsm/seal-set.js";
import { ShareCollector } from "../../hsm/shares/share-collector.js";
import { decryptShare } from "../../hsm/shares/share-encryption.js";
import { Keyring, unwrapKeyring, wrapKeyring } from "../../storage/barrier/index.js";
import { defaultStateLimits } from "../../storage/state/index.js";
import { SoftHsm } from "./softhsm-fixture.js";

const hsm = new SoftHsm();
const token = hsm.initToken("operations");
afterAll(() => hsm.cleanup());

let keys = 0;
function hsmConfig(): Pkcs11Config {
  return {
    libraryPath: hsm.libraryPath,
    tokenLabel: token.label,
    pinFile: token.pinFile,
    keyLabel: `operations-${++keys}`,
    mechanism: "aes-gcm",
  };
}

/** What a threshold of shares rebuilds, entered one at a time as operators would. */
async function authorize(record: SealRecord, shares: readonly string[]): Promise<Uint8Array> {
  const collector = new ShareCollector();
  const set = authorizingShareSet(record);
  for (const share of shares) {
    const submission = await collector.submit(set, share);
    if (submission.complete) return submission.secret;
  }
  throw new Error(`${shares.length} shares did not reach the threshold ${set.threshold}`);
}

async function unsealWithShares(
  record: SealRecord,
  shares: readonly string[],
  client?: Pkcs11Client,
): Promise<SealSet> {
  const seals = new SealSet(record, client === undefined ? {} : { pkcs11Client: client });
  for (const share of shares) await seals.unsealWithShare(share);
  return seals;
}

/** A keyring wrapped by the root key at init, as the cluster stores it. */
function wrappedKeyringOf(init: SealInitResult): Uint8Array {
  const keyring = Keyring.create(0);
  const wrapped = wrapKeyring(keyring, init.rootKey);
  keyring.zero();
  return wrapped;
}

function expectOpens(wrappedKeyring: Uint8Array, seals: SealSet): void {
  const keyring = unwrapKeyring(wrappedKeyring, seals.rootKey());
  expect(keyring.activeKey().term).toBe(1);
  keyring.zero();
}

describe("init", () => {
  it("Shamir: N shares of threshold T, no recovery shares", async () => {
    const init = await initializeSeal({ shamir: { count: 5, threshold: 3 } });
    expect(init.record.protectors.map((protector) => protector.type)).toEqual(["shamir"]);
    expect(init.record.recovery).toBeNull();
    expect(init.unsealShares).toMatchObject({ threshold: 3, encrypted: false });
    expect(init.unsealShares?.shares).toHaveLength(5);
    expect(init.recoveryShares).toBeNull();
    expect(decodeSealRecord(encodeSealRecord(init.record))).toEqual(init.record);
  });

  it("the largest share set (255 of 255) unseals, and its record fits in one replicated value", async () => {
    const init = await initializeSeal({ shamir: { count: 255, threshold: 255 } });
    const encoded = encodeSealRecord(init.record);
    expect(encoded.length).toBeLessThan(defaultStateLimits.valueBytesMax);
    const shares = [...(init.unsealShares?.shares ?? [])].reverse();
    const seals = await unsealWithShares(init.record, shares);
    expect(Buffer.from(seals.rootKey()).equals(Buffer.from(init.rootKey))).toBe(true);
  });

  it("refuses what cannot work", async () => {
    await expect(initializeSeal({})).rejects.toThrow(
      "init needs a seal: Shamir shares, a PKCS#11 HSM, or both",
    );
    await expect(initializeSeal({ shamir: { count: 5, threshold: 6 } })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    await expect(
      initializeSeal({ shamir: { count: 3, threshold: 2 }, recovery: { count: 3, threshold: 2 } }),
    ).rejects.toThrow(/no separate recovery shares/);
    await expect(
      initializeSeal({ shamir: { count: 3, threshold: 2, operatorKeys: ["not a key"] } }),
    ).rejects.toThrow("1 operator keys given for 3 shares: give one per share");
  });

  it("hands each share out encrypted to its operator's RSA or X25519 key", async () => {
    const operators = [
      generateKeyPairSync("rsa", { modulusLength: 2048 }),
      generateKeyPairSync("x25519"),
      generateKeyPairSync("x25519"),
    ];
    const publicPem = operators.map(({ publicKey }) =>
      publicKey.export({ format: "pem", type: "spki" }).toString(),
    );
    const init = await initializeSeal({ shamir: { count: 3, threshold: 2, operatorKeys: publicPem } });
    const handedOut = init.unsealShares?.shares ?? [];
    expect(init.unsealShares?.encrypted).toBe(true);
    for (const share of handedOut) expect(share).toMatch(/^strongroom-encrypted-share:v1:/);
    const plain = handedOut.map((share, i) =>
      decryptShare(share, operators[i]?.privateKey.export({ format: "pem", type: "pkcs8" }).toString() ?? ""),
    );
    const seals = await unsealWithShares(init.record, [plain[0] ?? "", plain[2] ?? ""]);
    expect(Buffer.from(seals.rootKey()).equals(Buffer.from(init.rootKey))).toBe(true);

    const otherPrivate = generateKeyPairSync("x25519")
      .privateKey.export({ format: "pem", type: "pkcs8" })
      .toString();
    expect(() => decryptShare(handedOut[1] ?? "", otherPrivate)).toThrow(
      "this private key does not open the encrypted share",
    );
    const weak = generateKeyPairSync("rsa", { modulusLength: 1024 })
      .publicKey.export({ format: "pem", type: "spki" })
      .toString();
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" })
      .publicKey.export({ format: "pem", type: "spki" })
      .toString();
    await expect(
      initializeSeal({ shamir: { count: 1, threshold: 1, operatorKeys: [weak] } }),
    ).rejects.toThrow("an operator RSA key has 1024 bits; at least 2048 are needed");
    await expect(initializeSeal({ shamir: { count: 1, threshold: 1, operatorKeys: [ec] } })).rejects.toThrow(
      "an operator key is ec; RSA or X25519 keys are accepted",
    );
  });
});

describe("rekey", () => {
  it("new unseal shares for the same root key; the old shares stop working", async () => {
    const init = await initializeSeal({ shamir: { count: 5, threshold: 3 } });
    const wrappedKeyring = wrappedKeyringOf(init);
    const old = init.unsealShares?.shares ?? [];
    const authorization = await authorize(init.record, old.slice(1, 4));
    const rekeyed = await rekeyShares(init.record, authorization, { count: 3, threshold: 2 });
    expect(rekeyed.shares.shares).toHaveLength(3);
    expect(rekeyed.record.rootKeyCheck).toBe(init.record.rootKeyCheck);

    const seals = await unsealWithShares(rekeyed.record, rekeyed.shares.shares.slice(0, 2));
    expectOpens(wrappedKeyring, seals);
    const stale = new SealSet(rekeyed.record);
    await expect(stale.unsealWithShare(old[0] ?? "")).rejects.toMatchObject({
      code: "SHARE_MISMATCH",
      message: expect.stringMatching(/a share from before a rekey/),
    });
  });

  it("needs the current shares' secret, not any secret", async () => {
    const init = await initializeSeal({ shamir: { count: 3, threshold: 2 } });
    await expect(
      rekeyShares(init.record, new Uint8Array(32), { count: 3, threshold: 2 }),
    ).rejects.toMatchObject({
      code: "SHARE_MISMATCH",
    });
    expect(() => checkAuthorization(init.record, new Uint8Array(32).fill(9))).toThrow(SealError);
  });

  it("new recovery shares for an HSM seal", async () => {
    const init = await initializeSeal({
      pkcs11: { client: new Pkcs11Client(hsmConfig()), generateKey: true },
    });
    const recovery = init.recoveryShares?.shares ?? [];
    const authorization = await authorize(init.record, recovery.slice(0, 3));
    const rekeyed = await rekeyShares(init.record, authorization, { count: 4, threshold: 2 });
    expect(rekeyed.record.recovery).toMatchObject({ count: 4, threshold: 2 });
    expect(rekeyed.record.protectors).toEqual(init.record.protectors);
    const again = await authorize(rekeyed.record, rekeyed.shares.shares.slice(2, 4));
    expect(() => checkAuthorization(rekeyed.record, again)).not.toThrow();
    await expect(authorize(rekeyed.record, recovery.slice(0, 1))).rejects.toMatchObject({
      code: "SHARE_MISMATCH",
    });
  });
});

describe("seal HA: an HSM and Shamir shares at once", () => {
  it("unseals with either; with the HSM key gone the shares still unseal", async () => {
    const config = hsmConfig();
    const init = await initializeSeal({
      pkcs11: { client: new Pkcs11Client(config), generateKey: true },
      shamir: { count: 3, threshold: 2 },
    });
    expect(init.record.protectors.map((protector) => protector.type)).toEqual(["pkcs11", "shamir"]);
    expect(init.recoveryShares).toBeNull();
    const wrappedKeyring = wrappedKeyringOf(init);

    const daily = new SealSet(init.record, { pkcs11Client: new Pkcs11Client(config) });
    expect(daily.canAutoUnseal()).toBe(true);
    await daily.unsealWithHsm();
    expect(daily.status()).toMatchObject({
      sealed: false,
      unsealedBy: "pkcs11",
      types: ["pkcs11", "shamir"],
    });
    expectOpens(wrappedKeyring, daily);
    daily.close();

    hsm.deleteKey(token, config.keyLabel);
    const disaster = new SealSet(init.record, { pkcs11Client: new Pkcs11Client(config) });
    await expect(disaster.unsealWithHsm()).rejects.toMatchObject({ code: "HSM_KEY_NOT_FOUND" });
    const shares = init.unsealShares?.shares ?? [];
    expect((await disaster.unsealWithShare(shares[2] ?? "")).shamir).toMatchObject({
      progress: 1,
      threshold: 2,
    });
    expect(await disaster.unsealWithShare(shares[0] ?? "")).toMatchObject({
      sealed: false,
      unsealedBy: "shamir",
    });
    expectOpens(wrappedKeyring, disaster);
  });

  it("a node without HSM configuration still unseals with the shares", async () => {
    const init = await initializeSeal({
      pkcs11: { client: new Pkcs11Client(hsmConfig()), generateKey: true },
      shamir: { count: 2, threshold: 2 },
    });
    const seals = new SealSet(init.record);
    expect(seals.canAutoUnseal()).toBe(false);
    await expect(seals.unsealWithHsm()).rejects.toThrow(/not configured for the cluster's HSM/);
    const unsealed = await unsealWithShares(init.record, init.unsealShares?.shares ?? []);
    expect(unsealed.status().sealed).toBe(false);
  });

  it("recovery shares of an HSM-only seal authorize but never unseal", async () => {
    const init = await initializeSeal({
      pkcs11: { client: new Pkcs11Client(hsmConfig()), generateKey: true },
    });
    const seals = new SealSet(init.record);
    await expect(seals.unsealWithShare(init.recoveryShares?.shares[0] ?? "")).rejects.toThrow(
      /recovery shares authorize operations, they do not unseal/,
    );
  });

  it("a threshold of recovery shares authorizes the HSM to unseal again; the shares alone give no key", async () => {
    const config = hsmConfig();
    const init = await initializeSeal({
      pkcs11: { client: new Pkcs11Client(config), generateKey: true },
      recovery: { count: 3, threshold: 2 },
    });
    const recovery = init.recoveryShares?.shares ?? [];
    const wrappedKeyring = wrappedKeyringOf(init);
    const seals = new SealSet(init.record, { pkcs11Client: new Pkcs11Client(config) });

    expect(await seals.authorizeHsmUnseal(recovery[2] ?? "")).toBe(false);
    const { recovery: halfway } = seals.status();
    expect(halfway).toMatchObject({ threshold: 2, shares: 3, progress: 1, nonce: expect.any(String) });
    // A share of another cluster is refused as it is entered; the share already given is kept.
    const other = await initializeSeal({
      pkcs11: { client: new Pkcs11Client(hsmConfig()), generateKey: true },
      recovery: { count: 3, threshold: 2 },
    });
    await expect(seals.authorizeHsmUnseal(other.recoveryShares?.shares[0] ?? "")).rejects.toMatchObject({
      code: "SHARE_MISMATCH",
    });
    await expect(seals.authorizeHsmUnseal(recovery[0] ?? "", "not-the-nonce")).rejects.toMatchObject({
      code: "NONCE_MISMATCH",
    });
    expect(await seals.authorizeHsmUnseal(recovery[0] ?? "", halfway?.nonce)).toBe(true);
    // Authorized, not unsealed: the root key comes from the HSM only.
    expect(seals.status()).toMatchObject({ sealed: true, recovery: { progress: 0, nonce: "" } });
    expect(() => seals.rootKey()).toThrow(/sealed/);
    await seals.unsealWithHsm();
    expectOpens(wrappedKeyring, seals);
    // An unsealed node takes no share.
    expect(await seals.authorizeHsmUnseal(recovery[1] ?? "")).toBe(false);
    expect(seals.status().recovery).toMatchObject({ progress: 0 });

    // A reset or a seal discards a half-entered attempt.
    seals.seal();
    await seals.authorizeHsmUnseal(recovery[1] ?? "");
    seals.resetShareAttempt();
    expect(seals.status().recovery).toMatchObject({ progress: 0, nonce: "" });
    await seals.authorizeHsmUnseal(recovery[1] ?? "");
    seals.seal();
    expect(seals.status().recovery).toMatchObject({ progress: 0, nonce: "" });
    seals.close();
  });

  it("recovery shares are refused where the HSM cannot unseal or unseal shares exist", async () => {
    const hsmOnly = await initializeSeal({
      pkcs11: { client: new Pkcs11Client(hsmConfig()), generateKey: true },
    });
    await expect(
      new SealSet(hsmOnly.record).authorizeHsmUnseal(hsmOnly.recoveryShares?.shares[0] ?? ""),
    ).rejects.toThrow(
      "this node is not configured for the cluster's HSM (no pkcs11 section in its config): no share can unseal it",
    );
    const highlyAvailable = await initializeSeal({
      pkcs11: { client: new Pkcs11Client(hsmConfig()), generateKey: true },
      shamir: { count: 2, threshold: 2 },
    });
    await expect(
      new SealSet(highlyAvailable.record).authorizeHsmUnseal(highlyAvailable.unsealShares?.shares[0] ?? ""),
    ).rejects.toThrow(
      "this cluster has unseal shares: give those (recovery shares exist only with an HSM alone)",
    );
  });
});

/** A new HSM-only seal (a key of its own on the token) and a seal set it unsealed. */
async function unsealedByHsm() {
  const config = hsmConfig();
  const init = await initializeSeal({ pkcs11: { client: new Pkcs11Client(config), generateKey: true } });
  const recovery = init.recoveryShares?.shares ?? [];
  const client = new Pkcs11Client(config);
  const seals = new SealSet(init.record, { pkcs11Client: client });
  await seals.unsealWithHsm();
  return { config, init, recovery, client, seals };
}

describe("seal migration", () => {
  it("Shamir -> HSM -> Shamir, with the shares operators hold changing role and no secret rewritten", async () => {
    const init = await initializeSeal({ shamir: { count: 5, threshold: 3 } });
    const wrappedKeyring = wrappedKeyringOf(init);
    const shares = init.unsealShares?.shares ?? [];
    const config = hsmConfig();

    // Shamir -> HSM: authorized by the unseal shares, which become the recovery shares.
    const unsealed = await unsealWithShares(init.record, shares.slice(0, 3));
    const toHsm = await migrateSeal(
      init.record,
      unsealed.rootKey(),
      await authorize(init.record, shares.slice(2, 5)),
      {
        shamir: false,
        pkcs11: { client: new Pkcs11Client(config), generateKey: true },
      },
    );
    expect(toHsm.protectors.map((protector) => protector.type)).toEqual(["pkcs11"]);
    expect(toHsm.recovery?.id).toBe(authorizingShareSet(init.record).id);
    const byHsm = new SealSet(toHsm, { pkcs11Client: new Pkcs11Client(config) });
    await byHsm.unsealWithHsm();
    expectOpens(wrappedKeyring, byHsm);
    await expect(new SealSet(toHsm).unsealWithShare(shares[0] ?? "")).rejects.toThrow(/do not unseal/);

    // HSM -> Shamir: authorized by the recovery shares (the original shares), which unseal again.
    const back = await migrateSeal(
      toHsm,
      byHsm.rootKey(),
      await authorize(toHsm, [shares[4] ?? "", shares[1] ?? "", shares[3] ?? ""]),
      {
        shamir: true,
      },
    );
    expect(back.protectors.map((protector) => protector.type)).toEqual(["shamir"]);
    expect(back.recovery).toBeNull();
    const byShares = await unsealWithShares(back, [shares[0] ?? "", shares[1] ?? "", shares[2] ?? ""]);
    expectOpens(wrappedKeyring, byShares);
    expect(back.rootKeyCheck).toBe(init.record.rootKeyCheck);
  });

  it("HSM -> HSM and shares (seal HA), and back to HSM only", async () => {
    const { init, recovery, client, seals } = await unsealedByHsm();
    const both = await migrateSeal(
      init.record,
      seals.rootKey(),
      await authorize(init.record, recovery.slice(0, 3)),
      {
        shamir: true,
        pkcs11: { client },
      },
    );
    expect(both.protectors.map((protector) => protector.type)).toEqual(["pkcs11", "shamir"]);
    expect(both.protectors[0]).toEqual(init.record.protectors[0]);
    expect((await unsealWithShares(both, recovery.slice(1, 4))).status().sealed).toBe(false);
    const hsmOnly = await migrateSeal(both, seals.rootKey(), await authorize(both, recovery.slice(0, 3)), {
      shamir: false,
      pkcs11: { client },
    });
    expect(hsmOnly).toEqual(init.record);
  });

  it("keeps the HSM protector after an HSM key rotation, though the node's config names the old key", async () => {
    const { config, init, recovery, client, seals } = await unsealedByHsm();
    const rotated = await rewrapWithHsmKey(init.record, seals.rootKey(), {
      client: new Pkcs11Client({ ...config, keyLabel: `${config.keyLabel}-2` }),
      generateKey: true,
    });
    // The old key is deleted once nothing needs it: a migration must not reach for it.
    expect(hsm.deleteKey(token, config.keyLabel)).toBe(1);
    const authorization = await authorize(rotated, recovery.slice(0, 3));
    const both = await migrateSeal(rotated, seals.rootKey(), authorization, {
      shamir: true,
      pkcs11: { client },
    });
    expect(both.protectors[0]).toEqual(rotated.protectors[0]);
    await expect(
      migrateSeal(rotated, seals.rootKey(), authorization, {
        shamir: true,
        pkcs11: { client, generateKey: true },
      }),
    ).rejects.toThrow(
      /the cluster's HSM protector \(key ".*-2"\) is kept by a migration, so no HSM key is generated/,
    );
  });

  it("refuses a migration without authorization, without a protector, or that changes nothing", async () => {
    const init = await initializeSeal({ shamir: { count: 3, threshold: 2 } });
    const shares = init.unsealShares?.shares ?? [];
    const authorization = await authorize(init.record, shares.slice(0, 2));
    const rootKey = (await unsealWithShares(init.record, shares.slice(1, 3))).rootKey();
    await expect(migrateSeal(init.record, rootKey, new Uint8Array(32), { shamir: false })).rejects.toThrow(
      /not made from the shares of set/,
    );
    await expect(migrateSeal(init.record, rootKey, authorization, { shamir: false })).rejects.toThrow(
      "a seal needs at least one protector: Shamir shares or an HSM",
    );
    await expect(migrateSeal(init.record, rootKey, authorization, { shamir: true })).rejects.toThrow(
      "nothing to migrate",
    );
    await expect(
      migrateSeal(init.record, new Uint8Array(32), authorization, { shamir: true }),
    ).rejects.toThrow(/not this cluster's root key/);
  });
});
