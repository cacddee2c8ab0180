// Shares encrypted to their operators at init: given one public key per share, each share is
// handed out encrypted so that no one - not even the terminal that ran init - sees every share in
// the clear. RSA keys use RSA-OAEP with SHA-256 (2048 bits or more); X25519 keys use an ephemeral
// X25519 agreement, HKDF-SHA256 and AES-256-GCM (an ECIES). Both come from node:crypto.
//
// Armored form: "strongroom-encrypted-share:v1:" + base64 of
//   RSA:    0x01 | OAEP ciphertext
//   X25519: 0x02 | ephemeral public key (32) | nonce (12) | ciphertext | tag (16)

import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  constants as cryptoConstants,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from "node:crypto";
import { SealError } from "../errors.js";

/** How an encrypted share begins (what the CLI recognizes and refuses to send as it is). */
export const armorPrefix = "strongroom-encrypted-share:v1:";
const rsaTag = 1;
const x25519Tag = 2;
const rsaModulusBitsMin = 2048;
const hkdfInfo = Buffer.from("strongroom encrypted share v1");

/** Encrypts one share to the operator who owns `publicKeyPem` (RSA or X25519, PEM or SPKI DER). */
export function encryptShare(share: string, publicKeyPem: string): string {
  const publicKey = parsePublicKey(publicKeyPem);
  const plaintext = Buffer.from(share, "utf8");
  try {
    if (publicKey.asymmetricKeyType === "rsa") {
      const ciphertext = publicEncrypt(
        { key: publicKey, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
        plaintext,
      );
      return armorPrefix + Buffer.concat([Buffer.from([rsaTag]), ciphertext]).toString("base64");
    }
    const ephemeral = generateKeyPairSync("x25519");
    const ephemeralPublic = ephemeral.publicKey.export({ format: "der", type: "spki" }).subarray(-32);
    const key = x25519Key(diffieHellman({ privateKey: ephemeral.privateKey, publicKey }), ephemeralPublic);
    const nonce = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", key, nonce);
    const body = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    key.fill(0);
    return (
      armorPrefix + Buffer.concat([Buffer.from([x25519Tag]), ephemeralPublic, nonce, body]).toString("base64")
    );
  } finally {
    plaintext.fill(0);
  }
}

/**
 * What an operator runs with their private key to read their share; `passphrase` opens a private
 * key kept encrypted (PEM "ENCRYPTED PRIVATE KEY").
 */
export function decryptShare(armored: string, privateKeyPem: string, passphrase?: string): string {
  if (typeof armored !== "string" || !armored.startsWith(armorPrefix)) {
    throw new SealError("INVALID_ARGUMENT", `an encrypted share starts with "${armorPrefix}"`);
  }
  const bytes = Buffer.from(armored.slice(armorPrefix.length), "base64");
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(
      passphrase === undefined ? privateKeyPem : { key: privateKeyPem, passphrase },
    );
  } catch (error) {
    if (privateKeyPem.includes("-----BEGIN ENCRYPTED PRIVATE KEY-----")) {
      throw new SealError(
        "INVALID_ARGUMENT",
        passphrase === undefined
          ? "the private key is encrypted: give its passphrase"
          : "the passphrase does not open the private key",
        { cause: error },
      );
    }
    throw new SealError("INVALID_ARGUMENT", "the private key is not a PEM private key", { cause: error });
  }
  try {
    if (bytes[0] === rsaTag && privateKey.asymmetricKeyType === "rsa") {
      const plaintext = privateDecrypt(
        { key: privateKey, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
        bytes.subarray(1),
      );
      return plaintext.toString("utf8");
    }
    if (
      bytes[0] === x25519Tag &&
      privateKey.asymmetricKeyType === "x25519" &&
      bytes.length > 1 + 32 + 12 + 16
    ) {
      const ephemeralPublic = bytes.subarray(1, 33);
      const publicKey = createPublicKey({ key: x25519Spki(ephemeralPublic), format: "der", type: "spki" });
      const key = x25519Key(diffieHellman({ privateKey, publicKey }), ephemeralPublic);
      const nonce = bytes.subarray(33, 45);
      const decipher = createDecipheriv("aes-256-gcm", key, nonce);
      decipher.setAuthTag(bytes.subarray(bytes.length - 16));
      const plaintext = Buffer.concat([
        decipher.update(bytes.subarray(45, bytes.length - 16)),
        decipher.final(),
      ]);
      key.fill(0);
      return plaintext.toString("utf8");
    }
  } catch (error) {
    throw new SealError("INVALID_ARGUMENT", "this private key does not open the encrypted share", {
      cause: error,
    });
  }
  throw new SealError(
    "INVALID_ARGUMENT",
    "the encrypted share and the private key are of different kinds (RSA and X25519)",
  );
}

/** Checks an operator's public key before init uses it, so a bad key fails before any share exists. */
export function parsePublicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (error) {
    throw new SealError("INVALID_ARGUMENT", "an operator key is not a PEM public key", { cause: error });
  }
  if (key.asymmetricKeyType === "x25519") return key;
  if (key.asymmetricKeyType === "rsa") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < rsaModulusBitsMin) {
      throw new SealError(
        "INVALID_ARGUMENT",
        `an operator RSA key has ${bits} bits; at least ${rsaModulusBitsMin} are needed`,
      );
    }
    return key;
  }
  throw new SealError(
    "INVALID_ARGUMENT",
    `an operator key is ${key.asymmetricKeyType ?? "of an unknown type"}; RSA or X25519 keys are accepted`,
  );
}

function x25519Key(sharedSecret: Buffer, ephemeralPublic: Uint8Array): Buffer {
  const key = Buffer.from(hkdfSync("sha256", sharedSecret, ephemeralPublic, hkdfInfo, 32));
  sharedSecret.fill(0);
  return key;
}

/** The SPKI DER of a raw X25519 public key (a fixed 12-byte prefix). */
function x25519Spki(raw: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from("302a300506032b656e032100", "hex"), raw]);
}
