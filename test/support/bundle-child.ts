// For tests that run parts of strongroom as real child processes: the child's entry point is
// bundled once, so each child starts as plain node rather than through tsx. Code the entry loads
// with a dynamic import() (the CLI's server, dev and chaos commands) goes in chunks of its own,
// loaded only when that path runs, as with the compiled dist/: a CLI command that talks to a
// cluster then starts without loading the server (half the start-up time).

import { randomUUID } from "node:crypto";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";

// Inside the project, so a bundle resolves native addons (left out of it) from node_modules.
const bundleDirectory = new URL("../../node_modules/.cache/strongroom/", import.meta.url).pathname;

/**
 * Bundles `entry` (a TypeScript file) into ESM and returns the path of its entry file. `external`
 * names the packages loaded from node_modules instead ("packages": every package, only our code
 * bundled).
 */
export async function bundleChild(
  entry: URL,
  name: string,
  external: readonly string[] | "packages",
): Promise<string> {
  mkdirSync(bundleDirectory, { recursive: true });
  removeBundlesOfEndedProcesses(name);
  // Test files run in parallel workers, each bundling into a directory of its own: a child never
  // starts from chunks another worker is half-way writing.
  const outdir = join(bundleDirectory, `${name}.${process.pid}.${randomUUID()}`);
  await build({
    entryPoints: {
      [name]: entry.pathname,
      // A node's PKCS#11 calls run in a helper process, started from its entry point next to
      // the code that starts it (hsm/pkcs11/pkcs11-helper.ts); with splitting, every chunk is here.
      "pkcs11-helper-process": new URL("../../hsm/pkcs11/pkcs11-helper-process.ts", import.meta.url).pathname,
    },
    bundle: true,
    splitting: true,
    platform: "node",
    format: "esm",
    target: "node20",
    outdir,
    outExtension: { ".js": ".mjs" },
    ...(external === "packages" ? { packages: "external" as const } : { external: [...external] }),
    logLevel: "silent",
  });
  return join(outdir, `${name}.mjs`);
}

/** Bundle directories of `name` whose test process has ended (a child may still run from a live one's). */
function removeBundlesOfEndedProcesses(name: string): void {
  for (const entry of readdirSync(bundleDirectory)) {
    const match = /^(.+)\.(\d+)\.[0-9a-f-]{36}$/.exec(entry);
    if (match === null || match[1] !== name) continue;
    if (!processAlive(Number(match[2])))
      rmSync(join(bundleDirectory, entry), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
