// The CLI end to end, as an operator drives it: `strongroom` child processes against a real 3-node
// cluster over mutual TLS, every command group, `--format json` parsed, exit codes, shares and
// values only on stdin. Init and unseal, the kv group, cluster status and members, leadership,
// snapshots, keyring rotation, rekey, and sealing a node (operator status then exits 2).

import { generateKeyPairSync } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { InProcessCluster, metricOf, nodeSpecs, writeConfigs } from "../server/cluster-harness.js";
import { TestPki } from "../server/pki-fixture.js";
import { bundledCli } from "../server/process-cluster.js";
import { eventually } from "../support/eventually.js";
import { type CliResult, runCli, startNode } from "./cli-runner.js";

const pki = new TestPki("cli");
const root = mkdtempSync(join(tmpdir(), "strongroom-cli-"));
const specs = nodeSpecs(3, 51_000, 220);
const configs = writeConfigs(pki, root, specs);
const running = new InProcessCluster(pki);
const addresses = specs.map((spec) => `${spec.host}:${spec.clientPort}`);
let cli = "";
let token = "";

beforeAll(async () => {
  cli = await bundledCli();
  for (const spec of specs) {
    const entry = configs.get(spec.id);
    if (entry === undefined) throw new Error("no config");
    await running.start(spec, entry.config);
  }
  await running.leaderId();
}, 60_000);

afterAll(async () => {
  await running.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

/** The operator's environment: every node's address, its certificate and the root token. */
function operatorEnv(): Record<string, string> {
  const client = pki.client("operator");
  return {
    STRONGROOM_ADDR: addresses.join(","),
    STRONGROOM_CACERT: client.caFile,
    STRONGROOM_CLIENT_CERT: client.certificateFile,
    STRONGROOM_CLIENT_KEY: client.privateKeyFile,
    STRONGROOM_TOKEN: token,
  };
}

function strongroom(args: string[], input = "", env: Record<string, string> = {}): Promise<CliResult> {
  return runCli(cli, args, input, { ...operatorEnv(), ...env });
}

/**
 * Starts `kv watch` with `args` in a child process, and returns once a node serves its stream (a
 * change made from then on reaches it): the nodes count the watches they serve.
 */
async function watchStarted(args: string[]): Promise<{ readonly exited: Promise<CliResult> }> {
  const watchesOpen = async () => {
    const counts = await Promise.all(specs.map((spec) => metricOf(spec, "strongroom_watches_open")));
    return counts.reduce((sum, count) => sum + count, 0);
  };
  // The watches of the commands before have ended: then the one counted is this one.
  await eventually(async () => (await watchesOpen()) === 0, 5000);
  const exited = strongroom(["kv", "watch", ...args]);
  await eventually(async () => (await watchesOpen()) === 1, 15_000);
  return { exited };
}

async function json<T>(args: string[], input = ""): Promise<T> {
  const result = await strongroom([...args, "--format", "json"], input);
  expect(result, `${args.join(" ")}: ${result.stderr}`).toMatchObject({ code: 0 });
  return JSON.parse(result.stdout) as T;
}

it("init, unseal every node, and the kv group", async () => {
  const init = await json<{ unsealShares: string[]; unsealThreshold: number; rootToken: string }>([
    "operator",
    "init",
    "--shares",
    "3",
    "--threshold",
    "2",
  ]);
  expect(init.unsealShares).toHaveLength(3);
  expect(init.unsealThreshold).toBe(2);
  token = init.rootToken;
  const unsealed = await strongroom(
    ["operator", "unseal", "--all"],
    init.unsealShares.slice(0, 2).join("\n"),
  );
  expect(unsealed).toMatchObject({ code: 0, stdout: "n1: unsealed\nn2: unsealed\nn3: unsealed\n" });
  writeFileSync(join(root, "shares"), init.unsealShares.join("\n"));

  const put = await json<{ version: number }>(["kv", "put", "app/config"], '{"user":"app","pool":5}');
  expect(put.version).toBe(1);
  // A JSON merge patch: a member changed, one removed (null), a nested object merged.
  const patched = await json<{ version: number }>(
    ["kv", "patch", "app/config"],
    '{"pool":10,"user":null,"db":{"host":"h"}}',
  );
  expect(patched.version).toBe(2);
  await json(["kv", "patch", "app/config"], '{"db":{"port":5432}}');
  const read = await json<{ value: string; version: number }>(["kv", "get", "app/config"]);
  // base64 text (Buffer.from also took the {type: "Buffer", data: [...]} it used to be)
  expect(read.value).toEqual(expect.stringMatching(/^[A-Za-z0-9+/]+=*$/));
  expect(JSON.parse(Buffer.from(read.value, "base64").toString())).toEqual({
    pool: 10,
    db: { host: "h", port: 5432 },
  });
  expect((await strongroom(["kv", "patch", "app/config"], "not json")).code).toBe(2);
  await json(["kv", "put", "app/other"], "x");
  // A secret that is not a JSON object is the cluster's data, not a usage error: exit 1, unchanged.
  expect(await strongroom(["kv", "patch", "app/other"], '{"a":1}')).toMatchObject({
    code: 1,
    stderr: "strongroom: app/other does not hold a JSON object, so it cannot be patched\n",
  });
  expect(await json(["kv", "get", "app/other"])).toMatchObject({ version: 1 });
  // Run again with its request id, a write applies once: the same answer, no second version.
  const once = await json<{ version: number; revision: number }>(
    ["kv", "put", "once/db", "--request-id", "cli-put-1"],
    "v",
  );
  expect(await json(["kv", "put", "once/db", "--request-id", "cli-put-1"], "v")).toEqual(once);
  expect(once.version).toBe(1);
  expect(await strongroom(["kv", "put", "once/db", "--request-id", "no spaces"], "v")).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("--request-id is 1 to 128 characters of A-Z, a-z, 0-9"),
  });
  // The same id with another value is refused: the first write stands.
  expect(await strongroom(["kv", "put", "once/db", "--request-id", "cli-put-1"], "other")).toMatchObject({
    code: 1,
    stderr: expect.stringContaining("(REQUEST_ID_REUSED)"),
  });
  expect((await json<{ paths: string[] }>(["kv", "list", "app/"])).paths).toEqual([
    "app/config",
    "app/other",
  ]);
  await json(["kv", "delete", "app/other"]);
  const gone = await strongroom(["kv", "get", "app/other"]);
  expect(gone).toMatchObject({ code: 1, stderr: expect.stringContaining("(NOT_FOUND)") });
  await json(["kv", "undelete", "app/other", "--versions", "1"]);
  expect((await strongroom(["kv", "get", "app/other", "--reveal"])).stdout).toBe("x");
  expect(await strongroom(["kv", "destroy", "app/other", "--versions", "1"])).toMatchObject({
    code: 0,
    stdout: expect.stringMatching(/^app\/other: destroyed \(revision \d+\)\n$/),
  });
  // A version not written yet (a typo: 11 for 1) is refused, not reported destroyed.
  expect(await strongroom(["kv", "destroy", "app/other", "--versions", "1,11"])).toMatchObject({
    code: 1,
    stderr: "strongroom: app/other has no version 11: its newest is 1 (INVALID_ARGUMENT)\n",
  });
  const metadata = await json<{ maxVersions: number; owner: string }>([
    "kv",
    "metadata",
    "app/config",
    "--max-versions",
    "4",
    "--owner",
    "team-a",
  ]);
  expect(metadata).toMatchObject({ maxVersions: 4, owner: "team-a" });
  const history = await json<{ versions: { version: number }[] }>(["kv", "history", "app/config"]);
  expect(history.versions.map((entry) => entry.version)).toEqual([1, 2, 3]);
  expect((await strongroom(["kv", "delete", "app/config", "--versions", "x"])).code).toBe(2);
  expect(await strongroom(["kv", "metadata", "app/config", "--max-versions", "0"])).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("--max-versions must be a positive integer."),
  });
  // Beyond the uint32 the request carries: a usage error, not the gRPC library's serialization
  // failure (exit 1, "invalid uint32").
  expect(await strongroom(["kv", "get", "app/config", "--stale", "99999999999"])).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("--stale must be at most 4294967295."),
  });
  expect(await json<{ version: number }>(["kv", "get", "app/config", "--stale", "4294967295"])).toMatchObject(
    {
      version: 3,
    },
  );

  // A watch sees the next change (--count stops it).
  const watching = await watchStarted(["app/", "--count", "1", "--format", "json"]);
  await json(["kv", "put", "app/watched"], "w");
  const watched = await watching.exited;
  expect(watched.code).toBe(0);
  expect(JSON.parse(watched.stdout)).toMatchObject({ path: "app/watched", kind: "put", version: 1 });

  // --from a revision this cluster has not reached (another cluster's): the watch says so and goes
  // on from now, instead of waiting silently for it.
  const ahead = await watchStarted(["app/", "--from", "99999999", "--count", "1", "--format", "json"]);
  await json(["kv", "put", "app/watched"], "w2");
  const resumed = await ahead.exited;
  expect(resumed.code).toBe(0);
  expect(resumed.stderr).toContain("revision 99999999 is ahead of this cluster (at ");
  expect(resumed.stderr).toContain("(REVISION_AHEAD); watching from now");
  expect(JSON.parse(resumed.stdout)).toMatchObject({ path: "app/watched", kind: "put", version: 2 });
  // A watch that cannot start (nothing listens on port 9) says so once, not at every retry.
  const unstarted = startNode([cli, "kv", "watch", "app/", "--addr", "127.0.0.1:9"], operatorEnv());
  const said = Date.now() + 10_000;
  while (!unstarted.output().stderr.includes("trying again") && Date.now() < said)
    await new Promise((resolve) => setTimeout(resolve, 50));
  await new Promise((resolve) => setTimeout(resolve, 1500));
  unstarted.child.kill("SIGINT");
  expect(await unstarted.exited).toMatchObject({
    code: 0,
    stderr: expect.stringMatching(
      /^strongroom: the watch could not start: [^\n]*ECONNREFUSED[^\n]*; trying again\n$/,
    ),
  });
  // A prefix the cluster refuses ends the watch at once (it used to retry it for ever).
  expect(await strongroom(["kv", "watch", "app/x y/"])).toMatchObject({
    code: 1,
    stderr: expect.stringContaining(
      "only letters, digits, '.', '_', '-' and '/' are allowed (INVALID_ARGUMENT)",
    ),
  });
  // --count 0 is a usage error (it used to print one change and stop).
  expect(await strongroom(["kv", "watch", "app/", "--count", "0"])).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("--count must be a positive integer"),
  });
  // A duration whose 0 the cluster takes as "not given" is refused, not taken for the default
  // (token create --ttl 0s made a token of the cluster's default hour).
  for (const [args, message] of [
    [
      ["token", "create", "--ttl", "0s"],
      "--ttl must be longer than 0 (leave it out for the cluster's default)",
    ],
    [["token", "renew", "--increment", "0s"], "--increment must be longer than 0 (leave it out for its TTL)"],
    [
      ["kv", "stale", "--unread-for", "0d"],
      "--unread-for must be longer than 0 (leave it out for no secret listed as unread)",
    ],
    [
      ["certs", "issue", "web", "a.example", "--ttl", "0m"],
      "--ttl must be longer than 0 (leave it out for the role's)",
    ],
    [
      ["leases", "renew", "some-lease", "--increment", "0s"],
      "--increment must be longer than 0 (leave it out for its TTL)",
    ],
  ]) {
    expect(await strongroom(args as string[])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining(message as string),
    });
  }
  // A value past a node's message limit: what that means, not gRPC's words alone.
  const tooLarge = join(root, "too-large.bin");
  writeFileSync(tooLarge, Buffer.alloc(3_000_000, 7));
  expect(await strongroom(["kv", "put", "app/too-large", "--file", tooLarge])).toMatchObject({
    code: 1,
    stderr: expect.stringMatching(
      /the message is 300\d{4} bytes, more than the 2097152 its receiver takes \(a node takes requests up to its requests\.messageBytesMax/,
    ),
  });
  // A file named on the command line that cannot be read: a usage error naming it and why.
  expect(await strongroom(["kv", "put", "app/from-file", "--file", join(root, "missing")])).toMatchObject({
    code: 2,
    stderr: `strongroom: cannot read --file ${join(root, "missing")}: no such file\n`,
  });
  expect(await strongroom(["policy", "write", "from-file", root])).toMatchObject({
    code: 2,
    stderr: `strongroom: cannot read the policy file ${root}: it is a directory\n`,
  });
  const noCa = await strongroom(["kv", "get", "app/x", "--cacert", join(root, "missing-ca.pem")]);
  expect(noCa).toMatchObject({
    code: 2,
    stderr: expect.stringContaining(
      `cannot read the CA bundle (tls.caFile) ${join(root, "missing-ca.pem")}: ENOENT`,
    ),
  });
}, 60_000);

it("kv rotation and expiry: a generator and an overlap set, rotate now, the stale report, bad flags refused", async () => {
  await json(["kv", "put", "life/db"], "by hand");
  const rotating = await json<{ generator: unknown; rotationOverlapMs: number; nextRotationMs: number }>([
    "kv",
    "metadata",
    "life/db",
    "--generator",
    "password:20:symbols=0,digits=5",
    "--rotation-overlap",
    "1m",
  ]);
  expect(rotating.generator).toMatchObject({ kind: { $case: "password" } });
  expect(rotating.rotationOverlapMs).toBe(60_000);
  // No period: rotated only when asked.
  expect(rotating.nextRotationMs).toBe(0);
  const rotated = await strongroom(["kv", "rotate", "life/db"]);
  expect(rotated.code).toBe(0);
  expect(rotated.stdout).toMatch(/^life\/db: rotated to version 2 \(revision \d+\)\n$/);
  const value = (await strongroom(["kv", "get", "life/db", "--reveal"])).stdout;
  expect(value).toMatch(/^[a-zA-Z0-9]{20}$/);
  expect(value.match(/[0-9]/g)?.length ?? 0).toBeGreaterThanOrEqual(5);
  // The replaced version is readable during the overlap.
  expect((await strongroom(["kv", "get", "life/db", "--version", "1", "--reveal"])).stdout).toBe("by hand");
  const table = await strongroom(["kv", "metadata", "life/db"]);
  expect(table.stdout).toMatch(/generator +password:20:lower=1,upper=1,digits=5,symbols=0/);
  // Durations as the flags take them.
  expect(table.stdout).toMatch(/^rotation overlap +1m$/m);
  expect(table.stdout).toMatch(/^rotation period +-$/m);

  // Nothing stale yet under life/; then one secret expiring within the window: exit 3.
  expect(await strongroom(["kv", "stale", "life/"])).toMatchObject({ code: 0, stdout: "nothing stale\n" });
  await json(["kv", "metadata", "life/db", "--expires-in", "2d"]);
  const stale = await strongroom(["kv", "stale", "life/"]);
  expect(stale.code).toBe(3);
  expect(stale.stdout).toMatch(/^life\/db +expiring \d{4}-/);
  expect((await strongroom(["kv", "stale", "life/", "--expiring-within", "1h"])).code).toBe(0);
  await json(["kv", "metadata", "life/db", "--expires-at", "never"]);
  expect((await strongroom(["kv", "stale", "life/"])).code).toBe(0);

  // Bad flags: usage errors (exit 2) naming the problem; a generator the server refuses: exit 1.
  const badKind = await strongroom(["kv", "metadata", "life/db", "--generator", "dsa:1024"]);
  expect(badKind).toMatchObject({ code: 2, stderr: expect.stringContaining("is not random-bytes:LENGTH") });
  const badTime = await strongroom(["kv", "metadata", "life/db", "--expires-at", "tomorrow"]);
  expect(badTime).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("--expires-at takes an ISO 8601 time"),
  });
  const refused = await strongroom(["kv", "metadata", "life/db", "--generator", "rsa:1024"]);
  expect(refused).toMatchObject({ code: 1, stderr: expect.stringContaining("(INVALID_ARGUMENT)") });
  // An expiry already past would erase every value at once: refused, and the secret keeps them.
  const past = await strongroom(["kv", "metadata", "life/db", "--expires-at", "2020-01-01T00:00:00Z"]);
  expect(past).toMatchObject({
    code: 1,
    stderr: expect.stringContaining("expires_at 2020-01-01T00:00:00.000Z has passed"),
  });
  expect(await strongroom(["kv", "metadata", "life/db", "--expires-in", "0s"])).toMatchObject({ code: 1 });
  expect((await strongroom(["kv", "get", "life/db"])).code).toBe(0);
  const notRotating = await strongroom(["kv", "rotate", "app/config"]);
  expect(notRotating).toMatchObject({ code: 1, stderr: expect.stringContaining("(NOT_ROTATING)") });

  // Unread: reads are not replicated, so the report (asked of n1) asks every member. quiet/old is
  // read through n2 and then not for the window, quiet/read through n3 within it, quiet/never
  // not at all.
  for (const name of ["old", "read", "never"]) await json(["kv", "put", `quiet/${name}`], name);
  const via = (index: number) => ["--addr", addresses[index] ?? ""];
  expect((await strongroom(["kv", "get", "quiet/old", "--reveal", ...via(1)])).stdout).toBe("old");
  await new Promise((resolve) => setTimeout(resolve, 2500));
  expect((await strongroom(["kv", "get", "quiet/read", "--reveal", ...via(2)])).stdout).toBe("read");
  const unread = await strongroom(["kv", "stale", "quiet/", "--unread-for", "2s", ...via(0)]);
  expect(unread, unread.stderr).toMatchObject({ code: 3, stderr: "" });
  expect(unread.stdout).toMatch(
    /^quiet\/never +unread, not read since reads were recorded\nquiet\/old +unread, last read \d{4}-\d\d-\d\dT[\d:.]+Z\n$/,
  );
  // A window longer than the members have recorded for: nothing claimed, and a note says why.
  const tooLong = await strongroom(["kv", "stale", "quiet/", "--unread-for", "30d", ...via(0)]);
  expect(tooLong).toMatchObject({ code: 0, stdout: "nothing stale\n" });
  expect(tooLong.stderr).toMatch(/^note: reads are recorded since .*, less than --unread-for ago/);
}, 60_000);

it("certs, leases and revoke: the internal CA, a role, an issued certificate, its lease revoked onto the list, an identity revoked", async () => {
  const ca = await json<{ serial: string }>([
    "certs",
    "create-ca",
    "--common-name",
    "cli CA",
    "--ttl",
    "30d",
  ]);
  expect(ca.serial).toMatch(/^[0-9a-f]+$/);
  expect((await strongroom(["certs", "ca"])).stdout).toMatch(/^-----BEGIN CERTIFICATE-----/);
  expect(await strongroom(["certs", "role", "write", "web"])).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("give at least one --allow pattern"),
  });
  expect(
    (await strongroom(["certs", "role", "write", "web", "--allow", "*.svc.test", "--ttl", "nope"])).code,
  ).toBe(2);
  await json(["certs", "role", "write", "web", "--allow", "*.svc.test", "--ttl", "10m", "--max-ttl", "1h"]);
  expect(await json(["certs", "role", "read", "web"])).toEqual({
    name: "web",
    allowedNames: ["*.svc.test"],
    ttlMs: 600_000,
    maxTtlMs: 3_600_000,
    serverAuth: false,
  });
  expect((await strongroom(["certs", "role", "read", "web"])).stdout).toMatch(/^ttl +10m\nmax ttl +1h\n/m);
  // Into a directory holding an older key.pem that anyone may read (a renewal into the same
  // place): the new key must not inherit that mode.
  const out = join(root, "issued");
  mkdirSync(out);
  writeFileSync(join(out, "key.pem"), "an older key", { mode: 0o644 });
  const issued = await strongroom(["certs", "issue", "web", "api.svc.test", "--out", out]);
  expect(issued, issued.stderr).toMatchObject({ code: 0 });
  const lease = /lease\s+(\S+)/.exec(issued.stdout)?.[1] ?? "";
  expect(lease).toMatch(/^pki\/issue\/web\/[0-9a-f]+$/);
  expect(statSync(join(out, "key.pem")).mode & 0o777).toBe(0o600);
  expect(readFileSync(join(out, "key.pem"), "utf8")).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  expect(readdirSync(out).sort()).toEqual(["ca.pem", "cert.pem", "key.pem"]);
  expect(readFileSync(join(out, "cert.pem"), "utf8")).toMatch(/^-----BEGIN CERTIFICATE-----/);
  const refused = await strongroom(["certs", "issue", "web", "api.other.test"]);
  expect(refused).toMatchObject({
    code: 1,
    stderr: expect.stringContaining("does not allow api.other.test"),
  });
  const listed = await json<{ leases: { id: string }[] }>(["leases", "list", "pki/issue/"]);
  expect(listed.leases.map((entry) => entry.id)).toEqual([lease]);
  const revoked = await strongroom(["revoke", "--lease", lease]);
  expect(revoked, revoked.stderr).toMatchObject({ code: 0 });
  for (const address of addresses)
    expect(revoked.stdout).toMatch(new RegExp(`applied on ${address}\\s+after \\d+ ms`));
  const serial = lease.slice(lease.lastIndexOf("/") + 1);
  expect((await json<{ revokedSerials: string[] }>(["certs", "crl"])).revokedSerials).toEqual([serial]);
  expect(await strongroom(["revoke", "--lease", lease, "--prefix", "pki/"])).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("exactly one of"),
  });
  expect((await strongroom(["revoke", "--prefix", "pki/", "--rotate"])).code).toBe(2);
  // A prefix revocation that takes the caller's own token with the rest says so.
  const child = await json<{ token: string; info: { accessor: string } }>(["token", "create"]);
  const asChild = { STRONGROOM_TOKEN: child.token };
  expect(
    await strongroom(["leases", "revoke-prefix", `auth/token/${child.info.accessor}`], "", asChild),
  ).toMatchObject({
    code: 0,
    stdout: expect.stringMatching(/^1 leases revoked \(revision \d+\)\n$/),
    stderr: "strongroom: the token this command used was one of them: it no longer works\n",
  });
  expect((await strongroom(["token", "lookup"], "", asChild)).stderr).toContain("TOKEN_INVALID");
  expect(await strongroom(["leases", "revoke-prefix", "pki/issue/none/"])).toMatchObject({
    code: 0,
    stderr: "",
  });

  // An identity revoked: its calls refused, listed as disabled, enabled again.
  expect((await strongroom(["policy", "bind", "victim", "root"])).code).toBe(0);
  const victim = pki.client("victim");
  const asVictim = (args: string[]) =>
    strongroom(args, "", {
      STRONGROOM_CLIENT_CERT: victim.certificateFile,
      STRONGROOM_CLIENT_KEY: victim.privateKeyFile,
      STRONGROOM_TOKEN: "",
    });
  expect((await asVictim(["kv", "list", "app/"])).code).toBe(0);
  const report = await json<{ disabledAtRevision: number; appliedAfterMs: Record<string, number> }>([
    "revoke",
    "--identity",
    "victim",
    "--reason",
    "cli test",
  ]);
  expect(report.disabledAtRevision).toBeGreaterThan(0);
  expect(Object.keys(report.appliedAfterMs).sort()).toEqual([...addresses].sort());
  expect(await asVictim(["kv", "list", "app/"])).toMatchObject({
    code: 1,
    stderr: expect.stringContaining("(IDENTITY_DISABLED)"),
  });
  expect((await strongroom(["identity", "disabled"])).stdout).toMatch(
    /^victim\s+since .* by operator: cli test\n$/,
  );
  await json(["identity", "enable", "victim"]);
  expect((await asVictim(["kv", "list", "app/"])).code).toBe(0);
  expect((await strongroom(["policy", "unbind", "victim"])).code).toBe(0);
});

it("token roles: written, read, used by token create --role, listed and deleted; token capabilities", async () => {
  const policyFile = join(root, "ci-deploy.json");
  writeFileSync(
    policyFile,
    JSON.stringify({ name: "ci-deploy", rules: [{ path: "deploy/*", capabilities: ["read"] }] }),
  );
  expect((await strongroom(["policy", "write", "ci-deploy", policyFile])).code).toBe(0);
  expect(await strongroom(["token", "role", "write", "ci"])).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("give at least one --policy"),
  });
  const written = await strongroom([
    "token",
    "role",
    "write",
    "ci",
    "--policy",
    "ci-deploy",
    "--ttl",
    "10m",
    "--uses",
    "5",
  ]);
  expect(written).toMatchObject({
    code: 0,
    stdout: expect.stringMatching(/^token role ci written \(revision \d+\)\n$/),
  });
  expect((await strongroom(["token", "role", "read", "ci"])).stdout).toMatch(
    /^allowed policies +ci-deploy\nttl +10m\nmax ttl +the cluster's limit\nrenewable +false\norphan +false\nuses +5\nbound to +any identity\n$/m,
  );
  const created = await json<{ info: { policies: string[]; role: string; usesLeft: number; ttlMs: number } }>(
    ["token", "create", "--role", "ci", "--bound-identity", "ci-*", "--bound-identity", "deployer"],
  );
  expect(created.info).toMatchObject({
    policies: ["ci-deploy"],
    role: "ci",
    usesLeft: 5,
    ttlMs: 600_000,
    boundIdentities: ["ci-*", "deployer"],
  });
  expect((await strongroom(["token", "role", "list"])).stdout).toBe("ci\n");
  expect((await strongroom(["token", "role", "delete", "ci"])).code).toBe(0);
  expect(await strongroom(["token", "create", "--role", "ci"])).toMatchObject({
    code: 1,
    stderr: expect.stringContaining("no token role named ci (NOT_FOUND)"),
  });

  // What a caller, or an identity by its bindings, may do on paths.
  expect((await strongroom(["token", "capabilities", "deploy/app"])).stdout).toBe(
    "path        capabilities\ndeploy/app  create, read, update, delete, list, destroy, sudo\n",
  );
  expect((await strongroom(["token", "capabilities", "deploy/app", "--identity", "nobody"])).stdout).toBe(
    "path        capabilities\ndeploy/app  none\n",
  );
  expect(
    await strongroom(["token", "capabilities", "a", "--identity", "x", "--accessor", "y"]),
  ).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("give --accessor or --identity, not both"),
  });
});

it("cluster status, members, leadership, snapshots and keyring rotation", async () => {
  const status = await json<{ leaderId: string; role: string }>(["cluster", "status"]);
  expect(status.leaderId).toMatch(/^n[123]$/);
  // Asked of whichever node answers first, the members come as the leader sees them.
  const { members, leaderView, answeredBy } = await json<{
    members: { nodeId: string; voter: boolean; leader: boolean; caughtUp: boolean }[];
    leaderView: boolean;
    answeredBy: string;
  }>(["cluster", "members"]);
  expect(members.map((member) => member.nodeId).sort()).toEqual(["n1", "n2", "n3"]);
  expect(leaderView).toBe(true);
  expect(members.find((member) => member.leader)?.nodeId).toBe(answeredBy);
  expect(members.every((member) => member.caughtUp)).toBe(true);
  // As a table: a header, one line per member, columns as wide as their cells, no trailing space,
  // and whose view it is.
  const listed = (await strongroom(["cluster", "members"])).stdout.split("\n");
  expect(listed[0]).toMatch(
    /^member +role +health +behind +last contact +client address +peer address +region\/zone +peer error$/,
  );
  expect(listed.slice(1, 4).sort()).toEqual(
    ["n1", "n2", "n3"].map((id) =>
      expect.stringMatching(
        new RegExp(`^${id} +(leader +ok +0 +-|voter +ok +\\d+ +\\d+ ms) +\\S+ +\\S+ +- +-$`),
      ),
    ),
  );
  expect(listed[4]).toMatch(/^as the leader n[123] sees it \(commit index \d+\)$/);
  // Sent to a follower alone, the command asks the leader it names.
  const followerAddress = addresses[specs.findIndex((spec) => spec.id !== answeredBy)] ?? "";
  const viaFollower = await json<{ answeredBy: string; leaderView: boolean }>([
    "cluster",
    "members",
    "--addr",
    followerAddress,
  ]);
  expect(viaFollower).toMatchObject({ answeredBy, leaderView: true });
  const target = members.find((member) => !member.leader)?.nodeId ?? "";
  const moved = await json<{ leaderId: string }>(["cluster", "transfer-leader", target]);
  expect(moved.leaderId).toBe(target);

  const file = join(root, "backup.snapshot");
  const saved = await strongroom(["cluster", "snapshot", "save", file]);
  expect(saved).toMatchObject({
    code: 0,
    stdout: expect.stringMatching(/^saved \d+ bytes at index \d+ to /),
  });
  // Written beside, then renamed once checked: no partial file left, readable by its owner only.
  expect(existsSync(`${file}.partial`)).toBe(false);
  expect(statSync(file).mode & 0o777).toBe(0o600);
  const savedBytes = Number(/^saved (\d+) bytes/.exec(saved.stdout)?.[1]);
  expect(savedBytes).toBeGreaterThan(0);
  // The state's bytes and a few per chunk (format 2; format 1's base64 made it a third larger).
  expect(statSync(file).size).toBeLessThan(savedBytes * 1.01 + 100);
  const nowhere = join(root, "absent", "backup.snapshot");
  expect(await strongroom(["cluster", "snapshot", "save", nowhere])).toMatchObject({
    code: 2,
    stderr: `strongroom: cannot write ${nowhere}: its directory does not exist\n`,
  });
  // A directory is refused before the snapshot is fetched, and nothing is left beside it.
  expect(await strongroom(["cluster", "snapshot", "save", root])).toMatchObject({
    code: 2,
    stderr: `strongroom: cannot write ${root}: it is a directory (give a file's path)\n`,
  });
  expect(existsSync(`${root}.partial`)).toBe(false);
  // Restoring is for a new cluster only; this one is initialized.
  const refused = await strongroom(["cluster", "snapshot", "restore", file]);
  expect(refused).toMatchObject({ code: 1, stderr: expect.stringContaining("ALREADY_INITIALIZED") });
  writeFileSync(join(root, "junk"), "not a snapshot");
  expect((await strongroom(["cluster", "snapshot", "restore", join(root, "junk")])).code).toBe(2);
  // A well-framed file whose frame is JSON but not a chunk: refused before anything is sent.
  const body = Buffer.from(JSON.stringify({ data: "AAAA", sha256: "", totalBytes: "many", appliedIndex: 1 }));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  writeFileSync(join(root, "not-chunks"), Buffer.concat([length, body]));
  const notChunks = await strongroom(["cluster", "snapshot", "restore", join(root, "not-chunks")]);
  expect(notChunks).toMatchObject({ code: 2, stderr: expect.stringContaining("is not a snapshot file") });

  const rotated = await json<{ term: number }>(["operator", "rotate"]);
  expect(rotated.term).toBe(2);
}, 60_000);

it("rekey with a threshold of shares on stdin, seal a node, see status exit 2, unseal it with the new shares", async () => {
  const old = readFileSync(join(root, "shares"), "utf8").split("\n");
  // Share options that could not make shares: refused before a share is read.
  expect(
    await strongroom(["operator", "rekey", "--shares", "1", "--threshold", "2"], old.slice(0, 2).join("\n")),
  ).toMatchObject({
    code: 2,
    stderr: "strongroom: the threshold must be an integer from 1 to the share count (1), got 2\n",
  });
  // One operator starts a rekey; another's share for other options is refused, not taken, and
  // --reset discards the attempt (the first share is then taken again, not refused as a duplicate).
  const started = await strongroom(["operator", "rekey", "--shares", "3", "--threshold", "2"], old[0]);
  expect(started).toMatchObject({
    code: 2,
    stderr: "1/2 shares\nstrongroom: not enough shares were given\n",
  });
  expect(await strongroom(["operator", "rekey"], old[1])).toMatchObject({
    code: 1,
    stderr:
      "strongroom: a rekey to 3 shares, threshold 2 is in progress: give your share with the same options, or reset it (operator rekey --reset) (INVALID_ARGUMENT)\n",
  });
  expect(await strongroom(["operator", "rekey", "--reset"])).toMatchObject({
    code: 0,
    stdout: "rekey reset: give the shares again\n",
  });
  const rekeyed = await json<{ shares: string[]; threshold: number }>(
    ["operator", "rekey", "--shares", "3", "--threshold", "2"],
    old.slice(0, 2).join("\n"),
  );
  expect(rekeyed.shares).toHaveLength(3);
  const node = addresses[2] ?? "";
  // A watch through the node about to be sealed says it lost its stream, and when it is back.
  const watching = await watchStarted(["sealing/", "--count", "1", "--addr", node]);
  const sealed = await json<{ sealed: boolean }>(["operator", "seal", "--addr", node]);
  expect(sealed.sealed).toBe(true);
  const status = await strongroom(["operator", "status", "--addr", node]);
  expect(status.code).toBe(2);
  expect(status.stdout).toMatch(/^sealed +true$/m);
  const stale = await strongroom(["operator", "unseal", "--addr", node], old.slice(0, 2).join("\n"));
  expect(stale.code).toBe(1);
  // A share in an attempt, discarded by --reset: given again, it is taken, not a duplicate.
  for (let round = 0; round < 2; round++) {
    expect(await strongroom(["operator", "unseal", "--addr", node], rekeyed.shares[0])).toMatchObject({
      code: 2,
      stdout: "n3: sealed (1/2 shares)\n",
    });
    expect(await strongroom(["operator", "unseal", "--addr", node, "--reset"])).toMatchObject({
      code: 0,
      stdout: "n3: unseal attempt reset\n",
    });
  }
  // --all goes on past a node it cannot reach (nothing listens on port 9 here), and says so.
  const down = "127.0.0.1:9";
  const unsealed = await strongroom(
    ["operator", "unseal", "--all", "--addr", `${down},${node}`],
    rekeyed.shares.slice(1, 3).join("\n"),
    { STRONGROOM_CLIENT_TIMEOUT: "1s" },
  );
  const { revision } = await json<{ revision: number }>(["kv", "put", "sealing/after"], "v");
  expect(await watching.exited).toMatchObject({
    code: 0,
    stdout: `${revision}  sealing/after  put  version 1\n`,
    stderr: expect.stringMatching(
      /^strongroom: the watch lost its stream: [^\n]*sealed[^\n]* \(SEALED\); reconnecting\nstrongroom: watching again, from the last change shown\n$/,
    ),
  });
  expect(unsealed).toMatchObject({
    code: 1,
    stdout: "n3: unsealed\n",
    stderr: expect.stringMatching(
      /^127\.0\.0\.1:9: not reached: .*ECONNREFUSED.*\nstrongroom: 1 node\(s\) could not be reached: unseal them once they are back\n$/,
    ),
  });
  expect(await strongroom(["operator", "status"], "", { STRONGROOM_CLIENT_TIMEOUT: "soon" })).toMatchObject({
    code: 2,
    stderr:
      'strongroom: STRONGROOM_CLIENT_TIMEOUT is how long a call may take, retries included, such as 5s or 1m: got "soon"\n',
  });
  expect(await strongroom(["operator", "unseal", "--addr", node, "--reset"])).toMatchObject({
    code: 0,
    stdout: "n3: unsealed, no attempt to reset\n",
  });
  writeFileSync(join(root, "rekeyed-shares"), rekeyed.shares.join("\n"));
  // A root token generation left half done is discarded by --reset.
  for (let round = 0; round < 2; round++) {
    expect(await strongroom(["operator", "generate-root"], rekeyed.shares[0])).toMatchObject({
      code: 2,
      stderr: "1/2 shares\nstrongroom: not enough shares were given\n",
    });
    expect(await strongroom(["operator", "generate-root", "--reset"])).toMatchObject({
      code: 0,
      stdout: "root token generation reset: give the shares again\n",
    });
  }
  // Usage errors exit 2.
  expect((await strongroom(["operator", "status", "--format", "xml"])).code).toBe(2);
  expect((await strongroom(["cluster", "join", "n9"])).code).toBe(2);
}, 60_000);

it("rekey to operators' keys: each share comes out encrypted, decrypt-share opens it with its key, and an encrypted share is not sent as it is", async () => {
  // One operator with X25519, one with RSA and the private key kept under a passphrase, as
  // openssl genpkey makes them.
  const passphraseFile = join(root, "ben.passphrase");
  writeFileSync(passphraseFile, "ben's passphrase\n", { mode: 0o600 });
  const operators = ["ana", "ben"].map((name, i) => {
    const pair =
      i === 0 ? generateKeyPairSync("x25519") : generateKeyPairSync("rsa", { modulusLength: 2048 });
    const publicFile = join(root, `${name}.pub`);
    const privateFile = join(root, `${name}.key`);
    writeFileSync(publicFile, pair.publicKey.export({ format: "pem", type: "spki" }));
    const encryption = i === 0 ? {} : { cipher: "aes-256-cbc", passphrase: "ben's passphrase" };
    writeFileSync(privateFile, pair.privateKey.export({ format: "pem", type: "pkcs8", ...encryption }), {
      mode: 0o600,
    });
    return { publicFile, privateFile, flags: i === 0 ? [] : ["--passphrase-file", passphraseFile] };
  });
  const current = readFileSync(join(root, "rekeyed-shares"), "utf8").split("\n");
  const rekeyed = await json<{ shares: string[] }>(
    [
      "operator",
      "rekey",
      "--shares",
      "2",
      "--threshold",
      "2",
      ...operators.flatMap((operator) => ["--operator-key", operator.publicFile]),
    ],
    current.slice(0, 2).join("\n"),
  );
  expect(rekeyed.shares).toHaveLength(2);
  for (const share of rekeyed.shares) expect(share).toMatch(/^strongroom-encrypted-share:v1:/);
  const node = addresses[2] ?? "";
  expect((await json<{ sealed: boolean }>(["operator", "seal", "--addr", node])).sealed).toBe(true);

  const asItIs = await strongroom(["operator", "unseal", "--addr", node], rekeyed.shares[0]);
  expect(asItIs).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("this share is encrypted to an operator's key: decrypt it first"),
  });
  const wrongKey = await strongroom(
    [
      "operator",
      "decrypt-share",
      "--private-key",
      operators[1]?.privateFile ?? "",
      ...(operators[1]?.flags ?? []),
    ],
    rekeyed.shares[0],
  );
  expect(wrongKey).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("the encrypted share and the private key are of different kinds"),
  });
  const locked = await strongroom(
    ["operator", "decrypt-share", "--private-key", operators[1]?.privateFile ?? ""],
    rekeyed.shares[1],
  );
  expect(locked).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("is encrypted: give its passphrase with --passphrase-file"),
  });
  const otherPassphrase = join(root, "wrong.passphrase");
  writeFileSync(otherPassphrase, "not it");
  const wrongPassphrase = await strongroom(
    [
      "operator",
      "decrypt-share",
      "--private-key",
      operators[1]?.privateFile ?? "",
      "--passphrase-file",
      otherPassphrase,
    ],
    rekeyed.shares[1],
  );
  expect(wrongPassphrase).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("the passphrase does not open the private key"),
  });
  const plain: string[] = [];
  for (const [i, operator] of operators.entries()) {
    const opened = await strongroom(
      ["operator", "decrypt-share", "--private-key", operator.privateFile, ...operator.flags],
      rekeyed.shares[i],
    );
    expect(opened.code).toBe(0);
    expect(opened.stdout).not.toContain("strongroom-encrypted-share");
    plain.push(opened.stdout.trim());
  }
  const unsealed = await strongroom(["operator", "unseal", "--addr", node], plain.join("\n"));
  expect(unsealed).toMatchObject({ code: 0, stdout: "n3: unsealed\n" });
}, 60_000);
