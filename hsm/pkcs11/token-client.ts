// The PKCS#11 calls on one token, synchronous as the module's API is: finds (or generates) the
// AES-256 key that wraps the root key, and encrypts or decrypts the root key with it. It runs only
// in the PKCS#11 helper process (pkcs11-helper-process.ts), never in a node's own process: a call
// into a vendor's module can hang (a network HSM that stops answering) or crash, and neither may
// stop a node's event loop. The session is opened and logged in once and reused; when the module
// reports a lost session, a removed token or a failed device, the client resets the module and
// tries once more, so a token that came back is used again without a restart. Every failure
// becomes a SealError naming its cause (no token, wrong PIN, no key, a blob the key cannot open);
// none of them carries the PIN or key bytes.
//
// The key is created non-extractable and sensitive: the root key's protection is that this key
// never leaves the token. The root key itself is software-generated and only passes through the
// token to be encrypted or decrypted, at init, unseal and rewrap - never per request.

import { randomBytes } from "node:crypto";
import { SealError, type SealErrorCode } from "../errors.js";
import { describeToken, type Pkcs11Config, type Pkcs11Mechanism, readPin } from "./pkcs11-config.js";
import {
  initializedLibrary,
  type Pkcs11Binding,
  type Pkcs11Module,
  pkcs11Binding,
  resetLibrary,
} from "./pkcs11-library.js";

const rootKeyBytes = 32;
const gcmIvBytes = 12;
const gcmTagBits = 128;
const gcmAssociatedData = Buffer.from("strongroom root key v1");

type Handle = Buffer;

interface OpenSession {
  readonly handle: Handle;
  readonly generation: number;
}

/** Failures that a fresh C_Initialize may cure: the token or device came and went. */
const transientReturnValues = new Set([
  "CKR_SESSION_HANDLE_INVALID",
  "CKR_SESSION_CLOSED",
  "CKR_DEVICE_REMOVED",
  "CKR_DEVICE_ERROR",
  "CKR_DEVICE_MEMORY",
  "CKR_TOKEN_NOT_PRESENT",
  "CKR_TOKEN_NOT_RECOGNIZED",
  "CKR_SLOT_ID_INVALID",
  "CKR_CRYPTOKI_NOT_INITIALIZED",
  "CKR_USER_NOT_LOGGED_IN",
  "CKR_GENERAL_ERROR",
  "CKR_FUNCTION_FAILED",
]);
const pinReturnValues = new Set([
  "CKR_PIN_INCORRECT",
  "CKR_PIN_LOCKED",
  "CKR_PIN_EXPIRED",
  "CKR_PIN_INVALID",
  "CKR_PIN_LEN_RANGE",
]);
const unwrapReturnValues = new Set([
  "CKR_ENCRYPTED_DATA_INVALID",
  "CKR_ENCRYPTED_DATA_LEN_RANGE",
  "CKR_WRAPPED_KEY_INVALID",
  "CKR_WRAPPED_KEY_LEN_RANGE",
  "CKR_DATA_LEN_RANGE",
]);

export class TokenClient {
  private session: OpenSession | null = null;

  constructor(readonly config: Pkcs11Config) {}

  /**
   * The key with the configured label, checked to be an AES-256 key. With `generate`, creates it
   * when no key has that label (and refuses when one does, so that a typo in the label cannot
   * silently create a second key).
   */
  ensureKey(keyLabel: string, options: { generate: boolean }): void {
    this.withSession((module, session, pkcs11) => {
      const found = this.findKeys(module, session, pkcs11, keyLabel);
      if (options.generate) {
        if (found.length > 0) {
          throw new SealError(
            "HSM_KEY_AMBIGUOUS",
            `a key labelled "${keyLabel}" already exists on ${describeToken(this.config)}: use it (do not ask to generate) or choose another label`,
          );
        }
        generateKey(module, session, pkcs11, keyLabel);
        return;
      }
      this.checkedKey(module, session, pkcs11, keyLabel);
    });
  }

  /** Encrypts the root key under the HSM key; the blob is what the seal record keeps. */
  wrapRootKey(rootKey: Uint8Array, keyLabel: string, mechanism: Pkcs11Mechanism): Uint8Array {
    if (rootKey.length !== rootKeyBytes)
      throw new SealError("INVALID_ARGUMENT", `the root key must be ${rootKeyBytes} bytes`);
    return this.withSession((module, session, pkcs11) => {
      const key = this.checkedKey(module, session, pkcs11, keyLabel);
      this.checkMechanism(module, session, pkcs11, mechanism);
      // pkcs11js takes Buffers: a copy of the root key, zeroed as soon as the token has it.
      const plaintext = Buffer.from(rootKey);
      if (mechanism === "aes-gcm") {
        const iv = randomBytes(gcmIvBytes);
        try {
          module.C_EncryptInit(session, gcmMechanism(pkcs11, iv), key);
          const ciphertext = module.C_Encrypt(session, plaintext, Buffer.alloc(rootKeyBytes + 32));
          return new Uint8Array(Buffer.concat([iv, ciphertext]));
        } finally {
          plaintext.fill(0);
        }
      }
      let temporary: Handle;
      try {
        // A session object (gone when the session closes), destroyed right after the wrap.
        temporary = module.C_CreateObject(session, [
          { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_SECRET_KEY },
          { type: pkcs11.CKA_KEY_TYPE, value: pkcs11.CKK_AES },
          { type: pkcs11.CKA_TOKEN, value: false },
          { type: pkcs11.CKA_EXTRACTABLE, value: true },
          { type: pkcs11.CKA_VALUE, value: plaintext },
        ]);
      } finally {
        plaintext.fill(0);
      }
      try {
        const wrapped = module.C_WrapKey(
          session,
          { mechanism: pkcs11.CKM_AES_KEY_WRAP_PAD },
          key,
          temporary,
          Buffer.alloc(rootKeyBytes + 32),
        );
        return new Uint8Array(wrapped);
      } finally {
        module.C_DestroyObject(session, temporary);
      }
    });
  }

  /** Decrypts a blob made by wrapRootKey; a blob the key cannot open is HSM_UNWRAP_FAILED. */
  unwrapRootKey(blob: Uint8Array, keyLabel: string, mechanism: Pkcs11Mechanism): Uint8Array {
    const cannotOpen = (cause?: unknown): SealError =>
      new SealError(
        "HSM_UNWRAP_FAILED",
        `the HSM key "${keyLabel}" on ${describeToken(this.config)} cannot decrypt the stored root key: the blob was altered, or was wrapped by another key of that label`,
        { cause },
      );
    let attempt = 0;
    return this.withSession((module, session, pkcs11) => {
      attempt += 1;
      const key = this.checkedKey(module, session, pkcs11, keyLabel);
      try {
        if (mechanism === "aes-gcm") {
          if (blob.length !== gcmIvBytes + rootKeyBytes + gcmTagBits / 8) throw cannotOpen();
          const iv = Buffer.from(blob.subarray(0, gcmIvBytes));
          module.C_DecryptInit(session, gcmMechanism(pkcs11, iv), key);
          const out = Buffer.alloc(rootKeyBytes + 32);
          const plaintext = module.C_Decrypt(session, Buffer.from(blob.subarray(gcmIvBytes)), out);
          const rootKey = new Uint8Array(plaintext);
          out.fill(0);
          if (rootKey.length !== rootKeyBytes) throw cannotOpen();
          return rootKey;
        }
        const unwrapped = module.C_UnwrapKey(
          session,
          { mechanism: pkcs11.CKM_AES_KEY_WRAP_PAD },
          key,
          Buffer.from(blob),
          [
            { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_SECRET_KEY },
            { type: pkcs11.CKA_KEY_TYPE, value: pkcs11.CKK_AES },
            { type: pkcs11.CKA_TOKEN, value: false },
            { type: pkcs11.CKA_SENSITIVE, value: false },
            { type: pkcs11.CKA_EXTRACTABLE, value: true },
          ],
        );
        try {
          const [attribute] = module.C_GetAttributeValue(session, unwrapped, [{ type: pkcs11.CKA_VALUE }]);
          const value = attribute?.value;
          if (!Buffer.isBuffer(value) || value.length !== rootKeyBytes) throw cannotOpen();
          const rootKey = new Uint8Array(value);
          value.fill(0);
          return rootKey;
        } finally {
          module.C_DestroyObject(session, unwrapped);
        }
      } catch (error) {
        if (error instanceof SealError) throw error;
        const returnValue = returnValueOf(error);
        // SoftHSM2 answers a failed GCM tag with CKR_GENERAL_ERROR, which is also what it says
        // when its token went away; the first time it is retried on a fresh module (which finds
        // a missing token or key), the second time the blob itself is the cause.
        if (unwrapReturnValues.has(returnValue) || (returnValue === "CKR_GENERAL_ERROR" && attempt > 1)) {
          throw cannotOpen(error);
        }
        throw error;
      }
    });
  }

  /** Logs out and closes the session (the module stays loaded for the process). */
  close(): void {
    const session = this.session;
    this.session = null;
    if (session === null) return;
    try {
      const { module, generation } = initializedLibrary(this.config.libraryPath);
      if (generation === session.generation) module.C_CloseSession(session.handle);
    } catch {
      // Closing a session of a module that failed is not worth an error.
    }
  }

  /**
   * Runs `operation` in the logged-in session. A failure the module may recover from (a lost
   * session or token) resets the module and runs it once more in a new session.
   */
  private withSession<T>(operation: (module: Pkcs11Module, session: Handle, pkcs11: Pkcs11Binding) => T): T {
    const pkcs11 = pkcs11Binding();
    for (let attempt = 1; ; attempt++) {
      try {
        const { module, session } = this.openSession(pkcs11);
        return operation(module, session, pkcs11);
      } catch (error) {
        const failure = this.describeFailure(error);
        // A removed token can look like a token without the key (SoftHSM2 lists no objects in a
        // session that outlived its token), so a missing key is also checked on a fresh module.
        const mayBeStale = failure.code === "HSM_UNAVAILABLE" || failure.code === "HSM_KEY_NOT_FOUND";
        if (mayBeStale && attempt === 1) {
          this.session = null;
          resetLibrary(this.config.libraryPath);
          continue;
        }
        if (failure.code === "HSM_UNAVAILABLE") this.session = null;
        throw failure;
      }
    }
  }

  private openSession(pkcs11: Pkcs11Binding): { module: Pkcs11Module; session: Handle } {
    const { module, generation } = initializedLibrary(this.config.libraryPath);
    if (this.session !== null && this.session.generation === generation) {
      return { module, session: this.session.handle };
    }
    const slot = this.findSlot(module);
    const session = module.C_OpenSession(slot, pkcs11.CKF_RW_SESSION | pkcs11.CKF_SERIAL_SESSION);
    try {
      module.C_Login(session, pkcs11.CKU_USER, readPin(this.config));
    } catch (error) {
      // Login state belongs to the token and the process: another client may have logged in.
      if (returnValueOf(error) !== "CKR_USER_ALREADY_LOGGED_IN") {
        module.C_CloseSession(session);
        throw error;
      }
    }
    this.session = { handle: session, generation };
    return { module, session };
  }

  private findSlot(module: Pkcs11Module): Handle {
    const slots = module.C_GetSlotList(true);
    for (const slot of slots) {
      if (this.config.slot !== undefined) {
        if (slotNumber(slot) === this.config.slot) return slot;
        continue;
      }
      const label = module.C_GetTokenInfo(slot).label.trim();
      if (label === this.config.tokenLabel) return slot;
    }
    throw new SealError(
      "HSM_UNAVAILABLE",
      `${describeToken(this.config)} is not present in ${this.config.libraryPath} (${slots.length} token(s) present)`,
    );
  }

  private findKeys(module: Pkcs11Module, session: Handle, pkcs11: Pkcs11Binding, keyLabel: string): Handle[] {
    module.C_FindObjectsInit(session, [
      { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_SECRET_KEY },
      { type: pkcs11.CKA_LABEL, value: keyLabel },
    ]);
    try {
      return module.C_FindObjects(session, 2);
    } finally {
      module.C_FindObjectsFinal(session);
    }
  }

  private checkedKey(module: Pkcs11Module, session: Handle, pkcs11: Pkcs11Binding, keyLabel: string): Handle {
    const found = this.findKeys(module, session, pkcs11, keyLabel);
    const key = found[0];
    if (key === undefined) {
      throw new SealError(
        "HSM_KEY_NOT_FOUND",
        `no key labelled "${keyLabel}" on ${describeToken(this.config)}`,
      );
    }
    if (found.length > 1) {
      throw new SealError(
        "HSM_KEY_AMBIGUOUS",
        `more than one key is labelled "${keyLabel}" on ${describeToken(this.config)}; labels must be unique`,
      );
    }
    const [keyType, valueLength] = module.C_GetAttributeValue(session, key, [
      { type: pkcs11.CKA_KEY_TYPE },
      { type: pkcs11.CKA_VALUE_LEN },
    ]);
    if (
      readUnsigned(keyType?.value) !== pkcs11.CKK_AES ||
      readUnsigned(valueLength?.value) !== rootKeyBytes
    ) {
      throw new SealError(
        "HSM_KEY_NOT_FOUND",
        `the key labelled "${keyLabel}" on ${describeToken(this.config)} is not an AES-256 key`,
      );
    }
    return key;
  }

  private checkMechanism(
    module: Pkcs11Module,
    session: Handle,
    pkcs11: Pkcs11Binding,
    mechanism: Pkcs11Mechanism,
  ): void {
    const slot = module.C_GetSessionInfo(session).slotID;
    const [type, flagsNeeded] =
      mechanism === "aes-gcm"
        ? [pkcs11.CKM_AES_GCM, pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT]
        : [pkcs11.CKM_AES_KEY_WRAP_PAD, pkcs11.CKF_WRAP | pkcs11.CKF_UNWRAP];
    const offered = module.C_GetMechanismList(slot).includes(type);
    const flags = offered ? module.C_GetMechanismInfo(slot, type).flags : 0;
    if ((flags & flagsNeeded) !== flagsNeeded) {
      throw new SealError(
        "HSM_MECHANISM_UNSUPPORTED",
        `${describeToken(this.config)} does not offer ${mechanism} for ${mechanism === "aes-gcm" ? "encrypt and decrypt" : "wrap and unwrap"}`,
      );
    }
  }

  private describeFailure(error: unknown): SealError {
    if (error instanceof SealError) return error;
    const returnValue = returnValueOf(error);
    const where = `${describeToken(this.config)} (${this.config.libraryPath})`;
    let code: SealErrorCode = "HSM_ERROR";
    let message = `the HSM failed: ${returnValue || "unknown error"} from ${where}`;
    if (pinReturnValues.has(returnValue)) {
      code = "HSM_PIN_INCORRECT";
      message = `${where} refused the PIN (${returnValue}); fix the PIN file or variable - retrying a wrong PIN may lock the token`;
    } else if (transientReturnValues.has(returnValue)) {
      code = "HSM_UNAVAILABLE";
      message = `${where} is unavailable (${returnValue})`;
    }
    return new SealError(code, message, { cause: error });
  }
}

function generateKey(module: Pkcs11Module, session: Handle, pkcs11: Pkcs11Binding, keyLabel: string): void {
  module.C_GenerateKey(session, { mechanism: pkcs11.CKM_AES_KEY_GEN }, [
    { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_SECRET_KEY },
    { type: pkcs11.CKA_KEY_TYPE, value: pkcs11.CKK_AES },
    { type: pkcs11.CKA_VALUE_LEN, value: rootKeyBytes },
    { type: pkcs11.CKA_LABEL, value: keyLabel },
    { type: pkcs11.CKA_ID, value: randomBytes(16) },
    // Kept on the token, usable only after login, never readable or exportable.
    { type: pkcs11.CKA_TOKEN, value: true },
    { type: pkcs11.CKA_PRIVATE, value: true },
    { type: pkcs11.CKA_SENSITIVE, value: true },
    { type: pkcs11.CKA_EXTRACTABLE, value: false },
    { type: pkcs11.CKA_ENCRYPT, value: true },
    { type: pkcs11.CKA_DECRYPT, value: true },
    { type: pkcs11.CKA_WRAP, value: true },
    { type: pkcs11.CKA_UNWRAP, value: true },
  ]);
}

function gcmMechanism(pkcs11: Pkcs11Binding, iv: Buffer) {
  return {
    mechanism: pkcs11.CKM_AES_GCM,
    parameter: {
      type: pkcs11.CK_PARAMS_AES_GCM,
      iv,
      ivBits: gcmIvBytes * 8,
      aad: gcmAssociatedData,
      tagBits: gcmTagBits,
    },
  };
}

/** pkcs11js reports a PKCS#11 return value as its name in the message (e.g. "CKR_PIN_INCORRECT"). */
function returnValueOf(error: unknown): string {
  if (!(error instanceof Error)) return "";
  return /CKR_[A-Z_]+/.exec(error.message)?.[0] ?? "";
}

function slotNumber(slot: Handle): number {
  return slot.length >= 8 ? Number(slot.readBigUInt64LE(0)) : slot.readUInt32LE(0);
}

/** A CK_ULONG attribute as the module returns it (native-endian bytes). */
function readUnsigned(value: unknown): number {
  if (!Buffer.isBuffer(value)) return -1;
  if (value.length >= 8) return Number(value.readBigUInt64LE(0));
  if (value.length >= 4) return value.readUInt32LE(0);
  return -1;
}
