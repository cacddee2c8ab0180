// `strongroom agent` as a real child process against a real 3-node cluster: it renders a secret
// to a raw file and a templated one (atomically, mode 0600), sees a new version through Watch and
// rewrites both and runs the reload command once, follows a scheduled rotation the same way, serves
// health and metrics, keeps the files when
// every node is gone, and stops cleanly on SIGTERM. A bad config exits 2 naming its problems.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { stringify } from "yaml";
import { createClient } from "../../client/index.js";
import { call, InProcessCluster, nodeSpecs, writeConfigs } from "../server/cluster-harness.js";
import { TestPki } from "../server/pki-fixture.js";
import { bundledCli } from "../server/process-cluster.js";
import { eventually } from "../support/eventually.js";

const pki = new TestPki("agent");
const root = mkdtempSync(join(tmpdir(), "strongroom-agent-"));
const specs = nodeSpecs(3, 49_000, 180);
const configs = writeConfigs(pki, root, specs);
const running = new InProcessCluster(pki);
const httpAddress = "127.0.0.180:49050";
let agent: ChildProcess | null = null;
let agentLog = "";

beforeAll(async () => {
  for (const spec of specs) {
    const entry = configs.get(spec.id);
    if (entry === undefined) throw new Error("no config");
    await running.start(spec, entry.config);
  }
  const { rootToken } = await running.initializeWithOneShare("n1");
  writeFileSync(join(root, "token"), rootToken, { mode: 0o600 });
}, 60_000);

afterAll(async () => {
  agent?.kill("SIGKILL");
  await running.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

async function put(value: string): Promise<void> {
  const secrets = running.client("n2").secrets;
  await call(secrets.put.bind(secrets), { path: "app/db", value: new TextEncoder().encode(value) });
}

function runCli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return bundledCli().then(
    (cli) =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "ignore", "pipe"] });
        let stderr = "";
        child.stderr.on("data", (chunk: Buffer) => {
          stderr += chunk.toString();
        });
        child.on("exit", (code) => resolve({ code, stderr }));
      }),
  );
}

/** The agent config's cluster section: the test cluster, the agent's certificate, `tokenFile`. */
function clusterSection(tokenFile: string) {
  const client = pki.client("agent");
  return {
    endpoints: specs.map((spec) => `${spec.host}:${spec.clientPort}`),
    caFile: client.caFile,
    certFile: client.certificateFile,
    keyFile: client.privateKeyFile,
    tokenFile,
  };
}

/** An SDK client as the operator, with the root token. */
function operatorClient() {
  const operator = pki.client("operator");
  return createClient({
    endpoints: specs.map((spec) => `${spec.host}:${spec.clientPort}`),
    tls: { caFile: operator.caFile, certFile: operator.certificateFile, keyFile: operator.privateKeyFile },
    token: readFileSync(join(root, "token"), "utf8"),
  });
}

function spawnAgent(configFile: string, log: (text: string) => void): Promise<ChildProcess> {
  return bundledCli().then((cli) => {
    const child = spawn(process.execPath, [cli, "agent", "--config", configFile], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    child.stderr?.on("data", (chunk: Buffer) => log(chunk.toString()));
    return child;
  });
}

it("a watch that fails (its token revoked) is logged once and shown in health, and is open again with a new token", async () => {
  const sdk = operatorClient();
  await sdk.secrets.put({ path: "app/cache", value: new TextEncoder().encode("c1") });
  const first = await sdk.access.createToken({ displayName: "agent" });
  const tokenFile = join(root, "watch-token");
  writeFileSync(tokenFile, first.token, { mode: 0o600 });
  const rendered = join(root, "cache");
  const configFile = join(root, "watch-agent.yaml");
  const address = "127.0.0.180:49051";
  writeFileSync(
    configFile,
    stringify({
      cluster: clusterSection(tokenFile),
      secrets: [{ path: "app/cache", file: rendered }],
      http: address,
      // Long enough that only the watch can bring a change within the test.
      refreshIntervalMs: 600_000,
    }),
  );
  let log = "";
  const watcher = await spawnAgent(configFile, (text) => {
    log += text;
  });
  try {
    await eventually(() => existsSync(rendered), 15_000);
    const health = async () =>
      (
        (await (await fetch(`http://${address}/v1/agent/health`)).json()) as {
          secrets: { watchError: string | null }[];
        }
      ).secrets[0]?.watchError;
    expect(await health()).toBeNull();

    // The token is revoked: the watch ends at the next change, and keeps failing as it reconnects.
    await sdk.access.revokeToken({ accessor: first.info?.accessor ?? "" });
    await sdk.secrets.put({ path: "app/cache", value: new TextEncoder().encode("c2") });
    await eventually(async () => (await health()) !== null, 10_000);
    expect(await health()).toContain("(TOKEN_INVALID)");
    // Logged once, though it fails at every reconnection (its backoff is at most 2 s): once the
    // failures' counter shows a second one, the log still has one line.
    const failures = async () =>
      Number(
        /^strongroom_agent_watch_failures_total (\d+)$/m.exec(
          await (await fetch(`http://${address}/metrics`)).text(),
        )?.[1],
      );
    await eventually(async () => (await failures()) > 1, 5000);
    // The line it wrote at the first failure, long before the second, has crossed the pipe to
    // this process (waited for, not assumed); no second one came with the second failure.
    const failureLines = () =>
      log.match(
        /watch of app\/cache failed \(it reconnects; meanwhile its files are re-read every 600000 ms\): .*TOKEN_INVALID/g,
      ) ?? [];
    await eventually(() => failureLines().length > 0, 5000);
    expect(failureLines()).toHaveLength(1);
    expect(readFileSync(rendered, "utf8")).toBe("c1");

    // A new token in the file: the watch opens again and brings the change it missed.
    writeFileSync(tokenFile, (await sdk.access.createToken({ displayName: "agent" })).token);
    await eventually(() => readFileSync(rendered, "utf8") === "c2", 10_000);
    await eventually(async () => (await health()) === null, 5000);
    expect(log).toContain("watch of app/cache is open again");
  } finally {
    watcher.kill("SIGKILL");
    sdk.close();
  }
}, 60_000);

it("renders files, follows a new version with one reload, and keeps the files through an outage", async () => {
  await put("s3cr3t-v1");
  const raw = join(root, "db-password");
  const templated = join(root, "db.env");
  const marker = join(root, "reloads");
  const configFile = join(root, "agent.yaml");
  writeFileSync(
    configFile,
    stringify({
      cluster: clusterSection(join(root, "token")),
      secrets: [
        { path: "app/db", file: raw },
        { path: "app/db", file: templated, template: "DB_PASSWORD={{ value }}\nDB_VERSION={{ version }}\n" },
      ],
      reload: {
        command: [
          process.execPath,
          "-e",
          `require("fs").appendFileSync(${JSON.stringify(marker)}, "reloaded\\n")`,
        ],
      },
      http: httpAddress,
      refreshIntervalMs: 1000,
    }),
  );
  agent = await spawnAgent(configFile, (text) => {
    agentLog += text;
  });

  await eventually(() => existsSync(templated) && existsSync(raw), 15_000);
  expect(readFileSync(raw, "utf8")).toBe("s3cr3t-v1");
  expect(readFileSync(templated, "utf8")).toBe("DB_PASSWORD=s3cr3t-v1\nDB_VERSION=1\n");
  expect(statSync(raw).mode & 0o777).toBe(0o600);
  // A probe's query (a cache buster) does not change the route.
  const health = await fetch(`http://${httpAddress}/v1/agent/health?probe=1`);
  // A request target a URL parser refuses is a 404, not an error thrown in the agent.
  const [agentHost, agentPort] = httpAddress.split(":");
  const oddTarget = await new Promise<number | undefined>((resolve, reject) =>
    request({ host: agentHost, port: Number(agentPort), path: "//" }, (response) => {
      response.resume();
      resolve(response.statusCode);
    })
      .on("error", reject)
      .end(),
  );
  expect(oddTarget).toBe(404);
  expect(health.status).toBe(200);
  const body = (await health.json()) as { ready: boolean; secrets: { version: number }[] };
  expect(body.ready).toBe(true);
  expect(JSON.stringify(body)).not.toContain("s3cr3t");
  expect(existsSync(marker)).toBe(false);

  // A new version: both files follow, and the reload command runs once for the pair.
  const changedAt = Date.now();
  await put("s3cr3t-v2");
  await eventually(() => readFileSync(templated, "utf8").includes("s3cr3t-v2"), 5000);
  expect(Date.now() - changedAt).toBeLessThan(2000);
  expect(readFileSync(raw, "utf8")).toBe("s3cr3t-v2");
  await eventually(() => existsSync(marker), 5000);
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(readFileSync(marker, "utf8")).toBe("reloaded\n");

  // Scheduled rotation under the agent: a password generator and a 2-second period. The leader
  // rotates, the agent renders the new value and reloads once more; then the rotation is stopped.
  const sdk = operatorClient();
  const scheduledAt = Date.now();
  await sdk.secrets.updateMetadata({
    path: "app/db",
    rotationPeriodMs: 2000,
    generator: {
      kind: {
        $case: "password",
        value: { length: 24, minLower: 1, minUpper: 1, minDigits: 1, minSymbols: 0, symbols: "" },
      },
    },
  });
  await eventually(
    () => /^DB_PASSWORD=[A-Za-z0-9]{24}\nDB_VERSION=3\n$/.test(readFileSync(templated, "utf8")),
    10_000,
  );
  // The period plus at most 10% jitter, a sweep, and the Watch to the agent.
  expect(Date.now() - scheduledAt).toBeLessThan(2000 * 1.1 + 1000 + 1500);
  await sdk.secrets.updateMetadata({ path: "app/db", clearGenerator: true });
  sdk.close();
  const rotated = readFileSync(raw, "utf8");
  expect(rotated).toMatch(/^[A-Za-z0-9]{24}$/);
  await eventually(() => readFileSync(marker, "utf8") === "reloaded\nreloaded\n", 5000);

  // Every node gone: the files stay as they were, and health and metrics say the refresh fails.
  await running.stop();
  await eventually(async () => {
    const metrics = await (await fetch(`http://${httpAddress}/metrics`)).text();
    return /^strongroom_agent_secrets_failing 2$/m.test(metrics);
  }, 15_000);
  expect(readFileSync(raw, "utf8")).toBe(rotated);
  expect(readFileSync(templated, "utf8")).toBe(`DB_PASSWORD=${rotated}\nDB_VERSION=3\n`);
  expect((await fetch(`http://${httpAddress}/v1/agent/health`)).status).toBe(200);
  expect(agentLog).toMatch(/keeping the last good file/);
  expect(agentLog).not.toContain("s3cr3t");
  expect(agentLog).not.toContain(rotated);

  const exited = new Promise<number | null>((resolve) => agent?.once("exit", (code) => resolve(code)));
  agent.kill("SIGTERM");
  expect(await exited).toBe(0);
  agent = null;
}, 60_000);

it("refuses a bad config with exit code 2, naming each problem", async () => {
  const configFile = join(root, "bad.yaml");
  writeFileSync(
    configFile,
    stringify({
      secrets: [
        { path: "app/db", file: "x", mode: "999" },
        { path: "app/db password", file: "y" },
        { path: "app/db", file: "z", template: "PASSWORD={{ .Value }} {{value}} {{ valeu }}" },
        { path: "app/db" },
      ],
      http: "nowhere",
      colour: 1,
    }),
  );
  const result = await runCli(["agent", "--config", configFile]);
  expect(result.code).toBe(2);
  expect(result.stderr).toContain("secrets.0.mode: must be an octal mode such as 0600");
  expect(result.stderr).toContain("http: must be host:port");
  expect(result.stderr).toContain(
    "secrets.2.template: unknown placeholder {{ .Value }} (known: {{ value }}, {{ version }}, {{ path }})",
  );
  expect(result.stderr).toContain("secrets.2.template: unknown placeholder {{ valeu }}");
  expect(result.stderr).not.toContain("{{value}}");
  expect(result.stderr).toContain(
    `secrets.1.path: invalid path "app/db password": only letters, digits, '.', '_', '-' and '/' are allowed`,
  );
  expect(result.stderr).toMatch(/colour/);
  expect(result.stderr).toContain("secrets.3.file: missing (a string is required)");
});
