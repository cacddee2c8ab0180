// For tests that run parts of strongroom as real child processes: the child's entry point is
// bundled once, so each child starts as plain node in tens of milliseconds rather than through tsx.

import { randomUUID } from "node:crypto";
import { mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";

// Inside the project, so a bundle resolves native addons (left out of it) from node_modules.
const bundleDirectory = new URL("../../node_modules/.cache/strongroom/", import.meta.url).pathname;

/**
 * Bundles `entry` (a TypeScript file) into one ESM file and returns its path. `external` names
 * the packages loaded from node_modules instead ("packages": every package, only our code bundled).
 */
export async function bundleChild(
  entry: URL,
  name: string,
  external: readonly string[] | "packages",
): Promise<string> {
  mkdirSync(bundleDirectory, { recursive: true });
  const outfile = join(bundleDirectory, `${name}.mjs`);
  // Test files run in parallel workers, each bundling: each writes its own file and renames it
  // into place (atomic), so a child never starts from a bundle another worker is half-way writing.
  const partial = join(bundleDirectory, `${name}.${process.pid}.${randomUUID()}.mjs`);
  await build({
    entryPoints: [entry.pathname],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    outfile: partial,
    ...(external === "packages" ? { packages: "external" as const } : { external: [...external] }),
    logLevel: "silent",
  });
  renameSync(partial, outfile);
  return outfile;
}
