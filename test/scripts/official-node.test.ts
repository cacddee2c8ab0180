// scripts/official-node.mjs on a machine that cannot reach the npm registry: it uses the newest
// build of the line it has cached, and says so; with none cached, it says what it could not do.

import { execFile } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const script = join(import.meta.dirname, "..", "..", "scripts", "official-node.mjs");
const name = `node-${process.platform}-${process.arch}`;

let cache: string;

/** A cached build as the script leaves it: VERSION's package/bin/node, when `withBinary`. */
function cacheBuild(version: string, withBinary = true): void {
  const bin = join(cache, `node-${version}`, "package", "bin");
  mkdirSync(bin, { recursive: true });
  if (!withBinary) return;
  writeFileSync(join(bin, "node"), `#!/bin/sh\necho v${version}\n`);
  chmodSync(join(bin, "node"), 0o755);
}

/** The script for MAJOR with the registry unreachable (nothing listens on port 9 of loopback). */
function offline(major: string) {
  return run(process.execPath, [script, major], {
    env: { ...process.env, STRONGROOM_NODE_CACHE: cache, npm_config_registry: "http://127.0.0.1:9/" },
  });
}

beforeAll(() => {
  cache = mkdtempSync(join(tmpdir(), "strongroom-node-cache-"));
  cacheBuild("22.1.0");
  cacheBuild("22.10.0"); // newer than 22.9.x, though it sorts before it as text
  cacheBuild("22.9.3");
  cacheBuild("22.11.0", false); // a fetch cut short: no binary, not used
  cacheBuild("24.0.0");
});

afterAll(() => {
  rmSync(cache, { recursive: true, force: true });
});

describe.concurrent("official-node without the registry", () => {
  it("uses the newest cached build of the line, and warns", async () => {
    const { stdout, stderr } = await offline("22");
    expect(stdout.trim()).toBe(join(cache, "node-22.10.0", "package", "bin", "node"));
    expect(stderr).toContain(`official-node: cannot list ${name}@22 on the npm registry`);
    expect(stderr).toContain(`using the cached ${name}@22.10.0`);
  });

  it("fails, naming the cache, when no build of the line is cached", async () => {
    const failed = await offline("20").then(
      () => null,
      (error: { code: number; stderr: string; stdout: string }) => error,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stdout).toBe("");
    expect(failed?.stderr).toContain(`official-node: cannot list ${name}@20 on the npm registry`);
    expect(failed?.stderr).toContain(`and no 20.x build is cached in ${cache}`);
    expect(failed?.stderr).not.toContain("usage:");
  });

  it("refuses a line before 20, with its usage line", async () => {
    const failed = await offline("18").then(
      () => null,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toBe(
      'official-node: a Node major line is 20 or later, such as 22 or 24, not "18"\nusage: node scripts/official-node.mjs MAJOR\n',
    );
  });
});
