// A SoftHSM2 token of its own under a directory (softhsm2.conf, the token files and the user PIN
// next to them), for clusters that seal with SoftHSM in development and in the chaos harness: the
// nodes load the module with SOFTHSM2_CONF pointing at this configuration. The PIN is kept in a
// file beside the token: for development and tests only. Created once; reused at later starts.

import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { findSoftHsmLibrary } from "./softhsm-library.js";

export interface SoftHsmToken {
  /** The node config's seal.pkcs11 section. */
  readonly pkcs11: {
    readonly libraryPath: string;
    readonly tokenLabel: string;
    readonly pinFile: string;
    readonly keyLabel: string;
    readonly mechanism: "aes-gcm";
  };
  /** SOFTHSM2_CONF for every process that loads the module. */
  readonly configPath: string;
  /** Where the token's files are (moving it away is an HSM outage). */
  readonly tokenDirectory: string;
}

/** Prepares the token, or returns null when SoftHSM2 (module and softhsm2-util) is not installed. */
export function prepareSoftHsmToken(directory: string, label: string): SoftHsmToken | null {
  const libraryPath = findSoftHsmLibrary();
  if (libraryPath === null || !hasSoftHsmUtil()) return null;
  const root = join(directory, "softhsm");
  const tokenDirectory = join(root, "tokens");
  const configPath = join(root, "softhsm2.conf");
  const pinFile = join(root, "user.pin");
  mkdirSync(tokenDirectory, { recursive: true });
  writeFileSync(
    configPath,
    `directories.tokendir = ${tokenDirectory}\nobjectstore.backend = file\nlog.level = ERROR\n`,
  );
  if (readdirSync(tokenDirectory).length === 0) {
    const pin = `${label}-user-pin`;
    execFileSync(
      "softhsm2-util",
      ["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", `${label}-security-officer-pin`],
      { env: { ...process.env, SOFTHSM2_CONF: configPath }, stdio: "pipe" },
    );
    writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 });
  }
  return {
    pkcs11: { libraryPath, tokenLabel: label, pinFile, keyLabel: `${label}-root`, mechanism: "aes-gcm" },
    configPath,
    tokenDirectory,
  };
}

function hasSoftHsmUtil(): boolean {
  try {
    execFileSync("softhsm2-util", ["--version"], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}
