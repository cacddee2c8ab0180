// The dev cluster's HSM: when SoftHSM2 is installed (Debian's softhsm2), `strongroom dev` seals its
// cluster with a SoftHSM token of its own under the dev directory, so the nodes unseal themselves
// at every start, as with a real HSM. The token's PIN is kept next to it: for development only.

import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { findSoftHsmLibrary } from "../hsm/pkcs11/softhsm-library.js";

const tokenLabel = "strongroom-dev";

/** The seal.pkcs11 section for the dev nodes, or null when SoftHSM2 is not installed. */
export function prepareDevHsm(directory: string): Record<string, unknown> | null {
  const libraryPath = findSoftHsmLibrary();
  if (libraryPath === null || !hasSoftHsmUtil()) return null;
  const root = join(directory, "softhsm");
  const tokens = join(root, "tokens");
  const configPath = join(root, "softhsm2.conf");
  const pinFile = join(root, "user.pin");
  mkdirSync(tokens, { recursive: true });
  writeFileSync(
    configPath,
    `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`,
  );
  // SoftHSM reads its config when the library initializes: before any node loads it.
  process.env.SOFTHSM2_CONF = configPath;
  if (readdirSync(tokens).length === 0) {
    const pin = "dev-user-pin";
    execFileSync(
      "softhsm2-util",
      ["--init-token", "--free", "--label", tokenLabel, "--pin", pin, "--so-pin", "dev-security-officer-pin"],
      { env: { ...process.env, SOFTHSM2_CONF: configPath }, stdio: "pipe" },
    );
    writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 });
  }
  return { libraryPath, tokenLabel, pinFile, keyLabel: "strongroom-dev-root", mechanism: "aes-gcm" };
}

function hasSoftHsmUtil(): boolean {
  try {
    execFileSync("softhsm2-util", ["--version"], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}
