// The version of strongroom this process runs: its package.json's. The file is found by walking up
// from this module, which works wherever the code runs from: dist/ in a checkout, the package
// installed under node_modules, the container image's /app, a test's bundle under
// node_modules/.cache. Read once, on first use.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const packageName = "strongroom";
let found: string | null = null;

/** package.json's version, or "unknown" when no strongroom package.json is above this module. */
export function strongroomVersion(): string {
  found ??= versionAbove(dirname(fileURLToPath(import.meta.url)));
  return found;
}

function versionAbove(start: string): string {
  for (let directory = start; ; directory = dirname(directory)) {
    const manifest = readManifest(join(directory, "package.json"));
    if (manifest?.name === packageName && typeof manifest.version === "string") return manifest.version;
    if (dirname(directory) === directory) return "unknown";
  }
}

function readManifest(file: string): { name?: unknown; version?: unknown } | null {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as { name?: unknown; version?: unknown };
  } catch {
    // None here, or not JSON: look further up.
    return null;
  }
}
