// An official Node.js build of a major line, from the npm registry (the package
// node-<platform>-<arch>, its newest MAJOR.x), cached under .cache/node-VERSION/package/ (bin/node,
// include/node; STRONGROOM_NODE_CACHE names another directory). The suite runs on it
// (scripts/test-on-node.mjs) and the container suite's image is built with it
// (chaos/docker-image.ts). Run as `node scripts/official-node.mjs MAJOR`, it prints the binary's
// path, fetching it first when it is not cached. The registry is asked for the newest MAJOR.x each
// time, so a new release is picked up; when it cannot be asked (a machine offline), the newest
// build of the line in the cache is used, with a warning.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repository = join(dirname(fileURLToPath(import.meta.url)), "..");
const name = `node-${process.platform}-${process.arch}`;

/** Where fetched builds are kept: STRONGROOM_NODE_CACHE, or .cache/ in the repository. */
function cacheDirectory() {
  return process.env.STRONGROOM_NODE_CACHE || join(repository, ".cache");
}

/** Orders versions "x.y.z" oldest first. */
function byVersion(a, b) {
  const [x, y] = [a.split(".").map(Number), b.split(".").map(Number)];
  return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
}

/** The newest build of the MAJOR line in `cache` with its binary in place, or undefined. */
function newestCached(cache, major) {
  let entries;
  try {
    entries = readdirSync(cache);
  } catch {
    return undefined;
  }
  const versions = entries
    .map((entry) => /^node-([0-9]+)\.[0-9]+\.[0-9]+$/.exec(entry))
    .filter((found) => found !== null && found[1] === String(major))
    .map((found) => found[0].slice("node-".length))
    .filter((version) => existsSync(join(cache, `node-${version}`, "package", "bin", "node")));
  return versions.sort(byVersion).at(-1);
}

/** Why an official build could not be had: the message says what to do. */
export class OfficialNodeError extends Error {
  /** The major line asked for was not one (rather than the registry or the cache failing). */
  badArgument = false;
}

/** The newest published version of `name` in the MAJOR line. */
function newestOf(major) {
  let listed;
  try {
    listed = JSON.parse(
      // Retried twice within seconds, not npm's default of about 70 s: an offline machine falls
      // back to its cache without the wait.
      execFileSync(
        "npm",
        [
          "view",
          `${name}@${major}`,
          "version",
          "--json",
          "--loglevel=error",
          "--fetch-retries=2",
          "--fetch-retry-mintimeout=1000",
          "--fetch-retry-maxtimeout=4000",
        ],
        {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "pipe"],
        },
      ) || "[]",
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
  return versions.sort(byVersion)[versions.length - 1];
}

/**
 * The newest MAJOR.x build, fetched into .cache/ when missing: its version, the directory of its
 * binary, the binary, and its C headers (what node-gyp builds addons against).
 */
export function officialNode(major) {
  if (!/^[1-9][0-9]*$/.test(String(major)) || Number(major) < 20) {
    const error = new OfficialNodeError(
      `a Node major line is 20 or later, such as 22 or 24, not ${JSON.stringify(major)}`,
    );
    error.badArgument = true;
    throw error;
  }
  const cache = cacheDirectory();
  let version;
  try {
    version = newestOf(major);
  } catch (error) {
    if (!(error instanceof OfficialNodeError)) throw error;
    version = newestCached(cache, major);
    if (version === undefined)
      throw new OfficialNodeError(`${error.message}, and no ${major}.x build is cached in ${cache}`);
    process.stderr.write(`official-node: ${error.message}; using the cached ${name}@${version}\n`);
  }
  const home = join(cache, `node-${version}`);
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
    // The usage line only when the argument was at fault, not the registry or the cache.
    const usage = error.badArgument ? "usage: node scripts/official-node.mjs MAJOR\n" : "";
    process.stderr.write(`official-node: ${error.message}\n${usage}`);
    process.exit(1);
  }
}
