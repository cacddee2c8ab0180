// The keyring: data keys by term. New writes use the active (newest) term; a read picks the key by
// the term in its ciphertext header, so rotation adds a term without rewriting old data. It counts
// encryptions per term so the barrier can rotate before AES-GCM's limit for random nonces.
// Key buffers belong to the keyring and are zeroed by zero(); the plaintext serialization exists
// only to be wrapped by the root key (root-key-wrap.ts) and is zeroed by its caller.

import { randomBytes } from "node:crypto";
import { keyBytes } from "./aead.js";
import { BarrierError } from "./errors.js";

export interface DataKey {
  readonly term: number;
  readonly key: Uint8Array;
  /** When the key was installed, as recorded by whoever rotated (milliseconds since the epoch). */
  readonly installedAt: number;
  encryptions: number;
}

const formatVersion = 1;
const headerBytes = 1 + 4 + 4;
const recordBytes = 4 + 8 + 8 + keyBytes;

export class Keyring {
  private readonly keys = new Map<number, DataKey>();
  private active = 0;

  /** A new keyring with one random key, term 1. */
  static create(installedAt: number): Keyring {
    const keyring = new Keyring();
    keyring.rotate(installedAt);
    return keyring;
  }

  activeKey(): DataKey {
    const key = this.keys.get(this.active);
    if (key === undefined) throw new BarrierError("SEALED", "the keyring holds no keys");
    return key;
  }

  key(term: number): DataKey | undefined {
    return this.keys.get(term);
  }

  terms(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  /** Adds a fresh random key under the next term and makes it active. Returns the new term. */
  rotate(installedAt: number): number {
    const term = this.active + 1;
    if (term > 0xffff_ffff) throw new BarrierError("INVALID_ARGUMENT", "the keyring has run out of terms");
    this.keys.set(term, { term, key: new Uint8Array(randomBytes(keyBytes)), installedAt, encryptions: 0 });
    this.active = term;
    return term;
  }

  /** Overwrites every key with zeros and forgets them. */
  zero(): void {
    for (const key of this.keys.values()) key.key.fill(0);
    this.keys.clear();
    this.active = 0;
  }

  /** The keyring in the clear, to be wrapped by the root key and then zeroed. Never stored as is. */
  serialize(): Uint8Array {
    const out = new Uint8Array(headerBytes + this.keys.size * recordBytes);
    const view = new DataView(out.buffer);
    view.setUint8(0, formatVersion);
    view.setUint32(1, this.active);
    view.setUint32(5, this.keys.size);
    let offset = headerBytes;
    for (const term of this.terms()) {
      const key = this.keys.get(term) as DataKey;
      view.setUint32(offset, term);
      view.setFloat64(offset + 4, key.installedAt);
      view.setFloat64(offset + 12, key.encryptions);
      out.set(key.key, offset + 20);
      offset += recordBytes;
    }
    return out;
  }

  static deserialize(bytes: Uint8Array): Keyring {
    const fail = (why: string): never => {
      throw new BarrierError("CIPHERTEXT_FORMAT", `the keyring is malformed: ${why}`);
    };
    if (bytes.length < headerBytes) fail("too short");
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (view.getUint8(0) !== formatVersion) fail(`unknown format version ${view.getUint8(0)}`);
    const active = view.getUint32(1);
    const count = view.getUint32(5);
    if (bytes.length !== headerBytes + count * recordBytes) fail("its length does not match its key count");
    const keyring = new Keyring();
    for (let i = 0; i < count; i++) {
      const offset = headerBytes + i * recordBytes;
      const term = view.getUint32(offset);
      keyring.keys.set(term, {
        term,
        installedAt: view.getFloat64(offset + 4),
        encryptions: view.getFloat64(offset + 12),
        key: new Uint8Array(bytes.subarray(offset + 20, offset + 20 + keyBytes)),
      });
    }
    if (!keyring.keys.has(active)) fail(`the active term ${active} has no key`);
    keyring.active = active;
    return keyring;
  }
}
