// deploy/systemd: the unit is one systemd accepts (systemd-analyze verify prints nothing for it,
// and does print for a unit with a mistake, so the check can fail), it runs the node as its own
// user with the hardening the docs promise, and it does not restart a node that refused its config.

import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, expect, it } from "vitest";

const run = promisify(execFile);
const unitFile = new URL("../../deploy/systemd/strongroom.service", import.meta.url).pathname;
const unit = readFileSync(unitFile, "utf8");
const root = mkdtempSync(join(tmpdir(), "strongroom-systemd-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** What systemd-analyze says about a unit file: nothing when it has no complaint. */
async function verify(path: string): Promise<string> {
  const { stdout, stderr } = await run("systemd-analyze", ["verify", path]).catch(
    (error: { stdout: string; stderr: string }) => error,
  );
  return `${stdout}${stderr}`.trim();
}

it("is a unit systemd accepts without a warning", async () => {
  expect(await verify(unitFile)).toBe("");
  // The same check, given a mistake, reports it.
  const broken = join(root, "strongroom.service");
  writeFileSync(broken, unit.replace("ProtectSystem=strict", "ProtectSystem=sometimes"));
  expect(await verify(broken)).toMatch(/protect system value/);
}, 30_000);

it("runs the node unprivileged and hardened, and stops it gracefully", () => {
  const settings = new Map<string, string[]>();
  for (const line of unit.split("\n")) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match === null) continue;
    const [, key = "", value = ""] = match;
    settings.set(key, [...(settings.get(key) ?? []), value]);
  }
  const one = (key: string) => settings.get(key)?.at(-1);
  expect(one("ExecStart")).toMatch(/strongroom\.js server --config \/etc\/strongroom\/config\.yaml$/);
  // V8's young generation at Node 20's size whatever Node the host has, as in the image.
  expect(one("ExecStart")).toMatch(
    /^\/usr\/bin\/node --max-semi-space-size=16 \/opt\/strongroom\/bin\/strongroom\.js /,
  );
  expect(one("User")).toBe("strongroom");
  for (const [key, value] of [
    ["NoNewPrivileges", "yes"],
    ["ProtectSystem", "strict"],
    ["ProtectHome", "yes"],
    ["PrivateTmp", "yes"],
    ["PrivateDevices", "yes"],
    ["RestrictSUIDSGID", "yes"],
    ["CapabilityBoundingSet", ""],
    ["LimitCORE", "0"],
    ["UMask", "0077"],
    ["StateDirectory", "strongroom"],
    ["StateDirectoryMode", "0700"],
    ["KillSignal", "SIGTERM"],
    // A refused config exits 2: restarting would refuse it again.
    ["RestartPreventExitStatus", "2"],
  ] as const) {
    expect(one(key), key).toBe(value);
  }
  // Longer than the node's graceful stop (leader handover and 5 s for calls in flight).
  expect(Number.parseInt(one("TimeoutStopSec") ?? "0", 10)).toBeGreaterThan(10);
});
