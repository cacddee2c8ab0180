// The one AEAD primitive of the barrier: AES-256-GCM from node:crypto with a fresh 96-bit random
// nonce per encryption and a 128-bit tag. Everything that encrypts at rest goes through here.

import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

export const keyBytes = 32;
export const nonceBytes = 12;
export const tagBytes = 16;

// Nonces come from the CSPRNG in blocks: one randomBytes call per 256 encryptions instead of one
// each (a system call's worth of the cost of encrypting a small value). Each nonce is used once.
const noncesPerBlock = 256;
let nonceBlock = new Uint8Array(0);
let nonceOffset = 0;

function nextNonce(): Uint8Array {
  if (nonceOffset + nonceBytes > nonceBlock.length) {
    nonceBlock = new Uint8Array(randomBytes(nonceBytes * noncesPerBlock));
    nonceOffset = 0;
  }
  const nonce = nonceBlock.subarray(nonceOffset, nonceOffset + nonceBytes);
  nonceOffset += nonceBytes;
  return nonce;
}

const noPrefix = new Uint8Array(0);

/**
 * Returns prefix | nonce | ciphertext | tag. The prefix (the barrier's header) is copied in here so
 * that a caller's result is one allocation, not a second copy of this one.
 */
export function sealBytes(
  key: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
  prefix: Uint8Array = noPrefix,
): Uint8Array {
  const nonce = nextNonce();
  const cipher = createCipheriv("aes-256-gcm", key, nonce, { authTagLength: tagBytes });
  cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  const final = cipher.final();
  const tag = cipher.getAuthTag();
  const out = new Uint8Array(prefix.length + nonceBytes + body.length + final.length + tagBytes);
  out.set(prefix, 0);
  let at = prefix.length;
  out.set(nonce, at);
  at += nonceBytes;
  out.set(body, at);
  at += body.length;
  out.set(final, at);
  out.set(tag, at + final.length);
  return out;
}

/** Opens nonce | ciphertext | tag; returns null when the tag does not verify (wrong key, AAD or bytes). */
export function openBytes(key: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array | null {
  if (sealed.length < nonceBytes + tagBytes) return null;
  const nonce = sealed.subarray(0, nonceBytes);
  const tag = sealed.subarray(sealed.length - tagBytes);
  const body = sealed.subarray(nonceBytes, sealed.length - tagBytes);
  const decipher = createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: tagBytes });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const plaintext = decipher.update(body);
  try {
    const final = decipher.final();
    // A plain Uint8Array view (no copy): callers compare and store bytes, not Buffers.
    if (final.length === 0)
      return new Uint8Array(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength);
    const out = new Uint8Array(plaintext.length + final.length);
    out.set(plaintext, 0);
    out.set(final, plaintext.length);
    plaintext.fill(0);
    return out;
  } catch {
    // Authentication failed: the plaintext computed so far must not escape.
    plaintext.fill(0);
    return null;
  }
}
