// The PKCS#11 seal's configuration, validated in one place. The PIN is named, never given: it is
// read from a file or an environment variable at the moment of login, so it is never on a command
// line (visible in `ps`), in a config file that gets copied around, or in a log.

import { readFileSync } from "node:fs";
import { SealError } from "../errors.js";

/** How the root key is encrypted under the HSM key. */
export type Pkcs11Mechanism = "aes-gcm" | "aes-key-wrap-pad";
export const pkcs11Mechanisms: readonly Pkcs11Mechanism[] = ["aes-gcm", "aes-key-wrap-pad"];

export interface Pkcs11Config {
  /** Path of the vendor's PKCS#11 module (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so). */
  readonly libraryPath: string;
  /** The token, by label (preferred: slot ids can change when tokens are added) ... */
  readonly tokenLabel?: string;
  /** ... or by slot id. Exactly one of the two. */
  readonly slot?: number;
  /** A file whose content (a trailing newline dropped) is the user PIN. */
  readonly pinFile?: string;
  /** The name of an environment variable holding the user PIN. Exactly one of pinFile, pinEnv. */
  readonly pinEnv?: string;
  /** Label of the AES-256 key that wraps the root key. */
  readonly keyLabel: string;
  readonly mechanism: Pkcs11Mechanism;
  /**
   * How long one call on the token may take before it is abandoned as HSM_UNAVAILABLE (the calls
   * run in a helper process, which is then killed): default 10 s.
   */
  readonly callTimeoutMs?: number;
}

const labelBytesMax = 32;
const callTimeoutMsMin = 100;
const callTimeoutMsMax = 600_000;

export function validatePkcs11Config(value: unknown): Pkcs11Config {
  const fail = (why: string): never => {
    throw new SealError("INVALID_ARGUMENT", `pkcs11 seal config: ${why}`);
  };
  if (typeof value !== "object" || value === null) return fail("must be an object");
  const config = value as Record<string, unknown>;
  const known = [
    "libraryPath",
    "tokenLabel",
    "slot",
    "pinFile",
    "pinEnv",
    "keyLabel",
    "mechanism",
    "callTimeoutMs",
  ];
  for (const key of Object.keys(config)) {
    if (!known.includes(key))
      fail(`unknown field "${key}" (the PIN goes in pinFile or pinEnv, never in the config)`);
  }
  const { libraryPath, tokenLabel, slot, pinFile, pinEnv, keyLabel, mechanism, callTimeoutMs } = config;
  if (typeof libraryPath !== "string" || libraryPath === "")
    fail("libraryPath must be the path of the PKCS#11 module");
  if ((tokenLabel === undefined) === (slot === undefined)) fail("give exactly one of tokenLabel and slot");
  if (tokenLabel !== undefined && !isLabel(tokenLabel))
    fail(`tokenLabel must be 1 to ${labelBytesMax} bytes`);
  if (slot !== undefined && (!Number.isSafeInteger(slot) || (slot as number) < 0))
    fail("slot must be a non-negative integer");
  if ((pinFile === undefined) === (pinEnv === undefined)) fail("give exactly one of pinFile and pinEnv");
  if (pinFile !== undefined && (typeof pinFile !== "string" || pinFile === ""))
    fail("pinFile must be a path");
  if (pinEnv !== undefined && (typeof pinEnv !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(pinEnv))) {
    fail("pinEnv must be an environment variable name");
  }
  if (!isLabel(keyLabel)) fail(`keyLabel must be 1 to ${labelBytesMax} bytes`);
  if (!pkcs11Mechanisms.includes(mechanism as Pkcs11Mechanism)) {
    fail(`mechanism must be one of ${pkcs11Mechanisms.join(", ")}, got ${JSON.stringify(mechanism)}`);
  }
  if (
    callTimeoutMs !== undefined &&
    (!Number.isSafeInteger(callTimeoutMs) ||
      (callTimeoutMs as number) < callTimeoutMsMin ||
      (callTimeoutMs as number) > callTimeoutMsMax)
  ) {
    fail(
      `callTimeoutMs must be an integer from ${callTimeoutMsMin} to ${callTimeoutMsMax}, got ${JSON.stringify(callTimeoutMs)}`,
    );
  }
  return {
    libraryPath: libraryPath as string,
    ...(tokenLabel !== undefined ? { tokenLabel: tokenLabel as string } : { slot: slot as number }),
    ...(pinFile !== undefined ? { pinFile: pinFile as string } : { pinEnv: pinEnv as string }),
    keyLabel: keyLabel as string,
    mechanism: mechanism as Pkcs11Mechanism,
    ...(callTimeoutMs !== undefined ? { callTimeoutMs: callTimeoutMs as number } : {}),
  };
}

/** Reads the PIN where the config says it is. Errors name the place, never the content. */
export function readPin(config: Pkcs11Config): string {
  let pin: string | undefined;
  if (config.pinFile !== undefined) {
    try {
      pin = readFileSync(config.pinFile, "utf8").replace(/\r?\n$/, "");
    } catch (error) {
      throw new SealError("HSM_PIN_INCORRECT", `cannot read the HSM PIN file ${config.pinFile}`, {
        cause: error,
      });
    }
  } else {
    pin = process.env[config.pinEnv ?? ""];
    if (pin === undefined) {
      throw new SealError(
        "HSM_PIN_INCORRECT",
        `the environment variable ${config.pinEnv} (the HSM PIN) is not set`,
      );
    }
  }
  if (pin === "") throw new SealError("HSM_PIN_INCORRECT", "the HSM PIN is empty");
  return pin;
}

/** Names the token for messages: its label, or its slot. */
export function describeToken(config: Pkcs11Config): string {
  return config.tokenLabel !== undefined ? `token "${config.tokenLabel}"` : `slot ${config.slot}`;
}

function isLabel(value: unknown): boolean {
  return typeof value === "string" && value !== "" && Buffer.byteLength(value) <= labelBytesMax;
}
