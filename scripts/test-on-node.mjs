// `npm run test:node -- MAJOR [vitest arguments]`: `npm test` on another Node.js major, such as 22
// or 24 (the package needs 20.19 or later and is kept working on the newer lines). That Node's
// official build comes from the npm registry (the package node-<platform>-<arch>, its newest
// MAJOR.x), is cached under .cache/node-VERSION/, and goes first on PATH, so that the suite and
// every process it starts (nodes, the CLI, chaos runs: process.execPath) run on it. The native
// addons npm ci built (classic-level, pkcs11js) are Node-API modules, which every version loads.

import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const [major = "", ...vitestArguments] = process.argv.slice(2);
if (!/^[1-9][0-9]*$/.test(major) || Number(major) < 20) {
  process.stderr.write(
    "usage: npm run test:node -- MAJOR [vitest arguments]   (MAJOR: 20 or later, such as 22 or 24)\n",
  );
  process.exit(2);
}

const repository = join(dirname(fileURLToPath(import.meta.url)), "..");
const name = `node-${process.platform}-${process.arch}`;

/** The newest published version of `name` in the MAJOR line. */
function newestOf(major) {
  let listed;
  try {
    listed = JSON.parse(
      execFileSync("npm", ["view", `${name}@${major}`, "version", "--json", "--loglevel=error"], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      }) || "[]",
    );
  } catch (error) {
    const said = String(error.stderr ?? "");
    process.stderr.write(
      /E404/.test(said)
        ? `test:node: the npm registry has no ${name}@${major}\n`
        : `test:node: cannot list ${name}@${major} on the npm registry: ${said.split("\n")[0] || error.message}\n`,
    );
    process.exit(1);
  }
  const versions = (Array.isArray(listed) ? listed : [listed]).filter(
    (version) => typeof version === "string",
  );
  if (versions.length === 0) {
    process.stderr.write(`test:node: the npm registry has no ${name}@${major}\n`);
    process.exit(1);
  }
  const parts = (version) => version.split(".").map(Number);
  return versions.sort((a, b) => {
    const [x, y] = [parts(a), parts(b)];
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  })[versions.length - 1];
}

const version = newestOf(major);
const home = join(repository, ".cache", `node-${version}`);
const bin = join(home, "package", "bin");
if (!existsSync(join(bin, "node"))) {
  const download = mkdtempSync(join(tmpdir(), "strongroom-node-"));
  try {
    process.stdout.write(`test:node: fetching ${name}@${version} from the npm registry\n`);
    const tarball = execFileSync(
      "npm",
      ["pack", `${name}@${version}`, "--pack-destination", download, "--loglevel=error"],
      {
        encoding: "utf8",
      },
    )
      .trim()
      .split("\n")
      .at(-1);
    mkdirSync(home, { recursive: true });
    execFileSync("tar", ["xzf", join(download, tarball), "-C", home]);
  } finally {
    rmSync(download, { recursive: true, force: true });
  }
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
