// The keyring at rest: encrypted by the root key (which only ever lives in memory, handed over by
// a seal) with the same AEAD as everything else, under its own associated data. The plaintext
// serialization is zeroed as soon as it is wrapped or read.
//
// Wrapped keyring: version (u8 = 1) | nonce (12) | ciphertext | tag (16)

import { keyBytes, openBytes, sealBytes } from "./aead.js";
import { BarrierError } from "./errors.js";
import { Keyring } from "./keyring.js";

const wrapVersion = 1;
const keyringAssociatedData = new TextEncoder().encode("strongroom keyring v1");

export function wrapKeyring(keyring: Keyring, rootKey: Uint8Array): Uint8Array {
  validateRootKey(rootKey);
  const plaintext = keyring.serialize();
  try {
    const sealed = sealBytes(rootKey, keyringAssociatedData, plaintext);
    const out = new Uint8Array(1 + sealed.length);
    out[0] = wrapVersion;
    out.set(sealed, 1);
    return out;
  } finally {
    plaintext.fill(0);
  }
}

export function unwrapKeyring(wrapped: Uint8Array, rootKey: Uint8Array): Keyring {
  validateRootKey(rootKey);
  if (!(wrapped instanceof Uint8Array) || wrapped.length < 2 || wrapped[0] !== wrapVersion) {
    throw new BarrierError(
      "CIPHERTEXT_FORMAT",
      "the stored keyring is not a wrapped keyring (unknown version or empty)",
    );
  }
  const plaintext = openBytes(rootKey, keyringAssociatedData, wrapped.subarray(1));
  if (plaintext === null) {
    throw new BarrierError(
      "INTEGRITY",
      "the root key does not open the stored keyring (wrong key, or the keyring was altered)",
    );
  }
  try {
    return Keyring.deserialize(plaintext);
  } finally {
    plaintext.fill(0);
  }
}

function validateRootKey(rootKey: Uint8Array): void {
  if (!(rootKey instanceof Uint8Array) || rootKey.length !== keyBytes) {
    throw new BarrierError("INVALID_ARGUMENT", `the root key must be ${keyBytes} bytes`);
  }
}
