// `npm start` as a newcomer meets it: `strongroom dev` starts three real nodes, makes a dev PKI,
// initializes and unseals the cluster, and says how to talk to it; `strongroom kv put | get` and
// `operator status` do so with the env file it wrote; Ctrl-C stops it cleanly, and the next start
// finds the data and the shares and unseals again.

import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bundledCli } from "../server/process-cluster.js";
import { type CliResult, runNode } from "./cli-runner.js";

const directory = mkdtempSync(join(tmpdir(), "strongroom-dev-"));
const basePort = 41_000;
let cli = "";
let dev: ChildProcess | null = null;
let devOutput = "";

beforeAll(async () => {
  cli = await bundledCli();
}, 60_000);
afterAll(() => {
  dev?.kill("SIGKILL");
  rmSync(directory, { recursive: true, force: true });
});

function startDev(extra: string[] = []): Promise<void> {
  devOutput = "";
  const child = spawn(
    process.execPath,
    [cli, "dev", "--dir", directory, "--host", "127.0.0.240", "--base-port", String(basePort), ...extra],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  dev = child;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dev did not get ready:\n${devOutput}`)), 60_000);
    child.stdout?.on("data", (chunk: Buffer) => {
      devOutput += chunk.toString();
      if (devOutput.includes("strongroom dev cluster ready\n")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      devOutput += chunk.toString();
    });
    child.on("exit", (code) => reject(new Error(`dev exited with ${code}:\n${devOutput}`)));
  });
}

function stopDev(): Promise<number | null> {
  const child = dev;
  dev = null;
  if (child === null) return Promise.resolve(null);
  return new Promise((resolve) => {
    child.on("exit", (code) => resolve(code));
    child.kill("SIGINT");
  });
}

function modeOf(file: string): number {
  return statSync(file).mode & 0o777;
}

/** The env the dev cluster wrote (export NAME=value lines). */
function devEnv(): Record<string, string> {
  const text = readFileSync(join(directory, "env"), "utf8");
  return Object.fromEntries(
    text
      .split("\n")
      .filter((line) => line.startsWith("export "))
      .map((line) => line.slice("export ".length).split("=", 2) as [string, string]),
  );
}

/** Runs `strongroom ARGS` (the bundled CLI) in the dev cluster's env, with `input` on stdin. */
function strongroom(
  args: string[],
  input?: string,
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runNodeInDev([cli, ...args], input, env);
}

/** Runs node with `args` in the dev cluster's env (the root token in STRONGROOM_TOKEN). */
function runNodeInDev(args: string[], input?: string, env: Record<string, string> = {}): Promise<CliResult> {
  return runNode(args, input ?? "", { ...devEnv(), ...env });
}

it("starts an initialized, unsealed cluster to talk to, stops cleanly, and comes back unsealed", async () => {
  await startDev();
  expect(devOutput).toMatch(/started 3 nodes on 127\.0\.0\.240/);
  // SoftHSM2 is installed where the tests run (npm test's pre-step sees to it): the dev seal is the HSM.
  expect(devOutput).toMatch(/initialized with the SoftHSM seal .*3 recovery shares \(threshold 2\)/);
  expect(devOutput).toMatch(/unsealed 3 nodes \(by the HSM\)/);
  expect(devOutput).toMatch(/ready: every node is initialized and unsealed/);
  expect(devOutput).toMatch(/\nstrongroom dev cluster ready\n/);
  expect(devOutput).not.toMatch(/DEP0123/);
  // `npm start` again while it runs: one line naming the port and what to do, not a stack trace.
  const again = await strongroom([
    "dev",
    "--dir",
    join(directory, "second"),
    "--host",
    "127.0.0.240",
    "--base-port",
    String(basePort),
  ]);
  expect(again.code).toBe(1);
  // That line alone: not grpc-js's own "E No address added out of total 1 resolved" before it.
  expect(again.stderr).toBe(
    `strongroom dev: cannot listen on 127.0.0.240:${basePort + 1} (listen.peer): the port is in use (another process listens there); is a dev cluster running already? Stop it, or give --base-port\n`,
  );
  // A base port whose last node's ports would pass 65535: a usage error before anything starts.
  expect(await strongroom(["dev", "--dir", join(directory, "second"), "--base-port", "65530"])).toMatchObject(
    {
      code: 2,
      stderr: "strongroom dev: --base-port must be at most 65513 for 3 nodes\n",
    },
  );

  const put = await strongroom(["kv", "put", "app/db"], "s3cr3t");
  expect(put).toMatchObject({
    code: 0,
    stdout: expect.stringMatching(/^app\/db: version 1 \(revision \d+\)\n$/),
  });
  const hidden = await strongroom(["kv", "get", "app/db"]);
  expect(hidden.code).toBe(0);
  expect(hidden.stdout).toMatch(/^app\/db: version 1, 6 bytes, created .* \(--reveal to show the value\)\n$/);
  expect(hidden.stdout).not.toContain("s3cr3t");
  expect(await strongroom(["kv", "get", "app/db", "--reveal"])).toMatchObject({ code: 0, stdout: "s3cr3t" });
  const missing = await strongroom(["kv", "get", "app/none"]);
  expect(missing).toMatchObject({ code: 1, stderr: "strongroom: no secret at app/none (NOT_FOUND)\n" });
  const status = await strongroom(["operator", "status"]);
  expect(status.code).toBe(0);
  expect(status.stdout).toMatch(/^sealed +false$/m);
  // A usage problem (no address to talk to) exits 2.
  const noAddress = await strongroom(["kv", "put", "app/x", "--addr", ""], "v");
  expect(noAddress).toMatchObject({ code: 2, stderr: expect.stringMatching(/STRONGROOM_ADDR is not set/) });

  await accessFromTheCommandLine();

  // The example commands it printed, run as printed (from the repository, in its env).
  const printed = devOutput
    .slice(devOutput.indexOf("talk to it"))
    .split("\n")
    .filter((line) => line.startsWith("  ") && line.includes("cli/main.ts"))
    .map((line) => line.trim());
  expect(printed.length).toBeGreaterThanOrEqual(4);
  for (const command of printed) {
    const ran = await runNodeInDev([
      "-e",
      `require("child_process").execSync(${JSON.stringify(command)}, { stdio: "inherit" })`,
    ]);
    expect(ran, `${command}: ${ran.stderr}`).toMatchObject({ code: 0 });
  }

  // The README's SDK example, as it is written there, against this cluster.
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const example = /## From an application[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
  const exampleFile = join(directory, "readme-example.mts");
  writeFileSync(
    exampleFile,
    example.replace(
      'from "strongroom"',
      `from ${JSON.stringify(new URL("../../client/index.ts", import.meta.url).pathname)}`,
    ),
  );
  const tsx = new URL("../../node_modules/tsx/dist/cli.mjs", import.meta.url).pathname;
  const ran = await runNodeInDev([tsx, exampleFile]);
  expect(ran).toMatchObject({ code: 0, stdout: expect.stringMatching(/^\d+ hello\n$/) });

  expect(await stopDev()).toBe(0);
  // Closed cleanly, n1's audit trail verifies with the audit key `audit key` gave, and not with another.
  const auditDirectory = join(directory, "data", "n1", "audit");
  const files = readdirSync(auditDirectory).map((name) => join(auditDirectory, name));
  const verified = await strongroom([
    "audit",
    "verify",
    ...files,
    "--key-file",
    join(directory, "audit.key"),
  ]);
  expect(verified).toMatchObject({ code: 0, stdout: expect.stringMatching(/checkpoints: intact\n$/) });
  writeFileSync(join(directory, "other.key"), "ab".repeat(32));
  const forged = await strongroom(["audit", "verify", ...files, "--key-file", join(directory, "other.key")]);
  expect(forged).toMatchObject({
    code: 1,
    stdout: expect.stringContaining("the checkpoint's MAC does not match"),
  });
  // The env file holds the root token, the shares file the recovery shares: their owner's only,
  // and the env file made so again when the next start rewrites it.
  expect(modeOf(join(directory, "env"))).toBe(0o600);
  expect(modeOf(join(directory, "dev-unseal-shares.json"))).toBe(0o600);
  chmodSync(join(directory, "env"), 0o644);
  await startDev();
  expect(modeOf(join(directory, "env"))).toBe(0o600);
  expect(devOutput).not.toMatch(/initialized with/);
  expect(devOutput).toMatch(/unsealed 3 nodes/);
  expect(await strongroom(["kv", "get", "app/db", "--reveal"])).toMatchObject({ code: 0, stdout: "s3cr3t" });
  expect(await stopDev()).toBe(0);

  // --reset starts afresh: a new cluster, without the old secret.
  await startDev(["--reset", "--seal", "shamir"]);
  expect(devOutput).toMatch(/initialized with 3 Shamir shares \(threshold 2\)/);
  expect(await strongroom(["kv", "get", "app/db"])).toMatchObject({
    code: 1,
    stderr: expect.stringContaining("(NOT_FOUND)"),
  });
  expect(await stopDev()).toBe(0);
}, 120_000);

/** Policies, bindings, tokens and a new root token, through the CLI against the dev cluster. */
async function accessFromTheCommandLine(): Promise<void> {
  const policy = "name: app-reader\nrules:\n  - path: app/*\n    capabilities: [read, list]\n";
  expect(await strongroom(["policy", "write", "app-reader"], policy)).toMatchObject({
    code: 0,
    stdout: expect.stringMatching(/^policy app-reader written \(revision \d+\)\n$/),
  });
  expect((await strongroom(["policy", "list"])).stdout).toBe("root\napp-reader\n");
  expect((await strongroom(["policy", "read", "app-reader"])).stdout).toBe(policy);
  const bad = await strongroom(
    ["policy", "write", "bad"],
    "name: bad\nrules:\n  - path: a/*\n    capabilities: [fly]\n",
  );
  expect(bad).toMatchObject({ code: 1, stderr: expect.stringContaining('unknown capability "fly"') });
  expect((await strongroom(["policy", "bind", "ci-*", "app-reader"])).code).toBe(0);
  expect((await strongroom(["policy", "bindings"])).stdout).toMatch(/^ci-\* +app-reader$/m);
  // For scripts, as every client command: JSON (or YAML).
  expect(JSON.parse((await strongroom(["policy", "list", "--format", "json"])).stdout)).toEqual({
    names: ["root", "app-reader"],
  });
  expect(
    JSON.parse((await strongroom(["policy", "read", "app-reader", "--format", "json"])).stdout),
  ).toMatchObject({ name: "app-reader", document: policy });
  expect(JSON.parse((await strongroom(["policy", "bindings", "--format", "json"])).stdout)).toMatchObject({
    bindings: [{ identity: "ci-*", policies: ["app-reader"] }],
  });
  expect((await strongroom(["policy", "bindings", "--format", "xml"])).code).toBe(2);
  // The dev PKI keeps its CA keys: a certificate for another identity, which the binding grants.
  const pkiDirectory = join(directory, "pki");
  expect(await strongroom(["pki", "client", "ci-build", "--dir", pkiDirectory])).toMatchObject({ code: 0 });
  const asCi = {
    STRONGROOM_CLIENT_CERT: join(pkiDirectory, "ci-build.pem"),
    STRONGROOM_CLIENT_KEY: join(pkiDirectory, "ci-build-key.pem"),
    STRONGROOM_TOKEN: "",
  };
  expect(await strongroom(["kv", "get", "app/db", "--reveal"], "", asCi)).toMatchObject({
    code: 0,
    stdout: "s3cr3t",
  });
  expect(await strongroom(["kv", "put", "app/db"], "nope", asCi)).toMatchObject({
    code: 1,
    stderr: expect.stringContaining("(PERMISSION_DENIED)"),
  });
  // Never over an existing certificate: here, a node's.
  expect(await strongroom(["pki", "client", "n1", "--dir", pkiDirectory])).toMatchObject({
    code: 2,
    stderr: expect.stringContaining(`${join(pkiDirectory, "n1.pem")} exists: it is not overwritten`),
  });

  const created = await strongroom([
    "token",
    "create",
    "--policy",
    "app-reader",
    "--ttl",
    "1h",
    "--max-ttl",
    "2h",
    "--renewable",
  ]);
  expect(created.code).toBe(0);
  const token = /^token +(sr\.\S+)$/m.exec(created.stdout)?.[1] ?? "";
  expect(token).not.toBe("");
  expect(created.stdout).toMatch(/^policies +app-reader$/m);
  const asReader = { STRONGROOM_TOKEN: token };
  expect(await strongroom(["kv", "get", "app/db", "--reveal"], "", asReader)).toMatchObject({
    code: 0,
    stdout: "s3cr3t",
  });
  const write = await strongroom(["kv", "put", "app/db"], "nope", asReader);
  expect(write).toMatchObject({ code: 1, stderr: expect.stringContaining("(PERMISSION_DENIED)") });
  expect((await strongroom(["token", "lookup"], "", asReader)).stdout).toMatch(/^renewable +true$/m);
  // A renewal within the max TTL says nothing more; one the max TTL cuts short says so.
  const renewed = await strongroom(["token", "renew", "--increment", "30m"], "", asReader);
  expect(renewed).toMatchObject({ code: 0, stderr: "" });
  expect(renewed.stdout).toMatch(/^renewable until +\d{4}-\d\d-\d\dT/m);
  const capped = await strongroom(["token", "renew", "--increment", "3h"], "", asReader);
  expect(capped.code).toBe(0);
  const until = /^renewable until +(\S+)$/m.exec(capped.stdout)?.[1];
  expect(capped.stdout).toMatch(new RegExp(`^expires +${until}$`, "m"));
  expect(capped.stderr).toBe(
    `strongroom: the renewal stops at the token's max TTL: it expires at ${until} and cannot be renewed further; create a new token before then\n`,
  );
  // For scripts: the token and its description as JSON.
  const described = await strongroom(["token", "lookup", "--format", "json"], "", asReader);
  expect(JSON.parse(described.stdout)).toMatchObject({
    policies: ["app-reader"],
    renewable: true,
    useLimited: false,
  });
  const scripted = await strongroom([
    "token",
    "create",
    "--policy",
    "app-reader",
    "--uses",
    "2",
    "--format",
    "json",
  ]);
  expect(JSON.parse(scripted.stdout)).toMatchObject({
    token: expect.stringMatching(/^sr\./),
    info: { usesLeft: 2, useLimited: true },
  });
  expect((await strongroom(["token", "revoke"], "", asReader)).code).toBe(0);
  const revoked = await strongroom(["kv", "get", "app/db"], "", asReader);
  expect(revoked).toMatchObject({ code: 1, stderr: expect.stringContaining("(TOKEN_INVALID)") });
  expect((await strongroom(["token", "create", "--ttl", "5x"])).code).toBe(2);
  expect(await strongroom(["token", "create", "--ttl", "3h", "--max-ttl", "1h"])).toMatchObject({
    code: 1,
    stderr: "strongroom: a TTL of 3h is above the token's max TTL of 1h (INVALID_ARGUMENT)\n",
  });

  // A new root token from the (dev-only) kept shares, given on stdin.
  const kept = JSON.parse(readFileSync(join(directory, "dev-unseal-shares.json"), "utf8")) as {
    shares: string[];
  };
  const generated = await strongroom(["operator", "generate-root"], kept.shares.slice(0, 2).join("\n"));
  expect(generated.code).toBe(0);
  expect(generated.stderr).toBe("1/2 shares\n");
  const rootToken = generated.stdout.trim();
  expect(rootToken).toMatch(/^sr\./);
  expect(
    await strongroom(["kv", "get", "app/db", "--reveal"], "", { STRONGROOM_TOKEN: rootToken }),
  ).toMatchObject({
    code: 0,
    stdout: "s3cr3t",
  });
  // At a terminal (a pseudo-terminal from util-linux's script), the shares are asked for with
  // hidden prompts: the terminal never shows them.
  const terminal = await atTerminal(["operator", "generate-root"], kept.shares.slice(0, 2));
  expect(terminal.output).toContain("share 1 (hidden): ");
  expect(terminal.output).toContain("share 2 (hidden): ");
  expect(terminal.output).toMatch(/sr\.[A-Za-z0-9_-]{43}/);
  for (const share of kept.shares.slice(0, 2)) expect(terminal.output).not.toContain(share);
  // The audit key, for an auditor to check checkpoints (used once the cluster has stopped).
  const key = await strongroom(["audit", "key"], "", { STRONGROOM_TOKEN: rootToken });
  expect(key.stdout).toMatch(/^[0-9a-f]{64}\n$/);
  writeFileSync(join(directory, "audit.key"), key.stdout);
  expect((await strongroom(["audit", "key"], "", asReader)).code).toBe(1);
  const unsealed = await strongroom(["operator", "unseal", "--all"], kept.shares.slice(0, 2).join("\n"));
  expect(unsealed).toMatchObject({ code: 0, stdout: "n1: unsealed\nn2: unsealed\nn3: unsealed\n" });
}

/** Runs `strongroom ARGS` on a pseudo-terminal, typing each answer when a hidden prompt appears. */
function atTerminal(
  args: string[],
  answers: readonly string[],
): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, cli, ...args].map((word) => `'${word}'`).join(" ");
  return new Promise((resolve) => {
    const child = spawn("script", ["-qec", command, "/dev/null"], {
      env: { ...process.env, ...devEnv() },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    let answered = 0;
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      // A prompt is answered once it shows, as a person would.
      while (answered < answers.length && output.includes(`share ${answered + 1} (hidden): `)) {
        child.stdin.write(`${answers[answered]}\r`);
        answered++;
      }
    });
    child.on("exit", (code) => resolve({ code, output }));
  });
}
