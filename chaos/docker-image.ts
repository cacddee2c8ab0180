// The strongroom image for the container suite and the chaos harness's docker driver, built from
// what this machine has. No registry is reachable, so the base image is a Debian root filesystem
// made by debootstrap from Debian's packages, with a Node runtime and its headers (node-gyp builds
// pkcs11js against them), this machine's npm and CA bundle (the npm registry is reached through the
// machine's TLS proxy), loaded with `docker import`. The Node is the line deploy/Dockerfile's
// RUNTIME_IMAGE names, an official build from the npm registry (scripts/official-node.mjs), so that
// the suite runs what the published image ships. deploy/Dockerfile is then built on it, unchanged
// but for its base-image arguments. The base image is tagged by what went into it and
// reused while that is unchanged; the node image is rebuilt each time (Docker's layer cache keeps
// that short when the sources did not change).

import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const repository = new URL("../", import.meta.url).pathname;
/** What the base image needs: tini for the runtime stage, a compiler for the build stage. */
const basePackages = ["tini", "ca-certificates", "python3", "make", "g++"];

/** Fails with one clear line when no Docker engine answers. */
export async function requireDocker(): Promise<string> {
  try {
    const { stdout } = await run("docker", ["version", "--format", "{{.Server.Version}}"], {
      timeout: 15_000,
    });
    return stdout.trim();
  } catch (error) {
    const reason = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    throw new Error(
      `the container suite needs a Docker engine, and none answers (${reason.split("\n")[0]}); on Debian: apt-get install docker.io && dockerd &`,
    );
  }
}

async function imageExists(tag: string): Promise<boolean> {
  return run("docker", ["image", "inspect", tag]).then(
    () => true,
    () => false,
  );
}

/** The Debian mirror this machine's apt uses (the same packages, the same reachability). */
function debianMirror(): string {
  for (const file of ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]) {
    if (!existsSync(file)) continue;
    const found = /(?:URIs:|^deb)\s+(https?:\/\/\S+\/debian)\s*$/m.exec(readFileSync(file, "utf8"));
    if (found?.[1] !== undefined) return found[1];
  }
  return "http://deb.debian.org/debian";
}

/** The Node major line deploy/Dockerfile's runtime stage is on by default (its RUNTIME_IMAGE, node:MAJOR-...). */
export function dockerfileNodeMajor(): string {
  const dockerfile = readFileSync(join(repository, "deploy", "Dockerfile"), "utf8");
  const major = /^ARG RUNTIME_IMAGE=node:([0-9]+)-/m.exec(dockerfile)?.[1];
  if (major === undefined) throw new Error("deploy/Dockerfile names no node:MAJOR-... RUNTIME_IMAGE");
  return major;
}

interface ImageNode {
  readonly binary: string;
  readonly headers: string;
  readonly version: string;
}

/**
 * The Node the base image gets: STRONGROOM_IMAGE_NODE (a node binary, its headers in
 * ../include/node) when set, else an official build of the Dockerfile's line.
 */
async function imageNode(log: (line: string) => void): Promise<ImageNode> {
  let binary = process.env.STRONGROOM_IMAGE_NODE ?? "";
  if (binary === "") {
    const major = dockerfileNodeMajor();
    log(`Node ${major} for the image (deploy/Dockerfile's line), from scripts/official-node.mjs`);
    const fetched = await run(process.execPath, [join(repository, "scripts", "official-node.mjs"), major], {
      timeout: 600_000,
    }).catch((error: { stderr?: string; message: string }) => {
      throw new Error(`no Node ${major} for the image: ${error.stderr?.trim() || error.message}`);
    });
    binary = fetched.stdout.trim();
  }
  const { stdout } = await run(binary, ["--version"]).catch((error: Error) => {
    throw new Error(`the image's Node ${binary} does not run: ${error.message.split("\n")[0]}`);
  });
  return { binary, headers: join(dirname(binary), "..", "include", "node"), version: stdout.trim() };
}

/** The base image: Debian bookworm (minbase) with the image's Node, this machine's npm and CA bundle. */
export async function baseImage(log: (line: string) => void): Promise<string> {
  const node = await imageNode(log);
  const npmDirectory = "/usr/lib/node_modules/npm";
  const headers = node.headers;
  const caBundle = "/etc/ssl/certs/ca-certificates.crt";
  for (const path of [npmDirectory, headers, caBundle]) {
    if (!existsSync(path))
      throw new Error(`the base image needs ${path} from this machine, and it is missing`);
  }
  const tag = `strongroom-test-base:${createHash("sha256")
    .update([node.version, basePackages.join(","), readFileSync(caBundle, "utf8")].join("\n"))
    .digest("hex")
    .slice(0, 16)}`;
  if (await imageExists(tag)) return tag;
  const root = mkdtempSync(join(tmpdir(), "strongroom-rootfs-"));
  try {
    log(`debootstrap bookworm into ${root} (${basePackages.join(", ")})`);
    await run(
      "debootstrap",
      ["--variant=minbase", `--include=${basePackages.join(",")}`, "bookworm", root, debianMirror()],
      { timeout: 900_000, maxBuffer: 64 * 1024 * 1024 },
    );
    cpSync(node.binary, join(root, "usr/bin/node"));
    cpSync(npmDirectory, join(root, "usr/lib/node_modules/npm"), { recursive: true, verbatimSymlinks: true });
    for (const [command, script] of [
      ["npm", "npm-cli.js"],
      ["npx", "npx-cli.js"],
    ] as const) {
      await run("ln", ["-sf", `../lib/node_modules/npm/bin/${script}`, join(root, "usr/bin", command)]);
    }
    cpSync(headers, join(root, "usr/include/node"), { recursive: true });
    cpSync(caBundle, join(root, "etc/ssl/certs/ca-certificates.crt"));
    mkdirSync(join(root, "usr/etc"), { recursive: true });
    writeFileSync(join(root, "usr/etc/npmrc"), "cafile=/etc/ssl/certs/ca-certificates.crt\nnodedir=/usr\n");
    rmSync(join(root, "var/cache/apt/archives"), { recursive: true, force: true });
    log(`docker import ${tag}`);
    await new Promise<void>((resolve, reject) => {
      const tar = spawn("tar", ["-C", root, "-c", "."], { stdio: ["ignore", "pipe", "inherit"] });
      const load = spawn("docker", ["import", "-", tag], { stdio: ["pipe", "ignore", "inherit"] });
      tar.stdout.pipe(load.stdin);
      load.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`docker import exited ${code}`))));
      tar.on("error", reject);
      load.on("error", reject);
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return tag;
}

/**
 * The node image from deploy/Dockerfile on the base image (Docker's layer cache keeps a rebuild
 * of unchanged sources short); `softhsm: true` builds the SoftHSM variant.
 */
export async function nodeImage(
  log: (line: string) => void,
  variant: { readonly softhsm?: boolean } = {},
): Promise<string> {
  const base = await baseImage(log);
  const softhsm = variant.softhsm === true;
  const tag = softhsm ? "strongroom:containers-test-softhsm" : "strongroom:containers-test";
  log(`docker build -f deploy/Dockerfile -t ${tag} (on ${base})`);
  // The build stage fetches from the npm registry: host networking, as the machine reaches it.
  await run(
    "docker",
    [
      "build",
      "--network",
      "host",
      "-f",
      "deploy/Dockerfile",
      "--build-arg",
      `BUILD_IMAGE=${base}`,
      "--build-arg",
      `RUNTIME_IMAGE=${base}`,
      "--build-arg",
      `WITH_SOFTHSM=${softhsm}`,
      "-t",
      tag,
      ".",
    ],
    { cwd: repository, timeout: 900_000, maxBuffer: 64 * 1024 * 1024 },
  ).catch((error: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(
      `docker build failed: ${error.message}\n${(error.stdout ?? "").slice(-4000)}${(error.stderr ?? "").slice(-4000)}`,
    );
  });
  return tag;
}
