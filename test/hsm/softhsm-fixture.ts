// A real SoftHSM2 for tests: a temporary token directory and softhsm2.conf (SOFTHSM2_CONF), tokens
// initialized with softhsm2-util, and the faults the seal must survive - a token removed and put
// back, a token that hangs, a key deleted. Nothing here imitates PKCS#11: every call goes to
// libsofthsm2.so.

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  initializedLibrary,
  type Pkcs11Module,
  pkcs11Binding,
  resetLibrary,
} from "../../hsm/pkcs11/pkcs11-library.js";
import { findSoftHsmLibrary } from "../../hsm/pkcs11/softhsm-library.js";

export function softHsmLibraryPath(): string {
  const found = findSoftHsmLibrary();
  if (found === null) {
    throw new Error(
      "SoftHSM2 is not installed: run `apt-get install softhsm2` (the seal tests use a real SoftHSM)",
    );
  }
  return found;
}

export interface SoftHsmToken {
  readonly label: string;
  readonly pin: string;
  /** A file holding the PIN, as the seal config names it. */
  readonly pinFile: string;
  /** The token's directory under the token store (moved away to remove the token). */
  readonly directory: string;
}

export class SoftHsm {
  readonly root = mkdtempSync(join(tmpdir(), "strongroom-softhsm-"));
  readonly libraryPath = softHsmLibraryPath();
  readonly configPath = join(this.root, "softhsm2.conf");
  private readonly tokenStore = join(this.root, "tokens");
  private readonly removedStore = join(this.root, "removed");

  constructor() {
    mkdirSync(this.tokenStore);
    mkdirSync(this.removedStore);
    writeFileSync(
      this.configPath,
      `directories.tokendir = ${this.tokenStore}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
    );
    // SoftHSM reads its config at C_Initialize: point this process at it and start afresh.
    process.env.SOFTHSM2_CONF = this.configPath;
    resetLibrary(this.libraryPath);
  }

  /** Initializes a new token in the next free slot. */
  initToken(label: string, pin = "1234-user"): SoftHsmToken {
    const before = new Set(readdirSync(this.tokenStore));
    execFileSync(
      "softhsm2-util",
      ["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "5678-security-officer"],
      { env: { ...process.env, SOFTHSM2_CONF: this.configPath }, stdio: "pipe" },
    );
    const directory = readdirSync(this.tokenStore).find((name) => !before.has(name));
    if (directory === undefined) throw new Error(`softhsm2-util made no token directory for ${label}`);
    const pinFile = join(this.root, `${label}.pin`);
    writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 });
    // The running module only sees the new token after it is initialized again.
    resetLibrary(this.libraryPath);
    return { label, pin, pinFile, directory };
  }

  /** Takes the token away, as if unplugged or its HSM went offline. */
  removeToken(token: SoftHsmToken): void {
    renameSync(join(this.tokenStore, token.directory), join(this.removedStore, token.directory));
  }

  restoreToken(token: SoftHsmToken): void {
    renameSync(join(this.removedStore, token.directory), join(this.tokenStore, token.directory));
  }

  /**
   * Makes the token hang, as a network HSM that stops answering: its token file becomes a FIFO,
   * so a module that initializes from now on blocks in open() until something writes to it -
   * nothing does. (A module initialized before keeps the token in memory and still answers.)
   */
  hangToken(token: SoftHsmToken): void {
    const file = join(this.tokenStore, token.directory, "token.object");
    renameSync(file, join(this.root, `${token.directory}.token.object`));
    execFileSync("mkfifo", [file]);
  }

  /** Undoes hangToken: modules initialized from now on read the token again. */
  unhangToken(token: SoftHsmToken): void {
    const file = join(this.tokenStore, token.directory, "token.object");
    rmSync(file);
    renameSync(join(this.root, `${token.directory}.token.object`), file);
  }

  /** Destroys every object labelled `keyLabel` on the token (an operator deleting the key). */
  deleteKey(token: SoftHsmToken, keyLabel: string): number {
    return this.withUserSession(token, (module, session) => {
      const objects = findByLabel(module, session, keyLabel);
      for (const object of objects) module.C_DestroyObject(session, object);
      return objects.length;
    });
  }

  /** The first byte of each asked CK_BBOOL attribute of the key labelled `keyLabel` (1 true, 0 false). */
  keyFlags(token: SoftHsmToken, keyLabel: string, types: readonly number[]): number[] {
    return this.withUserSession(token, (module, session) => {
      const [key] = findByLabel(module, session, keyLabel);
      if (key === undefined) throw new Error(`no key labelled ${keyLabel}`);
      const attributes = module.C_GetAttributeValue(
        session,
        key,
        types.map((type) => ({ type })),
      );
      return attributes.map((attribute) => (attribute.value as Buffer)[0] ?? -1);
    });
  }

  /** Runs `action` in a session logged in as the token's user (private objects are visible). */
  private withUserSession<T>(token: SoftHsmToken, action: (module: Pkcs11Module, session: Buffer) => T): T {
    const pkcs11 = pkcs11Binding();
    const { module } = initializedLibrary(this.libraryPath);
    const slot = module
      .C_GetSlotList(true)
      .find((candidate) => module.C_GetTokenInfo(candidate).label.trim() === token.label);
    if (slot === undefined) throw new Error(`token ${token.label} is not present`);
    const session = module.C_OpenSession(slot, pkcs11.CKF_RW_SESSION | pkcs11.CKF_SERIAL_SESSION);
    try {
      try {
        module.C_Login(session, pkcs11.CKU_USER, token.pin);
      } catch (error) {
        if (!(error instanceof Error) || !error.message.includes("CKR_USER_ALREADY_LOGGED_IN")) throw error;
      }
      return action(module, session);
    } finally {
      module.C_CloseSession(session);
    }
  }

  cleanup(): void {
    resetLibrary(this.libraryPath);
    rmSync(this.root, { recursive: true, force: true });
  }
}

function findByLabel(module: Pkcs11Module, session: Buffer, label: string): Buffer[] {
  const pkcs11 = pkcs11Binding();
  module.C_FindObjectsInit(session, [{ type: pkcs11.CKA_LABEL, value: label }]);
  try {
    return module.C_FindObjects(session, 16);
  } finally {
    module.C_FindObjectsFinal(session);
  }
}
