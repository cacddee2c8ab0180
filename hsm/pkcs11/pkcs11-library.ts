// A PKCS#11 module (the vendor's shared library) loaded once per process and path. C_Initialize
// and C_Finalize act on the whole process, whatever object calls them, so every user of a library
// path goes through the one entry here. When a token is removed or a device fails, the module's
// view of slots and sessions is stale until it is finalized and initialized again (SoftHSM2, for
// one, keeps failing until then); `reset` does that and bumps a generation, so every client knows
// its session handles died with it.
//
// The native binding is loaded lazily: a node sealed with Shamir shares never loads pkcs11js.

import { createRequire } from "node:module";
import type * as Pkcs11Types from "pkcs11js";
import { SealError } from "../errors.js";

export type Pkcs11Binding = typeof Pkcs11Types;
export type Pkcs11Module = InstanceType<Pkcs11Binding["PKCS11"]>;

interface LoadedLibrary {
  readonly module: Pkcs11Module;
  initialized: boolean;
  generation: number;
}

const libraries = new Map<string, LoadedLibrary>();
let binding: Pkcs11Binding | null = null;

export function pkcs11Binding(): Pkcs11Binding {
  if (binding === null) {
    const require = createRequire(import.meta.url);
    try {
      binding = require("pkcs11js") as Pkcs11Binding;
    } catch (error) {
      throw new SealError(
        "HSM_UNAVAILABLE",
        "the pkcs11js native module is not built (run `npm ci` with a C++ toolchain: python3, make, g++)",
        { cause: error },
      );
    }
  }
  return binding;
}

/** The initialized module for a library path, and its generation (changes on every reset). */
export function initializedLibrary(libraryPath: string): { module: Pkcs11Module; generation: number } {
  let library = libraries.get(libraryPath);
  if (library === undefined) {
    const module = new (pkcs11Binding().PKCS11)();
    try {
      module.load(libraryPath);
    } catch (error) {
      throw new SealError("HSM_UNAVAILABLE", `cannot load the PKCS#11 library ${libraryPath}`, {
        cause: error,
      });
    }
    library = { module, initialized: false, generation: 0 };
    libraries.set(libraryPath, library);
  }
  if (!library.initialized) {
    try {
      library.module.C_Initialize();
    } catch (error) {
      // Another part of the process may have initialized it already; that is as good.
      if (!isAlreadyInitialized(error)) {
        throw new SealError("HSM_UNAVAILABLE", `C_Initialize of ${libraryPath} failed`, { cause: error });
      }
    }
    library.initialized = true;
  }
  return { module: library.module, generation: library.generation };
}

/** Finalizes the module so that the next use initializes it afresh (new slots, new sessions). */
export function resetLibrary(libraryPath: string): void {
  const library = libraries.get(libraryPath);
  if (library === undefined) return;
  library.generation += 1;
  if (!library.initialized) return;
  library.initialized = false;
  try {
    library.module.C_Finalize();
  } catch {
    // A module that fails to finalize is re-initialized anyway; there is nothing else to do.
  }
}

function isAlreadyInitialized(error: unknown): boolean {
  return error instanceof Error && error.message.includes("CKR_CRYPTOKI_ALREADY_INITIALIZED");
}
