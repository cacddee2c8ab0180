// An official Node.js build of a major line, from the npm registry (the package
// node-<platform>-<arch>, its newest MAJOR.x), cached under .cache/node-VERSION/package/ (bin/node,
// include/node). The suite runs on it (scripts/test-on-node.mjs) and the container suite's image is
// built with it (chaos/docker-image.ts). Run as `node scripts/official-node.mjs MAJOR`, it prints
// the binary's path, fetching it first when it is not cached.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repository = join(dirname(fileURLToPath(import.meta.url)), "..");
const name = `node-${process.platform}-${process.arch}`;

/** Why an official build could not be had: the message says what to do. */
export class OfficialNodeError extends Error {}

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
    throw new OfficialNodeError(
      /E404/.test(said)
        ? `the npm registry has no ${name}@${major}`
        : `cannot list ${name}@${major} on the npm registry: ${said.split("\n")[0] || error.message}`,
    );
  }
  const versions = (Array.isArray(listed) ? listed : [listed]).filter(
    (version) => typeof version === "string",
  );
  if (versions.length === 0) throw new OfficialNodeError(`the npm registry has no ${name}@${major}`);
  const parts = (version) => version.split(".").map(Number);
  return versions.sort((a, b) => {
    const [x, y] = [parts(a), parts(b)];
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  })[versions.length - 1];
}

/**
 * The newest MAJOR.x build, fetched into .cache/ when missing: its version, the directory of its
 * binary, the binary, and its C headers (what node-gyp builds addons against).
 */
export function officialNode(major) {
  if (!/^[1-9][0-9]*$/.test(String(major)) || Number(major) < 20)
    throw new OfficialNodeError(
      `a Node major line is 20 or later, such as 22 or 24, not ${JSON.stringify(major)}`,
    );
  const version = newestOf(major);
  const home = join(repository, ".cache", `node-${version}`);
  const bin = join(home, "package", "bin");
  if (!existsSync(join(bin, "node"))) {
    const download = mkdtempSync(join(tmpdir(), "strongroom-node-"));
    try {
      process.stderr.write(`fetching ${name}@${version} from the npm registry\n`);
      const tarball = execFileSync(
        "npm",
        ["pack", `${name}@${version}`, "--pack-destination", download, "--loglevel=error"],
        { encoding: "utf8" },
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
  return { version, bin, node: join(bin, "node"), include: join(home, "package", "include", "node") };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    process.stdout.write(`${officialNode(process.argv[2] ?? "").node}\n`);
  } catch (error) {
    if (!(error instanceof OfficialNodeError)) throw error;
    process.stderr.write(`official-node: ${error.message}\nusage: node scripts/official-node.mjs MAJOR\n`);
    process.exit(1);
  }
}
