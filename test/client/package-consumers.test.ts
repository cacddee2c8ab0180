// The SDK as a package: built the way `npm ci` builds it (tsc, tsconfig.build.json), installed
// under node_modules/strongroom of a consumer, and loaded by plain Node from an ES module
// (`import`) and from CommonJS (`require`): both get a working createClient and StrongroomError.

import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { TestPki } from "../server/pki-fixture.js";

const run = promisify(execFile);
const repository = new URL("../..", import.meta.url).pathname;
const root = mkdtempSync(join(tmpdir(), "strongroom-package-"));
const pki = new TestPki("package");
const app = join(root, "app");

beforeAll(async () => {
  const pkg = join(root, "pkg");
  mkdirSync(pkg, { recursive: true });
  await run(
    process.execPath,
    [
      join(repository, "node_modules/typescript/bin/tsc"),
      "-p",
      "tsconfig.build.json",
      "--outDir",
      join(pkg, "dist"),
    ],
    {
      cwd: repository,
    },
  );
  copyFileSync(join(repository, "package.json"), join(pkg, "package.json"));
  symlinkSync(join(repository, "node_modules"), join(pkg, "node_modules"));
  mkdirSync(join(app, "node_modules"), { recursive: true });
  symlinkSync(pkg, join(app, "node_modules", "strongroom"));
}, 120_000);

afterAll(() => {
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

/** A consumer that calls a node that is not there: the SDK answers with a typed error. */
function consumer(load: string): string {
  const files = pki.client("consumer");
  return `${load}
const client = createClient({
  endpoints: ["127.0.0.1:1"],
  tls: { caFile: ${JSON.stringify(files.caFile)}, certFile: ${JSON.stringify(files.certificateFile)}, keyFile: ${JSON.stringify(files.privateKeyFile)} },
});
client.sys.sealStatus({}, { deadlineMs: 500 }).then(
  () => console.log("unexpected answer"),
  (error) => {
    // No node there: unreachable, whichever of the two the deadline ends on.
    console.log(error instanceof StrongroomError, ["UNAVAILABLE", "DEADLINE_EXCEEDED"].includes(error.statusName));
    client.close();
  },
);
`;
}

it("works from an ES module", async () => {
  writeFileSync(
    join(app, "esm.mjs"),
    consumer('import { createClient, StrongroomError } from "strongroom";'),
  );
  const { stdout } = await run(process.execPath, [join(app, "esm.mjs")], { cwd: app });
  expect(stdout).toBe("true true\n");
});

it("works from CommonJS", async () => {
  writeFileSync(
    join(app, "cjs.cjs"),
    consumer('const { createClient, StrongroomError } = require("strongroom");'),
  );
  const { stdout } = await run(process.execPath, [join(app, "cjs.cjs")], { cwd: app });
  expect(stdout).toBe("true true\n");
});
