// The dev cluster's HSM: when SoftHSM2 is installed (Debian's softhsm2), `strongroom dev` seals its
// cluster with a SoftHSM token of its own under the dev directory, so the nodes unseal themselves
// at every start, as with a real HSM. The token's PIN is kept next to it: for development only.

import { prepareSoftHsmToken } from "../hsm/pkcs11/softhsm-token.js";

/** The seal.pkcs11 section for the dev nodes, or null when SoftHSM2 is not installed. */
export function prepareDevHsm(directory: string): Record<string, unknown> | null {
  const token = prepareSoftHsmToken(directory, "strongroom-dev");
  if (token === null) return null;
  // SoftHSM reads its config when the library initializes: before any node loads it.
  process.env.SOFTHSM2_CONF = token.configPath;
  return { ...token.pkcs11 };
}
