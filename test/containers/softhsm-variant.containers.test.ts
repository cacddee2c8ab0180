// The image's SoftHSM variant (--build-arg WITH_SOFTHSM=true), as the node's user on a read-only
// root: softhsm2-util initializes a token in a mounted directory, and pkcs11js, the native addon
// built into the image, loads SoftHSM2's module and sees that token's slot.

import { execFile } from "node:child_process";
import { chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, expect, it } from "vitest";
import { nodeImage, requireDocker } from "../../chaos/docker-image.js";

const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), "strongroom-softhsm-variant-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

it("has SoftHSM2, usable by the node's user on a read-only root", async () => {
  await requireDocker();
  const image = await nodeImage((line) => process.stdout.write(`softhsm variant: ${line}\n`), {
    softhsm: true,
  });
  const tokens = join(root, "tokens");
  mkdirSync(tokens);
  chownSync(tokens, 10001, 10001);
  writeFileSync(
    join(root, "softhsm2.conf"),
    "directories.tokendir = /var/lib/softhsm-tokens\nobjectstore.backend = file\n",
  );
  const docker = (args: string[]) =>
    run(
      "docker",
      [
        "run",
        "--rm",
        "--read-only",
        "--network",
        "none",
        "--user",
        "10001:10001",
        "--env",
        "SOFTHSM2_CONF=/etc/softhsm2-test.conf",
        "--volume",
        `${join(root, "softhsm2.conf")}:/etc/softhsm2-test.conf:ro`,
        "--volume",
        `${tokens}:/var/lib/softhsm-tokens`,
        ...args,
      ],
      { timeout: 120_000 },
    );
  await docker([
    "--entrypoint",
    "softhsm2-util",
    image,
    "--init-token",
    "--free",
    "--label",
    "strongroom-variant",
    "--pin",
    "1234",
    "--so-pin",
    "5678",
  ]);
  const { stdout } = await docker(["--entrypoint", "softhsm2-util", image, "--show-slots"]);
  expect(stdout).toMatch(/Label:\s+strongroom-variant/);
  // The module a seal config names, through the image's own pkcs11js build.
  const probe = [
    "const { PKCS11 } = require('/app/node_modules/pkcs11js');",
    "const module = new PKCS11();",
    "module.load('/usr/lib/softhsm/libsofthsm2.so');",
    "module.C_Initialize();",
    "const slots = module.C_GetSlotList(true);",
    "process.stdout.write(module.C_GetTokenInfo(slots[0]).label.trim());",
    "module.C_Finalize();",
  ].join(" ");
  const loaded = await docker(["--entrypoint", "node", image, "-e", probe]);
  expect(loaded.stdout.trim()).toBe("strongroom-variant");
}, 900_000);
