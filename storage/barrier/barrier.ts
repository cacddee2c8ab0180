// The barrier: the single place where strongroom encrypts and decrypts data at rest (as in
// Vault/OpenBao, storage below it is untrusted). AES-256-GCM with the keyring's active key for new
// data; a read picks its key by the term in the ciphertext header. The AAD binds a ciphertext to
// its path and key term, so a value copied to another path does not decrypt. Sealed, it holds no
// keys (they are zeroed) and refuses to work. It never logs, and never puts plaintext or key
// bytes in an error.
//
// Ciphertext: version (u8 = 1) | key term (u32 BE) | nonce (12) | ciphertext | tag (16)
// AAD:        version | key term | path (UTF-8)

import { nonceBytes, openBytes, sealBytes, tagBytes } from "./aead.js";
import { BarrierError } from "./errors.js";
import type { Keyring } from "./keyring.js";

const ciphertextVersion = 1;
const headerBytes = 1 + 4;
/** The smallest well-formed ciphertext: header, nonce and tag around an empty value. */
export const ciphertextOverheadBytes = headerBytes + nonceBytes + tagBytes;
const pathBytesMax = 4096;

/**
 * AES-GCM with random 96-bit nonces must stay well below 2^32 encryptions per key; Vault and
 * OpenBao rotate at about 3.86 billion, and so do we by default.
 */
export const defaultRotateAfterEncryptions = 3_865_470_566;

export interface BarrierOptions {
  /** Rotate the active key once it has encrypted this many values. */
  readonly rotateAfterEncryptions?: number;
  /** The time recorded for automatic rotations (milliseconds since the epoch). */
  readonly now?: () => number;
  /** Called after the keyring changed (a rotation), so its owner stores it again (wrapped). */
  readonly onKeyringChange?: (keyring: Keyring) => void;
}

export class Barrier {
  private keyring: Keyring | null = null;
  private readonly rotateAfterEncryptions: number;
  private readonly now: () => number;
  private readonly onKeyringChange: (keyring: Keyring) => void;

  constructor(options: BarrierOptions = {}) {
    const limit = options.rotateAfterEncryptions ?? defaultRotateAfterEncryptions;
    if (!Number.isSafeInteger(limit) || limit <= 0 || limit > defaultRotateAfterEncryptions) {
      throw new BarrierError(
        "INVALID_ARGUMENT",
        `rotateAfterEncryptions must be an integer from 1 to ${defaultRotateAfterEncryptions}, got ${limit}`,
      );
    }
    this.rotateAfterEncryptions = limit;
    this.now = options.now ?? Date.now;
    this.onKeyringChange = options.onKeyringChange ?? (() => {});
  }

  /** Takes the keyring (opened with the root key). The barrier owns it until seal(). */
  unseal(keyring: Keyring): void {
    if (this.keyring !== null && this.keyring !== keyring) this.keyring.zero();
    this.keyring = keyring;
  }

  /** Zeroes every key and refuses all work until unsealed again. */
  seal(): void {
    this.keyring?.zero();
    this.keyring = null;
  }

  isSealed(): boolean {
    return this.keyring === null;
  }

  activeTerm(): number {
    return this.unsealed().activeKey().term;
  }

  /** The keyring, to wrap with the root key for storage. */
  currentKeyring(): Keyring {
    return this.unsealed();
  }

  /** Adds a key term now (operators' RotateKeyring); old data stays readable. Returns the new term. */
  rotate(): number {
    const keyring = this.unsealed();
    const term = keyring.rotate(this.now());
    this.onKeyringChange(keyring);
    return term;
  }

  /**
   * Raises the count of encryptions under `term` to at least `count` — what the replicated state
   * says was applied under it — so a new leader does not restart the count toward the GCM limit.
   */
  noteEncryptions(term: number, count: number): void {
    const key = this.unsealed().key(term);
    if (key !== undefined && count > key.encryptions) key.encryptions = count;
  }

  encrypt(path: string, plaintext: Uint8Array): Uint8Array {
    validatePath(path);
    if (!(plaintext instanceof Uint8Array))
      throw new BarrierError("INVALID_ARGUMENT", "the value to encrypt must be bytes");
    const keyring = this.unsealed();
    let key = keyring.activeKey();
    if (key.encryptions >= this.rotateAfterEncryptions) {
      keyring.rotate(this.now());
      this.onKeyringChange(keyring);
      key = keyring.activeKey();
    }
    // A slice of Node's buffer pool, as the AAD below: both live only for this call.
    const header = Buffer.allocUnsafe(headerBytes);
    header[0] = ciphertextVersion;
    header.writeUInt32BE(key.term, 1);
    key.encryptions++;
    return sealBytes(key.key, associatedData(header, path), plaintext, header);
  }

  decrypt(path: string, ciphertext: Uint8Array): Uint8Array {
    validatePath(path);
    const keyring = this.unsealed();
    if (!(ciphertext instanceof Uint8Array) || ciphertext.length < ciphertextOverheadBytes) {
      throw new BarrierError(
        "CIPHERTEXT_FORMAT",
        `the stored value of ${path} is too short to be a ciphertext`,
      );
    }
    const view = new DataView(ciphertext.buffer, ciphertext.byteOffset, ciphertext.byteLength);
    const version = view.getUint8(0);
    if (version !== ciphertextVersion) {
      throw new BarrierError(
        "CIPHERTEXT_FORMAT",
        `the stored value of ${path} has unknown ciphertext version ${version}`,
      );
    }
    const term = view.getUint32(1);
    const key = keyring.key(term);
    if (key === undefined) {
      throw new BarrierError(
        "UNKNOWN_KEY_TERM",
        `the stored value of ${path} needs key term ${term}, which the keyring does not hold`,
      );
    }
    const header = ciphertext.subarray(0, headerBytes);
    const plaintext = openBytes(key.key, associatedData(header, path), ciphertext.subarray(headerBytes));
    if (plaintext === null) {
      throw new BarrierError(
        "INTEGRITY",
        `the stored value of ${path} does not authenticate (tampered with, or moved from another path)`,
      );
    }
    return plaintext;
  }

  private unsealed(): Keyring {
    if (this.keyring === null) throw new BarrierError("SEALED", "the barrier is sealed");
    return this.keyring;
  }
}

function validatePath(path: string): void {
  if (typeof path !== "string" || path.length === 0 || path.length > pathBytesMax) {
    throw new BarrierError("INVALID_ARGUMENT", `a path must be a string of 1 to ${pathBytesMax} characters`);
  }
}

function associatedData(header: Uint8Array, path: string): Uint8Array {
  const pathLength = Buffer.byteLength(path);
  const aad = Buffer.allocUnsafe(header.length + pathLength);
  aad.set(header, 0);
  aad.write(path, header.length, pathLength, "utf8");
  return aad;
}
