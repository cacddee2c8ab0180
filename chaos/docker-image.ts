// The strongroom image for the container suite and the chaos harness's docker driver, built from
// what this machine has. No registry is reachable, so the base image is a Debian root filesystem
// made by debootstrap from Debian's packages, with this machine's own Node runtime, npm, Node
// headers (node-gyp builds pkcs11js against them) and CA bundle (the npm registry is reached
// through the machine's TLS proxy), loaded with `docker import`. deploy/Dockerfile is then built on
// it, unchanged but for its base-image arguments. The base image is tagged by what went into it and
// reused while that is unchanged; the node image is rebuilt each time (Docker's layer cache keeps
// that short when the sources did not change).

import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

/** The base image: Debian bookworm (minbase) with this machine's Node, npm and CA bundle. */
export async function baseImage(log: (line: string) => void): Promise<string> {
  const nodeBinary = process.execPath;
  const npmDirectory = "/usr/lib/node_modules/npm";
  const headers = "/usr/include/node";
  const caBundle = "/etc/ssl/certs/ca-certificates.crt";
  for (const path of [npmDirectory, headers, caBundle]) {
    if (!existsSync(path))
      throw new Error(`the base image needs ${path} from this machine, and it is missing`);
  }
  const tag = `strongroom-test-base:${createHash("sha256")
    .update([process.version, basePackages.join(","), readFileSync(caBundle, "utf8")].join("\n"))
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
    cpSync(nodeBinary, join(root, "usr/bin/node"));
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
