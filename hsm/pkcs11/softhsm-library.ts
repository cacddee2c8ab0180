// Where Debian (and a local build) put SoftHSM2's PKCS#11 module: the dev cluster seals with it
// when it is there, and the seal tests use it. One list, so both look in the same places.

import { existsSync } from "node:fs";

export const softHsmLibraryCandidates = [
  "/usr/lib/softhsm/libsofthsm2.so",
  "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
  "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
  "/usr/local/lib/softhsm/libsofthsm2.so",
] as const;

/** The installed SoftHSM2 module, or null. */
export function findSoftHsmLibrary(): string | null {
  return softHsmLibraryCandidates.find((path) => existsSync(path)) ?? null;
}
