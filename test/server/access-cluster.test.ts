// Access control on a running 3-node cluster, through real mutual-TLS connections to every node:
// each capability against allowed, not granted and explicitly denied paths (calls spread over the
// nodes, so followers authorize and forward, and the leader authorizes again); sudo; a policy change
// enforced on a node as soon as it has applied it; tenant isolation; tokens (children, renewal,
// expiry, revocation refused on every node within one apply, brute-force backoff); token roles (a
// caller without sudo or the policies creating tokens within a role); rate limits; the
// root token's own revocation and a new one from the unseal shares; and the audit hash an auditor
// checks entries with.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CreateTokenRequest, TokenRole } from "../../proto/gen/strongroom/v1/access.gen.js";
import { ChangeKind, Consistency, type WatchEvent } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { listAuditFiles } from "../../server/audit/audit-file.js";
import { eventually } from "../support/eventually.js";
import {
  type Clients,
  call,
  callError,
  clientsFor,
  InProcessCluster,
  metricOf,
  type NodeSpec,
  nodeSpecs,
  writeConfigs,
} from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("access");
const root = mkdtempSync(join(tmpdir(), "strongroom-access-"));
const specs = nodeSpecs(3, 45_000, 140);
const configs = writeConfigs(pki, root, specs, () => ({
  auth: {
    rateLimits: [
      { prefix: "", perSecond: 10_000, burst: 20_000 },
      { prefix: "limited/", perSecond: 1, burst: 2 },
    ],
    // The leader removes expired tokens' records soon after they expire.
    tidyIntervalMs: 300,
  },
}));
const running = new InProcessCluster(pki);
const opened: Clients[] = [];
let rootToken = "";
let unsealShare = "";

/** A client of node `index` (0..2) as certificate identity `name`, presenting `token` if given. */
function clientAs(index: number, name: string, token: string | null = null): Clients {
  const spec = specs[index % specs.length];
  if (spec === undefined) throw new Error("no such node");
  const clients = clientsFor(`${spec.host}:${spec.clientPort}`, pki, name, token);
  opened.push(clients);
  return clients;
}

const asRoot = (index = 0) => clientAs(index, "operator", rootToken);
const bytes = (text: string) => new TextEncoder().encode(text);
const readRequest = (path: string) => ({
  path,
  version: 0,
  consistency: Consistency.CONSISTENCY_LINEARIZABLE,
  maxStalenessMs: 0,
});

/** "ok", or the strongroom reason of the refusal. */
async function outcomeOf(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
    return "ok";
  } catch (error) {
    return String((error as ServiceError).metadata?.get("strongroom-reason")[0] ?? (error as Error).message);
  }
}

async function writePolicy(document: string, name: string): Promise<number> {
  const access = asRoot().access;
  return (await call(access.writePolicy.bind(access), { name, document })).revision;
}

async function bind(identity: string, policies: string[]): Promise<number> {
  const access = asRoot().access;
  return (await call(access.bindIdentity.bind(access), { identity, policies })).revision;
}

/** A CreateToken request: the server's defaults, but for `request`. */
function tokenRequest(request: Partial<CreateTokenRequest>): CreateTokenRequest {
  return {
    policies: [],
    ttlMs: 0,
    maxTtlMs: 0,
    renewable: false,
    orphan: false,
    displayName: "",
    numUses: 0,
    role: "",
    boundIdentities: [],
    ...request,
  };
}

async function createToken(clients: Clients, request: Partial<CreateTokenRequest>) {
  return call(clients.access.createToken.bind(clients.access), tokenRequest(request));
}

/** A WriteTokenRole request: no limits but the cluster's, but for `role`. */
function tokenRole(role: Partial<TokenRole> & { name: string }): TokenRole {
  return {
    allowedPolicies: [],
    ttlMs: 0,
    maxTtlMs: 0,
    renewable: false,
    orphan: false,
    numUses: 0,
    boundIdentities: [],
    ...role,
  };
}

/** Waits until node `index` has applied `revision` (so its next request sees the change). */
async function appliedOn(index: number, revision: number): Promise<void> {
  const cluster = asRoot(index).cluster;
  await eventually(async () => (await call(cluster.status.bind(cluster), {})).appliedIndex >= revision, 5000);
}

beforeAll(async () => {
  for (const spec of specs) {
    const entry = configs.get(spec.id);
    if (entry === undefined) throw new Error("no config");
    await running.start(spec, entry.config);
  }
  ({ rootToken, share: unsealShare } = await running.initializeWithOneShare("n1"));
}, 60_000);

afterAll(async () => {
  for (const clients of opened) clients.close();
  await running.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

describe("policies", () => {
  const operations = ["create", "read", "update", "delete", "list", "destroy"] as const;
  type Operation = (typeof operations)[number];

  /** Runs the operation that needs `capability` on `path`, as `clients`. */
  function perform(clients: Clients, capability: Operation, path: string, fresh: string): Promise<unknown> {
    const { secrets } = clients;
    switch (capability) {
      case "create":
        return call(secrets.put.bind(secrets), { path: fresh, value: bytes("new") });
      case "update":
        return call(secrets.put.bind(secrets), { path, value: bytes("changed") });
      case "read":
        return call(secrets.get.bind(secrets), readRequest(path));
      case "delete":
        return call(secrets.delete.bind(secrets), { path, versions: [] });
      case "destroy":
        return call(secrets.destroy.bind(secrets), { path, versions: [1] });
      case "list":
        return call(secrets.list.bind(secrets), {
          prefix: `${path.slice(0, path.lastIndexOf("/"))}/`,
          after: "",
          limit: 0,
          consistency: Consistency.CONSISTENCY_LINEARIZABLE,
        });
    }
  }

  it("each capability is allowed where granted, refused elsewhere, and refused where explicitly denied", async () => {
    // One identity per capability, granted it on matrix/<capability>/* with a deny below.
    for (const capability of operations) {
      await writePolicy(
        JSON.stringify({
          name: `only-${capability}`,
          rules: [
            { path: `matrix/${capability}/*`, capabilities: [capability] },
            { path: `matrix/${capability}/denied/*`, capabilities: ["deny"] },
          ],
        }),
        `only-${capability}`,
      );
      await bind(`m-${capability}`, [`only-${capability}`]);
    }
    const cases = operations.flatMap((identity) =>
      operations.flatMap((capability) =>
        (["granted", "denied"] as const).map((where) => ({ identity, capability, where })),
      ),
    );
    const pathOf = (round: number, where: "granted" | "denied", capability: Operation) =>
      `${where === "granted" ? `matrix/${capability}` : `matrix/${capability}/denied`}/s${round}`;
    // Every case gets its own existing secret, written by root up front.
    const rootSecrets = asRoot().secrets;
    await Promise.all(
      cases.map(({ capability, where }, round) =>
        call(rootSecrets.put.bind(rootSecrets), {
          path: pathOf(round, where, capability),
          value: bytes("seed"),
        }),
      ),
    );
    // One client per identity and node; the cases go round the nodes.
    const clients = new Map<string, Clients>();
    const clientFor = (identity: Operation, node: number) => {
      const key = `${identity}@${node}`;
      if (!clients.has(key)) clients.set(key, clientAs(node, `m-${identity}`));
      return clients.get(key) as Clients;
    };
    const table = await Promise.all(
      cases.map(async ({ identity, capability, where }, round) => {
        const path = pathOf(round, where, capability);
        const fresh = `${path.slice(0, path.lastIndexOf("/"))}/fresh${round}`;
        const outcome = await outcomeOf(() =>
          perform(clientFor(identity, round % 3), capability, path, fresh),
        );
        const expected = identity === capability && where === "granted" ? "ok" : "PERMISSION_DENIED";
        return `${identity} ${capability} ${where}: ${outcome === expected ? "as expected" : outcome}`;
      }),
    );
    expect(table.filter((line) => !line.endsWith("as expected"))).toEqual([]);
    expect(table).toHaveLength(operations.length * operations.length * 2);
  });

  it("most specific rule wins, '+' matches one segment, and a refusal names no policy", async () => {
    await writePolicy(
      [
        "name: web",
        "rules:",
        "  - path: web/*",
        "    capabilities: [read]",
        "  - path: web/+/config",
        "    capabilities: [read, update, create]",
        "  - path: web/public/config",
        "    capabilities: [list]",
      ].join("\n"),
      "web",
    );
    await bind("web-svc", ["web"]);
    const secrets = clientAs(1, "web-svc").secrets;
    expect(
      await outcomeOf(() => call(secrets.put.bind(secrets), { path: "web/eu/config", value: bytes("x") })),
    ).toBe("ok");
    // "web/public/config" is more specific than "web/+/config" and grants only list.
    const refused = await callError(secrets.put.bind(secrets), {
      path: "web/public/config",
      value: bytes("x"),
    });
    expect(refused).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: "web-svc may not create web/public/config",
    });
    // Two segments are not one.
    expect(
      await outcomeOf(() =>
        call(secrets.put.bind(secrets), { path: "web/eu/west/config", value: bytes("x") }),
      ),
    ).toBe("PERMISSION_DENIED");
  });

  it("capabilities: what a caller, a token or an identity may do on each path, as the authorizer decides", async () => {
    const policy = (rules: { path: string; capabilities: string[] }[]) =>
      writePolicy(JSON.stringify({ name: "cap-app", rules }), "cap-app");
    await policy([
      { path: "cap/*", capabilities: ["read", "list"] },
      { path: "cap/locked", capabilities: ["deny"] },
      { path: "sys/tokens/create/cap", capabilities: ["update"] },
    ]);
    await bind("cap-user", ["cap-app"]);
    const paths = ["cap/db", "cap/locked", "elsewhere/x", "sys/tokens/create/cap"];
    const expected = [
      { path: "cap/db", capabilities: ["read", "list"] },
      { path: "cap/locked", capabilities: [] },
      { path: "elsewhere/x", capabilities: [] },
      { path: "sys/tokens/create/cap", capabilities: ["update"] },
    ];
    const capabilitiesOf = async (clients: Clients, request: { accessor?: string; identity?: string }) =>
      call(clients.access.capabilities.bind(clients.access), {
        paths,
        accessor: "",
        identity: "",
        ...request,
      });
    // The caller itself, by certificate identity and its bindings.
    const user = clientAs(1, "cap-user");
    expect(await capabilitiesOf(user, {})).toEqual({
      paths: expected,
      policies: ["cap-app"],
      identityDisabled: false,
    });
    // An identity asked about by an operator; a token by its accessor.
    expect((await capabilitiesOf(asRoot(2), { identity: "cap-user" })).paths).toEqual(expected);
    const token = await createToken(asRoot(), { policies: ["cap-app"], ttlMs: 60_000 });
    expect((await capabilitiesOf(asRoot(0), { accessor: token.info?.accessor ?? "" })).paths).toEqual(
      expected,
    );
    // Root may do everything everywhere.
    expect((await capabilitiesOf(asRoot(1), {})).paths[2]).toEqual({
      path: "elsewhere/x",
      capabilities: ["create", "read", "update", "delete", "list", "destroy", "sudo"],
    });
    // A change shows on any node as soon as it is answered (the answer waits for a read barrier).
    await policy([{ path: "cap/*", capabilities: ["create", "read"] }]);
    expect((await capabilitiesOf(clientAs(2, "cap-user"), {})).paths[0]).toEqual({
      path: "cap/db",
      capabilities: ["create", "read"],
    });

    // About others only with what a lookup of them needs; bad requests named.
    const refusal = async (request: { paths?: string[]; accessor?: string; identity?: string }) => {
      const error = await callError(user.access.capabilities.bind(user.access), {
        paths,
        accessor: "",
        identity: "",
        ...request,
      });
      return { code: error.code, details: error.details };
    };
    expect(await refusal({ identity: "operator" })).toEqual({
      code: status.PERMISSION_DENIED,
      details: "cap-user may not read sys/identities",
    });
    expect(await refusal({ accessor: token.info?.accessor ?? "" })).toMatchObject({
      code: status.PERMISSION_DENIED,
    });
    expect(await refusal({ paths: [] })).toEqual({
      code: status.INVALID_ARGUMENT,
      details: "ask about 1 to 64 paths",
    });
    expect(await refusal({ paths: Array.from({ length: 65 }, (_, index) => `cap/${index}`) })).toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
    expect(await refusal({ paths: ["x".repeat(1025)] })).toEqual({
      code: status.INVALID_ARGUMENT,
      details: "a path asked about is at most 1024 characters: got 1025",
    });
    expect(await refusal({ identity: "cap-*" })).toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(await refusal({ identity: "a", accessor: "b" })).toMatchObject({ code: status.INVALID_ARGUMENT });

    // A disabled identity may do nothing, whatever its bindings say.
    await bind("cap-gone", ["cap-app"]);
    const admin = asRoot(0).access;
    await call(admin.revokeIdentity.bind(admin), {
      identity: "cap-gone",
      rotateReadable: false,
      keepEnabled: false,
      reason: "capabilities test",
    });
    const gone = await capabilitiesOf(asRoot(1), { identity: "cap-gone" });
    expect(gone).toMatchObject({ identityDisabled: true, policies: ["cap-app"] });
    expect(gone.paths.every((entry) => entry.capabilities.length === 0)).toBe(true);
  });

  it("sudo is needed, beside the capability, for operations on the cluster itself", async () => {
    await writePolicy(
      JSON.stringify({ name: "rotator", rules: [{ path: "sys/rotate", capabilities: ["update"] }] }),
      "rotator",
    );
    await writePolicy(
      JSON.stringify({
        name: "rotator-sudo",
        rules: [{ path: "sys/rotate", capabilities: ["update", "sudo"] }],
      }),
      "rotator-sudo",
    );
    await bind("rotator", ["rotator"]);
    await bind("rotator-sudo", ["rotator-sudo"]);
    const without = clientAs(2, "rotator").sys;
    const refused = await callError(without.rotateKeyring.bind(without), {});
    expect(refused).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: "rotator may not sudo sys/rotate",
    });
    const withSudo = clientAs(2, "rotator-sudo").sys;
    expect((await call(withSudo.rotateKeyring.bind(withSudo), {})).term).toBeGreaterThan(1);
  });

  it("a change takes effect on a node as soon as that node has applied it", async () => {
    const secrets = asRoot().secrets;
    await call(secrets.put.bind(secrets), { path: "late/db", value: bytes("v") });
    const reader = clientAs(2, "late-reader").secrets;
    expect(await outcomeOf(() => call(reader.get.bind(reader), readRequest("late/db")))).toBe(
      "PERMISSION_DENIED",
    );
    await writePolicy(
      JSON.stringify({ name: "late", rules: [{ path: "late/*", capabilities: ["read"] }] }),
      "late",
    );
    const granted = await bind("late-*", ["late"]);
    await appliedOn(2, granted);
    expect(await outcomeOf(() => call(reader.get.bind(reader), readRequest("late/db")))).toBe("ok");
    const access = asRoot().access;
    const removed = (await call(access.deletePolicy.bind(access), { name: "late" })).revision;
    await appliedOn(2, removed);
    expect(await outcomeOf(() => call(reader.get.bind(reader), readRequest("late/db")))).toBe(
      "PERMISSION_DENIED",
    );
  });

  it("refuses a bad policy with every problem named, and the built-in root policy", async () => {
    const access = asRoot().access;
    const bad = await callError(access.writePolicy.bind(access), {
      name: "bad",
      document: [
        "name: bad",
        "tenant: acme",
        "rules:",
        "  - path: globex/*",
        "    capabilities: [read, fly]",
        "  - path: acme/*/x",
        "    capabilities: [read]",
      ].join("\n"),
    });
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toContain("globex/* is outside the tenant's prefix acme/");
    expect(bad.details).toContain('unknown capability "fly"');
    expect(bad.details).toContain("'*' may only end a pattern");
    const mismatch = await callError(access.writePolicy.bind(access), {
      name: "other",
      document: JSON.stringify({ name: "bad", rules: [{ path: "a/*", capabilities: ["read"] }] }),
    });
    expect(mismatch.details).toContain('the document names policy bad, but the request writes "other"');
    const rootWrite = await callError(access.deletePolicy.bind(access), { name: "root" });
    expect(rootWrite).toMatchObject({ code: status.INVALID_ARGUMENT });
    const unknown = await callError(access.bindIdentity.bind(access), { identity: "x", policies: ["nope"] });
    expect(unknown).toMatchObject({ code: status.NOT_FOUND, details: 'no policy named "nope"' });
    const unknowns = await callError(access.bindIdentity.bind(access), {
      identity: "x",
      policies: ["nope", "web", "bad name!"],
    });
    expect(unknowns.details).toBe('no policies named "bad name!", "nope"');
    // Hundreds named: the first ten by name, the rest counted (the message reaches logs and terminals).
    const many = await callError(
      access.createToken.bind(access),
      tokenRequest({ policies: Array.from({ length: 300 }, (_, i) => `p${String(i).padStart(3, "0")}`) }),
    );
    expect(many).toMatchObject({
      code: status.NOT_FOUND,
      details: `no policies named ${Array.from({ length: 10 }, (_, i) => `"p00${i}"`).join(", ")} and 290 more`,
    });
    const long = await callError(
      access.createToken.bind(access),
      tokenRequest({ policies: ["x".repeat(10_000)] }),
    );
    expect(long).toMatchObject({ code: status.NOT_FOUND, details: `no policy named "${"x".repeat(80)}"` });
    // A name no policy can have is refused in the words of policy names, for every policy call.
    const badNames = [
      await callError(access.writePolicy.bind(access), { name: "bad name!", document: "name: x" }),
      await callError(access.readPolicy.bind(access), { name: "bad name!" }),
      await callError(access.deletePolicy.bind(access), { name: "bad name!" }),
    ];
    for (const badName of badNames) {
      expect(badName).toMatchObject({
        code: status.INVALID_ARGUMENT,
        details: `a policy name is 1 to 64 lower-case letters, digits, '.', '_' or '-': got "bad name!"`,
      });
    }
    const badIdentity = await callError(access.bindIdentity.bind(access), {
      identity: "a*b",
      policies: ["web"],
    });
    expect(badIdentity.code).toBe(status.INVALID_ARGUMENT);
  });
});

describe("tenants", () => {
  it("a tenant's identities and tokens never read or list another tenant's paths, nor their names", async () => {
    for (const tenant of ["acme", "globex"]) {
      await writePolicy(
        JSON.stringify({
          name: `${tenant}-app`,
          tenant,
          rules: [{ path: `${tenant}/*`, capabilities: ["create", "read", "update", "list"] }],
        }),
        `${tenant}-app`,
      );
      await bind(`${tenant}-svc`, [`${tenant}-app`]);
      const secrets = asRoot().secrets;
      await call(secrets.put.bind(secrets), { path: `${tenant}/db`, value: bytes(`${tenant} secret`) });
    }
    const acme = clientAs(1, "acme-svc");
    const list = (prefix: string) =>
      call(acme.secrets.list.bind(acme.secrets), {
        prefix,
        after: "",
        limit: 0,
        consistency: Consistency.CONSISTENCY_LINEARIZABLE,
      });
    expect((await list("acme/")).paths).toEqual(["acme/db"]);
    for (const prefix of ["", "globex/", "g", "acme"])
      expect(await outcomeOf(() => list(prefix))).toBe("PERMISSION_DENIED");
    expect(await outcomeOf(() => call(acme.secrets.get.bind(acme.secrets), readRequest("globex/db")))).toBe(
      "PERMISSION_DENIED",
    );
    expect(
      await outcomeOf(() =>
        call(acme.secrets.getMetadata.bind(acme.secrets), {
          path: "globex/db",
          consistency: Consistency.CONSISTENCY_LINEARIZABLE,
        }),
      ),
    ).toBe("PERMISSION_DENIED");
    // Its policies and bindings are not for it to see either.
    expect(await outcomeOf(() => call(acme.access.listPolicies.bind(acme.access), {}))).toBe(
      "PERMISSION_DENIED",
    );
    expect(await outcomeOf(() => call(acme.access.listBindings.bind(acme.access), {}))).toBe(
      "PERMISSION_DENIED",
    );
    // A watch of everything is refused; a watch of its own prefix sees only its own changes.
    const everything = acme.secrets.watch({ prefix: "", fromRevision: 0, progressNotify: false });
    const refusal = await new Promise<ServiceError>((resolve) => everything.on("error", resolve));
    expect(refusal.code).toBe(status.PERMISSION_DENIED);
    // Its tokens: within its own policies only, and bound by them.
    const grab = await callError(
      acme.access.createToken.bind(acme.access),
      tokenRequest({ policies: ["globex-app"] }),
    );
    expect(grab).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: "acme-svc may not update sys/tokens/create",
    });
    const own = await createToken(acme, {});
    expect(own.info).toMatchObject({
      policies: ["acme-app"],
      tenant: "acme",
      createdBy: "acme-svc",
      orphan: true,
    });
    const viaToken = clientAs(2, "some-workload", own.token);
    expect(
      await outcomeOf(() => call(viaToken.secrets.get.bind(viaToken.secrets), readRequest("acme/db"))),
    ).toBe("ok");
    expect(
      await outcomeOf(() => call(viaToken.secrets.get.bind(viaToken.secrets), readRequest("globex/db"))),
    ).toBe("PERMISSION_DENIED");
  });

  it("a watch delivers only what its caller may read", async () => {
    await writePolicy(
      JSON.stringify({
        name: "feed",
        rules: [
          { path: "feed/*", capabilities: ["read"] },
          { path: "feed/private/*", capabilities: ["deny"] },
        ],
      }),
      "feed",
    );
    const revision = await bind("feed-reader", ["feed"]);
    await appliedOn(0, revision);
    const watchesOpen = () => metricOf(specs[0] as NodeSpec, "strongroom_watches_open");
    const openBefore = await watchesOpen();
    const watcher = clientAs(0, "feed-reader").secrets.watch({
      prefix: "feed/",
      fromRevision: 0,
      progressNotify: false,
    });
    const seen: string[] = [];
    watcher.on("data", (event: WatchEvent) => seen.push(event.path));
    watcher.on("error", () => {});
    // The node counts the watch once it is in place: changes from then on reach it.
    await eventually(async () => (await watchesOpen()) === openBefore + 1, 5000);
    const secrets = asRoot(1).secrets;
    for (const path of ["feed/private/key", "feed/public", "feed/private/other", "feed/last"])
      await call(secrets.put.bind(secrets), { path, value: bytes("v") });
    await eventually(() => seen.includes("feed/last"), 5000);
    watcher.cancel();
    expect(seen).toEqual(["feed/public", "feed/last"]);
    await eventually(async () => (await watchesOpen()) === openBefore, 5000);
  });
});

describe("tokens", () => {
  it("a child token works on every node, renews within its limit, and expires everywhere", async () => {
    await writePolicy(
      JSON.stringify({ name: "tok", rules: [{ path: "tok/*", capabilities: ["create", "read", "update"] }] }),
      "tok",
    );
    const parent = await createToken(asRoot(), { policies: ["tok"], ttlMs: 60_000 });
    expect(parent.token).toMatch(/^sr\./);
    expect(parent.info).toMatchObject({
      policies: ["tok"],
      orphan: false,
      renewable: false,
      usesLeft: 0,
      useLimited: false,
    });
    const holder = clientAs(0, "tok-holder", parent.token);
    // The child's clients (and their certificates: a key pair each, made on this thread, which the
    // in-process nodes share) exist before the child does, so its short life is spent on calls.
    const childOn = [0, 1, 2].map((index) => clientAs(index, "tok-child"));
    const child = await createToken(holder, { ttlMs: 2500, maxTtlMs: 3500, renewable: true });
    expect(child.info).toMatchObject({ policies: ["tok"], orphan: false, renewable: true, ttlMs: 2500 });
    for (const clients of childOn) clients.useToken(child.token);
    const tokensOn = async (index: number) => {
      const spec = specs[index];
      const metrics = await (await fetch(`http://${spec?.host}:${spec?.httpPort}/metrics`)).text();
      return Number(/^strongroom_access_records\{area="token"\} (\d+)$/m.exec(metrics)?.[1] ?? "-1");
    };
    // A linearizable lookup on n1 first: n1 has applied the child's creation when it answers.
    const onFirst = asRoot(0).access;
    await call(onFirst.lookupToken.bind(onFirst), { accessor: child.info?.accessor ?? "" });
    const withChild = await tokensOn(0);
    // More than the parent's policies needs sudo on sys/tokens/create.
    const more = await callError(
      holder.access.createToken.bind(holder.access),
      tokenRequest({ policies: ["tok", "web"] }),
    );
    expect(more.code).toBe(status.PERMISSION_DENIED);

    for (const [index, clients] of childOn.entries()) {
      await call(clients.secrets.put.bind(clients.secrets), { path: `tok/n${index}`, value: bytes("v") });
    }
    const self = childOn[1]?.access;
    if (self === undefined) throw new Error("no client of n2");
    const looked = await call(self.lookupToken.bind(self), { accessor: "" });
    expect(looked).toMatchObject({ accessor: child.info?.accessor, createdBy: "tok-holder" });
    const renewed = await call(self.renewToken.bind(self), { accessor: "", incrementMs: 60_000 });
    // Never past max_ttl_ms.
    expect(renewed.expiresAtMs).toBe(looked.maxExpiresAtMs);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, renewed.expiresAtMs - Date.now()) + 50));
    for (const clients of childOn) {
      const expired = await callError(clients.secrets.get.bind(clients.secrets), readRequest("tok/n0"));
      expect(expired).toMatchObject({ code: status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    }
    const lookup = asRoot(1).access;
    const gone = await callError(lookup.lookupToken.bind(lookup), { accessor: child.info?.accessor ?? "" });
    expect(gone.code).toBe(status.NOT_FOUND);
    // And its record goes from every node (the leader's tidy), so it no longer counts.
    for (let index = 0; index < 3; index++) {
      await eventually(async () => (await tokensOn(index)) === withChild - 1, 5000);
    }
  });

  it("a revoked token and its children are refused on every node once the revocation applies there", async () => {
    const parent = await createToken(asRoot(), { policies: ["tok"], ttlMs: 60_000 });
    const child = await createToken(clientAs(0, "tok-holder", parent.token), { ttlMs: 60_000 });
    const lookup = asRoot(2).access;
    expect(
      await call(lookup.lookupToken.bind(lookup), { accessor: child.info?.accessor ?? "" }),
    ).toMatchObject({
      policies: ["tok"],
    });
    const access = asRoot(1).access;
    const { revision } = await call(access.revokeToken.bind(access), {
      accessor: parent.info?.accessor ?? "",
    });
    for (let index = 0; index < 3; index++) {
      await appliedOn(index, revision);
      for (const token of [parent.token, child.token]) {
        const secrets = clientAs(index, "tok-holder", token).secrets;
        const refused = await callError(secrets.get.bind(secrets), readRequest("tok/n0"));
        expect(refused).toMatchObject({ code: status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
      }
    }
    const gone = await callError(lookup.lookupToken.bind(lookup), { accessor: parent.info?.accessor ?? "" });
    expect(gone.code).toBe(status.NOT_FOUND);
  });

  it("watches ended by their token's revocation do not make their identity wait with its next token", async () => {
    // More watches than the backoff's free failures (5): each ends when it re-checks the revoked
    // token, which is the server's check, not the identity presenting a bad token.
    const revokedToken = await createToken(asRoot(), { policies: ["tok"], ttlMs: 60_000 });
    const watchers = Array.from({ length: 7 }, () =>
      clientAs(0, "watch-holder", revokedToken.token).secrets.watch({
        prefix: "tok/watched/",
        fromRevision: 0,
        progressNotify: false,
      }),
    );
    const ends = watchers.map(
      (watcher) => new Promise<ServiceError>((resolve) => watcher.on("error", resolve)),
    );
    // Each in place (the node sent its headers) before the token is revoked.
    await Promise.all(watchers.map((watcher) => new Promise((resolve) => watcher.once("metadata", resolve))));
    const access = asRoot(1).access;
    const { revision } = await call(access.revokeToken.bind(access), {
      accessor: revokedToken.info?.accessor ?? "",
    });
    await appliedOn(0, revision);
    const secrets = asRoot(1).secrets;
    await call(secrets.put.bind(secrets), { path: "tok/watched/a", value: bytes("v") });
    for (const end of await Promise.all(ends)) {
      expect(end.code).toBe(status.UNAUTHENTICATED);
      expect(end.metadata?.get("strongroom-reason")).toEqual(["TOKEN_INVALID"]);
    }
    const fresh = await createToken(asRoot(), { policies: ["tok"], ttlMs: 60_000 });
    const next = clientAs(0, "watch-holder", fresh.token).secrets;
    expect(await outcomeOf(() => call(next.get.bind(next), readRequest("tok/watched/a")))).toBe("ok");
  });

  it("a quiet watch that asked for progress ends once its token is revoked, with nothing written under it", async () => {
    const revokedToken = await createToken(asRoot(), { policies: ["tok"], ttlMs: 60_000 });
    const watcher = clientAs(0, "quiet-holder", revokedToken.token).secrets.watch({
      prefix: "tok/quiet/",
      fromRevision: 0,
      progressNotify: true,
    });
    const told: WatchEvent[] = [];
    watcher.on("data", (event: WatchEvent) => told.push(event));
    const ended = new Promise<ServiceError>((resolve) => watcher.on("error", resolve));
    await new Promise((resolve) => watcher.once("metadata", resolve));
    const access = asRoot(1).access;
    const started = performance.now();
    await call(access.revokeToken.bind(access), { accessor: revokedToken.info?.accessor ?? "" });
    // Told at its next progress (every second by default), not at a change that may never come.
    const end = await ended;
    expect(end.metadata?.get("strongroom-reason")).toEqual(["TOKEN_INVALID"]);
    expect(performance.now() - started).toBeLessThan(5000);
    // Nothing under its prefix changed: at most progress (path empty) came before the end.
    expect(
      told.filter((event) => event.kind !== ChangeKind.CHANGE_KIND_PROGRESS || event.path !== ""),
    ).toEqual([]);
  });

  it("a token with a use limit serves that many calls, on any node, and no more", async () => {
    const limited = await createToken(asRoot(), { policies: ["tok"], ttlMs: 60_000, numUses: 3 });
    expect(limited.info).toMatchObject({ usesLeft: 3, useLimited: true });
    const outcomes: string[] = [];
    for (let index = 0; index < 4; index++) {
      const secrets = clientAs(index, "limited", limited.token).secrets;
      outcomes.push(await outcomeOf(() => call(secrets.get.bind(secrets), readRequest("tok/n0"))));
    }
    expect(outcomes).toEqual(["ok", "ok", "ok", "TOKEN_INVALID"]);
    // Spent concurrently through all three nodes, the uses still add up.
    const raced = await createToken(asRoot(), { policies: ["tok"], ttlMs: 60_000, numUses: 3 });
    const racing = await Promise.all(
      [0, 1, 2, 0, 1, 2].map((index) => {
        const secrets = clientAs(index, "racer", raced.token).secrets;
        return outcomeOf(() => call(secrets.get.bind(secrets), readRequest("tok/n0")));
      }),
    );
    expect(racing.filter((outcome) => outcome === "ok")).toHaveLength(3);
    expect(racing.filter((outcome) => outcome === "TOKEN_INVALID")).toHaveLength(3);
    // A client cannot call what nodes use to spend a use.
    const access = clientAs(1, "limited").access;
    const internal = await callError(access.consumeTokenUse.bind(access), {});
    expect(internal).toMatchObject({ code: status.PERMISSION_DENIED });
  });

  it("a use-limited token's last use works on any node; a call refused first spends nothing", async () => {
    // A write through a follower is checked there and again on the leader: its use is spent once,
    // where the write runs, so the leader's check still finds the token of a last use.
    for (let index = 0; index < 3; index++) {
      const once = await createToken(asRoot(), { policies: ["tok"], ttlMs: 60_000, numUses: 1 });
      const secrets = clientAs(index, "single-use", once.token).secrets;
      await call(secrets.put.bind(secrets), { path: `tok/once-${index}`, value: bytes("v") });
      expect(await outcomeOf(() => call(secrets.get.bind(secrets), readRequest(`tok/once-${index}`)))).toBe(
        "TOKEN_INVALID",
      );
    }
    // Refused by its policy, on each node: no use spent.
    const twice = await createToken(asRoot(), { policies: ["tok"], ttlMs: 60_000, numUses: 2 });
    for (let index = 0; index < 3; index++) {
      const secrets = clientAs(index, "twice", twice.token).secrets;
      const refused = await callError(secrets.put.bind(secrets), { path: "elsewhere/x", value: bytes("v") });
      expect(refused.code).toBe(status.PERMISSION_DENIED);
    }
    const lookup = asRoot(1).access;
    expect(
      await call(lookup.lookupToken.bind(lookup), { accessor: twice.info?.accessor ?? "" }),
    ).toMatchObject({
      usesLeft: 2,
    });
    // It may not make tokens whose uses would not count against its own.
    const creator = clientAs(2, "twice", twice.token);
    const refusedChild = await callError(creator.access.createToken.bind(creator.access), tokenRequest({}));
    expect(refusedChild).toMatchObject({ code: status.PERMISSION_DENIED });
    expect(refusedChild.details).toBe(
      "a token with a use limit cannot create tokens: their uses would not count against it",
    );
    // Its last use may look itself up, on a follower or the leader: it is shown spent.
    const self = clientAs(0, "twice", twice.token).access;
    expect(await call(self.lookupToken.bind(self), { accessor: "" })).toMatchObject({
      usesLeft: 0,
      useLimited: true,
    });
    expect(await outcomeOf(() => call(self.lookupToken.bind(self), { accessor: "" }))).toBe("TOKEN_INVALID");
  });

  it("renewing a use-limited token keeps its spent uses spent", async () => {
    const renewable = await createToken(asRoot(), {
      policies: ["tok"],
      ttlMs: 60_000,
      maxTtlMs: 600_000,
      renewable: true,
      numUses: 4,
    });
    const holder = clientAs(1, "renewer", renewable.token);
    await call(holder.secrets.get.bind(holder.secrets), readRequest("tok/n0"));
    // The renewal is a call of its own: it spends the third use.
    const renewed = await call(holder.access.renewToken.bind(holder.access), {
      accessor: "",
      incrementMs: 0,
    });
    expect(renewed.usesLeft).toBe(2);
    const lookup = asRoot(2).access;
    expect(
      await call(lookup.lookupToken.bind(lookup), { accessor: renewable.info?.accessor ?? "" }),
    ).toMatchObject({ usesLeft: 2 });
    await call(holder.secrets.get.bind(holder.secrets), readRequest("tok/n0"));
    // The last use cannot renew what it spends.
    const last = await callError(holder.access.renewToken.bind(holder.access), {
      accessor: "",
      incrementMs: 0,
    });
    expect(last).toMatchObject({ code: status.NOT_FOUND });
    expect(await outcomeOf(() => call(holder.secrets.get.bind(holder.secrets), readRequest("tok/n0")))).toBe(
      "TOKEN_INVALID",
    );
  });

  it("a token role lets a caller without sudo or the policies create tokens within it, on any node", async () => {
    const rule = (path: string, capabilities: string[]) => ({ path, capabilities });
    const policy = async (name: string, rules: ReturnType<typeof rule>[]) =>
      writePolicy(JSON.stringify({ name, rules }), name);
    await policy("ci-deploy", [rule("deploy/*", ["create", "read", "update"])]);
    await policy("ci-read", [rule("deploy/*", ["read"])]);
    await policy("ci-creator", [rule("sys/tokens/create/ci", ["update"])]);
    // Update without sudo on roles: not enough to write one, which hands out policies.
    await policy("role-writer", [rule("sys/tokens/roles/*", ["update", "read", "list", "delete"])]);
    await bind("ci-runner", ["ci-creator"]);
    await bind("role-writer", ["role-writer"]);
    const admin = asRoot(1).access;
    const ci = tokenRole({
      name: "ci",
      allowedPolicies: ["ci-read", "ci-deploy", "ci-read"],
      ttlMs: 60_000,
      maxTtlMs: 120_000,
      orphan: true,
    });
    const written = await call(admin.writeTokenRole.bind(admin), ci);
    await appliedOn(2, written.revision);

    // The runner holds no policy of the role, no token and no sudo: the role is its grant.
    const runner = clientAs(2, "ci-runner").access;
    const created = await createToken(clientAs(2, "ci-runner"), { role: "ci", displayName: "build 7" });
    expect(created.info).toMatchObject({
      policies: ["ci-deploy", "ci-read"],
      orphan: true,
      renewable: false,
      ttlMs: 60_000,
      role: "ci",
      createdBy: "ci-runner",
      useLimited: false,
    });
    const info = created.info;
    if (info === undefined) throw new Error("no token info");
    expect(info.maxExpiresAtMs - info.createdAtMs).toBe(120_000);
    const deployer = clientAs(0, "ci-build", created.token).secrets;
    await call(deployer.put.bind(deployer), { path: "deploy/app", value: bytes("v1") });
    const narrower = await createToken(clientAs(1, "ci-runner"), {
      role: "ci",
      policies: ["ci-read"],
      ttlMs: 5000,
    });
    expect(narrower.info).toMatchObject({ policies: ["ci-read"], ttlMs: 5000, role: "ci" });

    // More than the role allows is refused, whatever the caller holds otherwise.
    const refusal = async (request: Partial<CreateTokenRequest>) => {
      const error = await callError(runner.createToken.bind(runner), tokenRequest(request));
      return { code: error.code, details: error.details };
    };
    expect(await refusal({ role: "ci", policies: ["ci-deploy", "tok"] })).toEqual({
      code: status.PERMISSION_DENIED,
      details: 'the token role ci does not allow policy "tok"',
    });
    expect(await refusal({ role: "ci", maxTtlMs: 3_600_000 })).toEqual({
      code: status.INVALID_ARGUMENT,
      details: "a max TTL of 1h is above the token role ci's 2m",
    });
    expect(await refusal({ role: "ci", ttlMs: 600_000 })).toEqual({
      code: status.INVALID_ARGUMENT,
      details: "a TTL of 10m is above the token's max TTL of 2m",
    });
    expect(await refusal({ role: "ci", renewable: true })).toMatchObject({ code: status.INVALID_ARGUMENT });
    // A role it is not granted, existing or not, says nothing of the role.
    expect(await refusal({ role: "nightly" })).toEqual({
      code: status.PERMISSION_DENIED,
      details: "ci-runner may not update sys/tokens/create/nightly",
    });
    expect(await refusal({ role: "bad/name" })).toMatchObject({ code: status.INVALID_ARGUMENT });
    // Without the role, the same policies need sudo, as before.
    expect(await refusal({ policies: ["ci-deploy"] })).toMatchObject({ code: status.PERMISSION_DENIED });

    // Roles are written with sudo only; what a role may allow is checked.
    const writer = clientAs(0, "role-writer").access;
    const roleRefusal = async (clientRole: TokenRole, by = admin) => {
      const error = await callError(by.writeTokenRole.bind(by), clientRole);
      return { code: error.code, details: error.details };
    };
    expect(await roleRefusal(tokenRole({ name: "mine", allowedPolicies: ["ci-read"] }), writer)).toEqual({
      code: status.PERMISSION_DENIED,
      details: "role-writer may not sudo sys/tokens/roles/mine",
    });
    expect(await roleRefusal(tokenRole({ name: "all", allowedPolicies: ["root"] }))).toEqual({
      code: status.INVALID_ARGUMENT,
      details: "a token role cannot allow the root policy",
    });
    expect(await roleRefusal(tokenRole({ name: "none", allowedPolicies: [] }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
    expect(await roleRefusal(tokenRole({ name: "ghost", allowedPolicies: ["no-such"] }))).toEqual({
      code: status.NOT_FOUND,
      details: 'no policy named "no-such"',
    });
    expect(await roleRefusal(tokenRole({ name: "-x", allowedPolicies: ["ci-read"] }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
    expect(
      await roleRefusal(
        tokenRole({ name: "long", allowedPolicies: ["ci-read"], ttlMs: 7_200_000, maxTtlMs: 3_600_000 }),
      ),
    ).toEqual({ code: status.INVALID_ARGUMENT, details: "a TTL of 2h is above the role's max TTL of 1h" });

    // Read and listed on any node, by who may read them.
    const reader = asRoot(2).access;
    expect(await call(reader.readTokenRole.bind(reader), { name: "ci" })).toEqual({
      ...ci,
      allowedPolicies: ["ci-deploy", "ci-read"],
    });
    expect((await call(writer.listTokenRoles.bind(writer), {})).names).toContain("ci");
    expect(await callError(runner.readTokenRole.bind(runner), { name: "ci" })).toMatchObject({
      code: status.PERMISSION_DENIED,
    });

    // Deleted: no new token against it; those made stay as they were.
    const deleted = await call(admin.deleteTokenRole.bind(admin), { name: "ci" });
    await appliedOn(2, deleted.revision);
    expect(await refusal({ role: "ci" })).toEqual({
      code: status.NOT_FOUND,
      details: "no token role named ci",
    });
    expect(await call(deployer.get.bind(deployer), readRequest("deploy/app"))).toMatchObject({ version: 1 });
    expect(await callError(admin.deleteTokenRole.bind(admin), { name: "ci" })).toMatchObject({
      code: status.NOT_FOUND,
    });
  });

  it("a role's tokens are children of the creator's token unless the role makes orphans, and take its use limit", async () => {
    await writePolicy(
      JSON.stringify({ name: "batch-work", rules: [{ path: "batch/*", capabilities: ["read"] }] }),
      "batch-work",
    );
    await writePolicy(
      JSON.stringify({
        name: "batch-creator",
        rules: [{ path: "sys/tokens/create/batch", capabilities: ["update"] }],
      }),
      "batch-creator",
    );
    const admin = asRoot().access;
    await call(
      admin.writeTokenRole.bind(admin),
      tokenRole({ name: "batch", allowedPolicies: ["batch-work"], renewable: true, numUses: 3 }),
    );
    const parent = await createToken(asRoot(), { policies: ["batch-creator"], ttlMs: 60_000 });
    const holder = clientAs(1, "batch-holder", parent.token);
    const child = await createToken(holder, { role: "batch", renewable: true });
    expect(child.info).toMatchObject({
      policies: ["batch-work"],
      orphan: false,
      renewable: true,
      usesLeft: 3,
      useLimited: true,
      role: "batch",
    });
    const fewer = await createToken(holder, { role: "batch", numUses: 2 });
    expect(fewer.info).toMatchObject({ usesLeft: 2, renewable: true });
    const more = await callError(
      holder.access.createToken.bind(holder.access),
      tokenRequest({ role: "batch", numUses: 5 }),
    );
    expect(more).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: "5 uses is more than the token role batch allows (3)",
    });
    const orphan = await callError(
      holder.access.createToken.bind(holder.access),
      tokenRequest({ role: "batch", orphan: true }),
    );
    expect(orphan).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: "the token role batch makes child tokens, not orphans",
    });

    // Revoking the creator's token takes the role's tokens with it, on every node.
    const rootSecrets = asRoot().secrets;
    await call(rootSecrets.put.bind(rootSecrets), { path: "batch/n0", value: bytes("v") });
    const user = clientAs(2, "batch-user", child.token).secrets;
    expect(await outcomeOf(() => call(user.get.bind(user), readRequest("batch/n0")))).toBe("ok");
    const revoked = await call(admin.revokeToken.bind(admin), { accessor: parent.info?.accessor ?? "" });
    await appliedOn(2, revoked.revision);
    expect(await outcomeOf(() => call(user.get.bind(user), readRequest("batch/n0")))).toBe("TOKEN_INVALID");
  });

  it("a token bound to identities is valid only from their certificates, on every node, as are a role's", async () => {
    await writePolicy(
      JSON.stringify({
        name: "bound-work",
        rules: [{ path: "bound/*", capabilities: ["create", "read", "update"] }],
      }),
      "bound-work",
    );
    const token = await createToken(asRoot(), {
      policies: ["bound-work"],
      ttlMs: 60_000,
      boundIdentities: ["deploy-*", "ops", "ops"],
    });
    expect(token.info?.boundIdentities).toEqual(["deploy-*", "ops"]);
    const write = (index: number, identity: string) => {
      const secrets = clientAs(index, identity, token.token).secrets;
      return outcomeOf(() =>
        call(secrets.put.bind(secrets), { path: `bound/${identity}-${index}`, value: bytes("v") }),
      );
    };
    // Followers check it before they forward, the leader again: from a bound identity, on any node.
    for (const index of [0, 1, 2]) {
      expect(await write(index, "deploy-web")).toBe("ok");
      expect(await write(index, "ops")).toBe("ok");
      // Any other certificate presents no valid token at all.
      expect(await write(index, "thief")).toBe("TOKEN_INVALID");
    }
    const refused = await callError(
      clientAs(1, "operations", token.token).secrets.get.bind(clientAs(1, "operations", token.token).secrets),
      readRequest("bound/ops-0"),
    );
    expect(refused).toMatchObject({
      code: status.UNAUTHENTICATED,
      reason: "TOKEN_INVALID",
      details: "the token is not valid for the client identity operations",
    });

    // Its children are bound within its binding: all of it unless they ask less, never elsewhere.
    const holder = clientAs(1, "ops", token.token);
    const child = await createToken(holder, { ttlMs: 60_000 });
    expect(child.info?.boundIdentities).toEqual(["deploy-*", "ops"]);
    const readWith = (identity: string, childToken: string) => {
      const secrets = clientAs(2, identity, childToken).secrets;
      return outcomeOf(() => call(secrets.get.bind(secrets), readRequest("bound/ops-0")));
    };
    expect(await readWith("thief", child.token)).toBe("TOKEN_INVALID");
    expect(await readWith("ops", child.token)).toBe("ok");
    const narrower = await createToken(holder, {
      ttlMs: 60_000,
      boundIdentities: ["deploy-web", "deploy-db*"],
    });
    expect(narrower.info?.boundIdentities).toEqual(["deploy-db*", "deploy-web"]);
    const grandchild = await createToken(clientAs(0, "deploy-web", narrower.token), { ttlMs: 60_000 });
    expect(grandchild.info?.boundIdentities).toEqual(["deploy-db*", "deploy-web"]);
    for (const boundIdentities of [["thief"], ["deploy-web", "d*"], ["op*"]]) {
      const wider = await callError(
        holder.access.createToken.bind(holder.access),
        tokenRequest({ ttlMs: 60_000, boundIdentities }),
      );
      expect(wider).toMatchObject({
        code: status.PERMISSION_DENIED,
        details: `the caller's token is bound to deploy-*, ops: it cannot make tokens bound to ${boundIdentities.filter((pattern) => pattern !== "deploy-web").join(", ")}`,
      });
    }

    // A role's binding goes to every token made with it; a request cannot move it.
    const admin = asRoot().access;
    await call(
      admin.writeTokenRole.bind(admin),
      tokenRole({ name: "bound-deploy", allowedPolicies: ["bound-work"], boundIdentities: ["deploy-*"] }),
    );
    expect((await call(admin.readTokenRole.bind(admin), { name: "bound-deploy" })).boundIdentities).toEqual([
      "deploy-*",
    ]);
    const fromRole = await createToken(asRoot(), { role: "bound-deploy" });
    expect(fromRole.info).toMatchObject({ boundIdentities: ["deploy-*"], role: "bound-deploy" });
    const elsewhere = await callError(
      admin.createToken.bind(admin),
      tokenRequest({ role: "bound-deploy", boundIdentities: ["thief"] }),
    );
    expect(elsewhere).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details:
        "the token role bound-deploy binds its tokens to deploy-*: a request cannot bind them elsewhere",
    });
    const roleTokenUse = clientAs(2, "thief", fromRole.token).secrets;
    expect(await outcomeOf(() => call(roleTokenUse.get.bind(roleTokenUse), readRequest("bound/ops-0")))).toBe(
      "TOKEN_INVALID",
    );
    // Bad patterns and too many are refused.
    for (const boundIdentities of [
      ["a b"],
      ["*x"],
      Array.from({ length: 17 }, (_, index) => `id-${index}`),
    ]) {
      const bad = await callError(
        admin.createToken.bind(admin),
        tokenRequest({ policies: ["bound-work"], boundIdentities }),
      );
      expect(bad.code).toBe(status.INVALID_ARGUMENT);
    }
  });

  it("an identity that keeps presenting invalid tokens is made to wait", async () => {
    const forged = `sr.${"A".repeat(43)}`;
    const guesser = clientAs(0, "guesser", forged).secrets;
    const reasons: string[] = [];
    for (let attempt = 0; attempt < 7; attempt++) {
      reasons.push(await outcomeOf(() => call(guesser.get.bind(guesser), readRequest("tok/n0"))));
    }
    expect(reasons).toEqual([...Array(5).fill("TOKEN_INVALID"), "RATE_LIMITED", "RATE_LIMITED"]);
    const limited = await callError(guesser.get.bind(guesser), readRequest("tok/n0"));
    expect(limited.code).toBe(status.RESOURCE_EXHAUSTED);
    // Another identity is not held back by it.
    const honest = clientAs(0, "honest").secrets;
    expect(await outcomeOf(() => call(honest.get.bind(honest), readRequest("tok/n0")))).toBe(
      "PERMISSION_DENIED",
    );
    // A malformed authorization value is refused as such.
    const malformed = clientAs(0, "malformed", "not-a-token").secrets;
    expect(await callError(malformed.get.bind(malformed), readRequest("tok/n0"))).toMatchObject({
      code: status.UNAUTHENTICATED,
      reason: "TOKEN_INVALID",
    });
  });

  it("an identity over its rate limit is refused with a retry-after hint; others are not", async () => {
    const secrets = asRoot(2).secrets;
    const outcomes: string[] = [];
    for (let i = 0; i < 3; i++) {
      outcomes.push(
        await outcomeOf(() => call(secrets.put.bind(secrets), { path: "limited/x", value: bytes("v") })),
      );
    }
    expect(outcomes).toEqual(["ok", "ok", "RATE_LIMITED"]);
    const error = await call(secrets.put.bind(secrets), { path: "limited/x", value: bytes("v") }).catch(
      (caught: ServiceError) => caught,
    );
    expect((error as ServiceError).code).toBe(status.RESOURCE_EXHAUSTED);
    const retryAfter = Number((error as ServiceError).metadata.get("strongroom-retry-after-ms")[0]);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(1000);
    // Other paths, and other identities, are not held back.
    expect(
      await outcomeOf(() => call(secrets.put.bind(secrets), { path: "tok/free", value: bytes("v") })),
    ).toBe("ok");
    const other = clientAs(2, "someone-else").secrets;
    expect(await outcomeOf(() => call(other.get.bind(other), readRequest("limited/x")))).toBe(
      "PERMISSION_DENIED",
    );
    const metrics = await (await fetch(`http://${specs[2]?.host}:${specs[2]?.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/strongroom_requests_refused_total\{reason="RATE_LIMITED"\} [1-9]/);
    expect(metrics).toMatch(/strongroom_requests_refused_total\{reason="PERMISSION_DENIED"\} [1-9]/);
  });

  it("the root token can revoke itself, and is refused on every node after", async () => {
    // Another root-capable path stays: a binding of the operator's identity to root first.
    await bind("break-glass", ["root"]);
    const self = asRoot(0).access;
    const { revision } = await call(self.revokeToken.bind(self), { accessor: "" });
    for (let index = 0; index < 3; index++) {
      await appliedOn(index, revision);
      const secrets = asRoot(index).secrets;
      const refused = await callError(secrets.get.bind(secrets), readRequest("tok/n0"));
      expect(refused).toMatchObject({ code: status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    }
    const glass = clientAs(1, "break-glass").secrets;
    expect(await outcomeOf(() => call(glass.get.bind(glass), readRequest("tok/n0")))).toBe("ok");

    // A threshold of unseal shares makes a new root token; a wrong share does not.
    const sys = clientAs(2, "share-holder").sys;
    const wrong = await callError(sys.generateRoot.bind(sys), {
      share: "not-a-share",
      nonce: "",
      reset: false,
    });
    expect(wrong.code).toBe(status.INVALID_ARGUMENT);
    const generated = await call(sys.generateRoot.bind(sys), { share: unsealShare, nonce: "", reset: false });
    expect(generated).toMatchObject({ complete: true });
    expect(generated.rootToken).toMatch(/^sr\./);
    expect(generated.rootToken).not.toBe(rootToken);
    rootToken = generated.rootToken;
    const again = asRoot(0).secrets;
    expect(await outcomeOf(() => call(again.get.bind(again), readRequest("tok/n0")))).toBe("ok");
  });

  it("an auditor can tell whether an audit entry holds a given value, without the log holding it", async () => {
    const value = bytes("audited-value-51c2");
    const secrets = asRoot(1).secrets;
    await call(secrets.put.bind(secrets), { path: "tok/audited", value });
    const sys = asRoot(1).sys;
    const { hash } = await call(sys.auditHash.bind(sys), { input: value });
    expect(hash).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    const dataDir = configs.get("n2")?.config.dataDir ?? "";
    const lines = listAuditFiles(join(dataDir, "audit")).flatMap((file) =>
      readFileSync(file, "utf8").split("\n"),
    );
    const entry = lines.find(
      (line) => line.includes('"path":"tok/audited"') && line.includes('"type":"request"'),
    );
    expect(entry).toContain(hash);
    expect(lines.join("\n")).not.toContain("audited-value-51c2");
    const refused = await callError(clientAs(1, "nobody").sys.auditHash.bind(clientAs(1, "nobody").sys), {
      input: value,
    });
    expect(refused.code).toBe(status.PERMISSION_DENIED);
  });
});
