// How the benchmarks start strongroom nodes: the compiled CLI under plain node, as
// `bin/strongroom.js` runs it for users, not the TypeScript sources through tsx. tsx's loader runs
// in a thread of its own with its own V8 heap (about 37 MiB more RSS per process, measured on an
// idle node: 123-125 MiB against 87) and would be counted as the server's memory. dist/ is built
// from the sources first (about 10 s), so the nodes always run the code of this checkout.

import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/**
 * Builds dist/ (`tsc -p tsconfig.build.json`, as `npm run build`) and says how to run the CLI: with
 * `node` (default: the Node that runs the benchmark) and its `nodeOptions`.
 */
export function builtServerCommand(nodeOptions: readonly string[] = [], node = process.execPath): string[] {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  const built = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], {
    cwd: root,
    encoding: "utf8",
  });
  if (built.status !== 0)
    throw new Error(`building dist/ failed (npm run build):\n${built.stdout}${built.stderr}`);
  return [node, ...nodeOptions, join(root, "dist", "cli", "main.js")];
}
