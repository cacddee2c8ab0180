// `strongroom --version` prints the version in package.json, from wherever the CLI runs: here the
// tests' bundle under node_modules/.cache, whose package.json is the checkout's, several levels up.
// Only before a command: `kv get PATH --version N` keeps its own meaning.

import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { bundledCli } from "../server/process-cluster.js";
import { runCli } from "./cli-runner.js";

it("prints the version and exits 0, with --version or -V", async () => {
  const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  expect(version).toMatch(/^\d+\.\d+\.\d+/);
  const cli = await bundledCli();
  for (const flag of ["--version", "-V"]) {
    expect(await runCli(cli, [flag], "", {})).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: "" });
  }
  // After a command, --version is that command's own flag (a secret's version), not this one.
  expect(
    await runCli(cli, ["kv", "get", "app/x", "--version", "1"], "", { STRONGROOM_ADDR: "" }),
  ).toMatchObject({
    code: 2,
    stdout: "",
    stderr: "strongroom: STRONGROOM_ADDR is not set (or pass --addr)\n",
  });
}, 60_000);
