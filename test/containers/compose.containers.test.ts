// deploy/compose run as an operator runs it, the file unchanged: `up`, then the CLI from the
// compose file's `cli` service to initialize, unseal every node (shares on stdin) and write a
// secret; from the host, through the published port with the certificates copied out of the `pki`
// volume, the secret and the health endpoint; `down` and `up` again keep the cluster, which comes
// back sealed and is unsealed again. The image is the container suite's (deploy/Dockerfile on a
// local base), named to the file through STRONGROOM_IMAGE; the project gets its own name so that
// its volumes are its own. Compose: `docker compose` where the machine has it, else Debian's
// `docker-compose` (1.29).

import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { nodeImage, requireDocker } from "../../chaos/docker-image.js";
import { createClient } from "../../client/index.js";
import { type CliResult, startProgram } from "../cli/cli-runner.js";

const run = promisify(execFile);
const composeFile = new URL("../../deploy/compose/compose.yaml", import.meta.url).pathname;
const project = "strongroom-compose-test";
const certificates = mkdtempSync(join(tmpdir(), "strongroom-compose-certs-"));
let composeCommand: string[] = [];
/** On top of the test's environment: the image to run, and the root token once there is one. */
const environment: Record<string, string> = {};
let rootToken = "";
let unsealShares: string[] = [];

/** `docker compose` (the plugin) when it answers, else `docker-compose`; a clear error without either. */
async function findCompose(): Promise<string[]> {
  for (const command of [["docker", "compose"], ["docker-compose"]]) {
    const [program = "", ...first] = command;
    const works = await run(program, [...first, "version"], { timeout: 30_000 }).then(
      () => true,
      () => false,
    );
    if (works) return command;
  }
  throw new Error(
    "the compose test needs `docker compose` or `docker-compose`; on Debian: apt-get install docker-compose",
  );
}

/** Runs compose with `args` against the file and project, `input` on its stdin. */
function composeRun(args: string[], input = ""): Promise<CliResult> {
  const [program = "", ...first] = composeCommand;
  const running = startProgram(program, [...first, "-f", composeFile, "-p", project, ...args], environment);
  running.child.stdin.end(input);
  return running.exited;
}

/** As composeRun; resolves to stdout when compose exits 0, and fails with its output otherwise. */
async function compose(args: string[], input = ""): Promise<string> {
  const { code, stdout, stderr } = await composeRun(args, input);
  if (code === 0) return stdout;
  throw new Error(`compose ${args.join(" ")} exited ${code}: ${stderr.slice(-2000)}${stdout.slice(-2000)}`);
}

/** The CLI as the compose file's `cli` service runs it, with the root token once there is one. */
function cli(args: string[], input = ""): Promise<string> {
  return compose(["run", "--rm", "-T", "-e", "STRONGROOM_TOKEN", "cli", ...args], input);
}

/** `attempt` again every second until it succeeds; its last failure after `timeoutMs`. */
async function untilItWorks<T>(attempt: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
}

async function unsealAll(): Promise<string> {
  return cli(["operator", "unseal", "--all"], `${unsealShares.slice(0, 3).join("\n")}\n`);
}

beforeAll(async () => {
  await requireDocker();
  composeCommand = await findCompose();
  const image = await nodeImage((line) => process.stdout.write(`compose: ${line}\n`));
  environment.STRONGROOM_IMAGE = image;
  process.stdout.write(`compose: ${composeCommand.join(" ")}, image ${image}\n`);
  // What an earlier run that was stopped half-way left.
  await compose(["down", "-v", "--remove-orphans"]);
  await compose(["up", "-d", "--no-build"]);
}, 1_200_000);

afterAll(async () => {
  if (composeCommand.length > 0) await compose(["down", "-v", "--remove-orphans"]).catch(() => {});
  rmSync(certificates, { recursive: true, force: true });
}, 120_000);

it("initializes, unseals and stores a secret through the compose file's CLI", async () => {
  // The nodes take a moment to listen after `up`: init is tried until one answers.
  const init = await untilItWorks(() => cli(["operator", "init", "--format", "json"]), 60_000);
  const answer = JSON.parse(init) as { unsealShares: string[]; rootToken: string };
  expect(answer.unsealShares).toHaveLength(5);
  unsealShares = answer.unsealShares;
  rootToken = answer.rootToken;
  environment.STRONGROOM_TOKEN = rootToken;
  expect(await unsealAll()).toMatch(/strongroom-1: unsealed\nstrongroom-2: unsealed\nstrongroom-3: unsealed/);
  expect(await cli(["kv", "put", "app/db"], "compose-secret")).toMatch(/app\/db: version 1/);
  expect(await cli(["kv", "get", "app/db", "--reveal"])).toBe("compose-secret");
});

it("serves the host through the published port with the certificates from the pki volume", async () => {
  const container = (await compose(["ps", "-q", "strongroom-1"])).trim();
  for (const file of ["cluster-ca.pem", "admin.pem", "admin-key.pem"])
    await run("docker", ["cp", `${container}:/etc/strongroom/tls/${file}`, join(certificates, file)]);
  const client = createClient({
    endpoints: ["127.0.0.1:8200"],
    tls: {
      caFile: join(certificates, "cluster-ca.pem"),
      certFile: join(certificates, "admin.pem"),
      keyFile: join(certificates, "admin-key.pem"),
    },
    token: () => rootToken,
  });
  try {
    const secret = await client.secrets.get({ path: "app/db" });
    expect(new TextDecoder().decode(secret.value)).toBe("compose-secret");
  } finally {
    client.close();
  }
  const live = await fetch("http://127.0.0.1:8202/v1/sys/live");
  expect(live.status).toBe(200);
});

it("keeps the cluster across down and up: it comes back sealed, and unsealed it has the secret", async () => {
  await compose(["down"]);
  await compose(["up", "-d", "--no-build"]);
  // `operator status` exits 2 for a sealed node, as `vault status` does.
  const status = await untilItWorks(async () => {
    const answer = await composeRun(["run", "--rm", "-T", "cli", "operator", "status", "--format", "json"]);
    if (answer.code !== 2) throw new Error(`status exited ${answer.code}: ${answer.stderr}`);
    return answer.stdout;
  }, 60_000);
  expect(JSON.parse(status).seal).toMatchObject({ initialized: true, sealed: true });
  // Again until every node answers (one may still be starting): an unsealed node takes no share.
  expect(await untilItWorks(unsealAll, 60_000)).toMatch(
    /strongroom-1: unsealed\nstrongroom-2: unsealed\nstrongroom-3: unsealed/,
  );
  const value = await untilItWorks(() => cli(["kv", "get", "app/db", "--reveal"]), 30_000);
  expect(value).toBe("compose-secret");
});
