// `npm run test:node -- MAJOR [vitest arguments]`: `npm test` on another Node.js major, such as 22
// or 24 (the package needs 20.19 or later and is kept working on the newer lines). That Node's
// official build comes from the npm registry, cached under .cache/ (scripts/official-node.mjs), and
// goes first on PATH, so that the suite and every process it starts (nodes, the CLI, chaos runs:
// process.execPath) run on it. The native addons npm ci built (classic-level, pkcs11js) are Node-API
// modules, which every version loads.

import { execFileSync, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { OfficialNodeError, officialNode } from "./official-node.mjs";

const [major = "", ...vitestArguments] = process.argv.slice(2);
if (!/^[1-9][0-9]*$/.test(major) || Number(major) < 20) {
  process.stderr.write(
    "usage: npm run test:node -- MAJOR [vitest arguments]   (MAJOR: 20 or later, such as 22 or 24)\n",
  );
  process.exit(2);
}

const repository = join(dirname(fileURLToPath(import.meta.url)), "..");
let bin;
try {
  ({ bin } = officialNode(major));
} catch (error) {
  if (!(error instanceof OfficialNodeError)) throw error;
  process.stderr.write(`test:node: ${error.message}\n`);
  process.exit(1);
}

const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` };
const running = execFileSync(join(bin, "node"), ["--version"], { encoding: "utf8" }).trim();
process.stdout.write(`test:node: npm test on Node ${running} (${bin})\n`);
const result = spawnSync("npm", ["test", "--", ...vitestArguments], {
  cwd: repository,
  env,
  stdio: "inherit",
});
process.exit(result.status ?? 1);
