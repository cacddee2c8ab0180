// The PKI engine, leases and emergency revocation on a running 3-node cluster (in-process nodes,
// real mutual TLS, calls spread over the nodes): the internal CA created once; roles and what
// they refuse; issued certificates that verify against the CA and whose key matches; leases of
// certificates and tokens listed, renewed where they can be, revoked alone and by prefix, and
// expired by the leader; the revocation list served by every node, verified by OpenSSL; the
// per-identity lease bound; and an emergency revocation of an identity - refused on every node,
// its tokens and certificates revoked, its readable secrets rotated and seen by a Watch consumer -
// with the time each step took.

import { execFileSync } from "node:child_process";
import { createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type StrongroomClient, StrongroomError } from "../../client/index.js";
import type { WatchEvent } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { InProcessCluster, nodeSpecs, writeConfigs } from "../server/cluster-harness.js";
import { TestPki } from "../server/pki-fixture.js";
import { eventually } from "../support/eventually.js";

const pki = new TestPki("pki-leases");
const root = mkdtempSync(join(tmpdir(), "strongroom-pki-leases-"));
// 127.0.0.191-193, ports 59000-59002.
const specs = nodeSpecs(3, 59_000, 190);
const configs = writeConfigs(pki, root, specs, () => ({
  raft: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 },
  leases: { perIdentityMax: 4, sweepMs: 100 },
  auth: { tidyIntervalMs: 200 },
}));
const running = new InProcessCluster(pki);
const endpoints = specs.map((spec) => `${spec.host}:${spec.clientPort}`);
const opened: StrongroomClient[] = [];
let rootToken = "";

/** An SDK client as certificate identity `name`, of every node or of one. */
function sdk(name: string, token: string | null = null, only?: number): StrongroomClient {
  const files = pki.client(name);
  const endpoint = only === undefined ? undefined : endpoints[only];
  const client = createClient({
    endpoints: endpoint === undefined ? endpoints : [endpoint],
    tls: { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile },
    token,
    deadlineMs: 15_000,
  });
  opened.push(client);
  return client;
}

const operator = () => sdk("operator", rootToken);

/** The strongroom reason a call is refused with ("ok" when it is not). */
async function reasonOf(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
    return "ok";
  } catch (error) {
    if (error instanceof StrongroomError) return error.reason;
    throw error;
  }
}

async function appliedEverywhere(revision: number): Promise<void> {
  for (const index of endpoints.keys()) {
    const client = sdk("operator", rootToken, index);
    await eventually(async () => (await client.cluster.status({})).appliedIndex >= revision, 5000);
  }
}

function opensslVerifiesCrl(caPem: string, crlPem: string): string {
  const directory = mkdtempSync(join(root, "crl-"));
  writeFileSync(join(directory, "ca.pem"), caPem);
  writeFileSync(join(directory, "crl.pem"), crlPem);
  return execFileSync(
    "openssl",
    ["crl", "-in", join(directory, "crl.pem"), "-CAfile", join(directory, "ca.pem"), "-noout", "-text"],
    { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
  );
}

beforeAll(async () => {
  for (const spec of specs) {
    const entry = configs.get(spec.id);
    if (entry === undefined) throw new Error("no config");
    await running.start(spec, entry.config);
  }
  ({ rootToken } = await running.initializeWithOneShare("n1"));
  const admin = operator();
  await admin.access.writePolicy({
    name: "issuer",
    document: JSON.stringify({
      name: "issuer",
      rules: [
        { path: "sys/pki/issue/*", capabilities: ["update"] },
        { path: "sys/tokens/create", capabilities: ["update"] },
      ],
    }),
  });
  await admin.access.writePolicy({
    name: "app-reader",
    document: JSON.stringify({
      name: "app-reader",
      rules: [
        { path: "app/*", capabilities: ["read"] },
        { path: "sys/pki/issue/web", capabilities: ["update"] },
      ],
    }),
  });
  for (const identity of ["svc-a", "svc-b"])
    await admin.access.bindIdentity({ identity, policies: ["issuer"] });
  const bound = await admin.access.bindIdentity({ identity: "mallory", policies: ["app-reader"] });
  await appliedEverywhere(bound.revision);
}, 60_000);

afterAll(async () => {
  for (const client of opened) client.close();
  await running.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

describe("the internal CA and its roles", () => {
  it("is created once, and served by every node", async () => {
    const admin = operator();
    expect(await reasonOf(() => admin.pki.getCa({}))).toBe("NO_CA");
    expect(await reasonOf(() => admin.pki.createCa({ commonName: "", ttlMs: 0 }))).toBe("INVALID_ARGUMENT");
    expect(await reasonOf(() => sdk("svc-a").pki.createCa({ commonName: "rogue CA", ttlMs: 0 }))).toBe(
      "PERMISSION_DENIED",
    );
    const ca = await admin.pki.createCa({ commonName: "strongroom internal CA", ttlMs: 0 });
    const certificate = new X509Certificate(ca.certificatePem);
    expect(certificate.ca).toBe(true);
    expect(certificate.subject).toContain("CN=strongroom internal CA");
    // Five years by default.
    expect(ca.notAfterMs - Date.now()).toBeGreaterThan(4.9 * 365 * 86_400_000);
    expect(await reasonOf(() => admin.pki.createCa({ commonName: "second", ttlMs: 0 }))).toBe("CA_EXISTS");
    for (const index of endpoints.keys()) {
      // Any caller may fetch it, on any node.
      expect((await sdk("svc-b", null, index).pki.getCa({})).serial).toBe(ca.serial);
    }
  });

  it("keeps roles and refuses malformed ones with the reason", async () => {
    const admin = operator();
    const role = {
      name: "web",
      allowedNames: ["*.svc.test", "worker-*"],
      ttlMs: 60_000,
      maxTtlMs: 600_000,
      serverAuth: true,
    };
    for (const [bad, why] of [
      [{ ...role, name: "no spaces" }, /role name/],
      [{ ...role, allowedNames: [] }, /1 to 100 name patterns/],
      [{ ...role, allowedNames: ["*.*.test"] }, /more than one '\*'/],
      [{ ...role, allowedNames: ["bad_name.test"] }, /not a DNS name/],
      [
        { ...role, ttlMs: 700_000 },
        /a role's TTL must be from 1s to its max TTL \(10m\): got 700s \(INVALID_ARGUMENT\)$/,
      ],
    ] as [typeof role, RegExp][]) {
      const error = await admin.pki.writeRole(bad).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(StrongroomError);
      expect((error as StrongroomError).reason).toBe("INVALID_ARGUMENT");
      expect((error as StrongroomError).message).toMatch(why);
    }
    await admin.pki.writeRole(role);
    await admin.pki.writeRole({
      name: "short",
      allowedNames: ["short.svc.test"],
      ttlMs: 1500,
      maxTtlMs: 1500,
      serverAuth: false,
    });
    expect(await admin.pki.readRole({ name: "web" })).toEqual({
      ...role,
      allowedNames: ["*.svc.test", "worker-*"],
    });
    expect((await admin.pki.listRoles({})).names).toEqual(["short", "web"]);
    expect(await reasonOf(() => admin.pki.readRole({ name: "none" }))).toBe("NOT_FOUND");
  });
});

describe("issued certificates and their leases", () => {
  it("issues a certificate that verifies against the CA, with its key, as a lease of the caller", async () => {
    const client = sdk("svc-a", null, 1);
    const issued = await client.pki.issue({
      role: "web",
      commonName: "api.svc.test",
      dnsNames: ["worker-7"],
      ttlMs: 0,
    });
    const certificate = new X509Certificate(issued.certificatePem);
    const ca = new X509Certificate(issued.caPem);
    expect(certificate.verify(ca.publicKey)).toBe(true);
    expect(certificate.checkHost("api.svc.test")).toBe("api.svc.test");
    expect(certificate.checkHost("worker-7")).toBe("worker-7");
    expect(certificate.serialNumber.toLowerCase()).toBe(issued.serial);
    // The key answered is the certificate's.
    const publicFromKey = createPublicKey(createPrivateKey(issued.privateKeyPem)).export({
      type: "spki",
      format: "der",
    });
    expect(Buffer.compare(publicFromKey, certificate.publicKey.export({ type: "spki", format: "der" }))).toBe(
      0,
    );
    // The role's default lifetime, one minute.
    expect(Math.abs(issued.notAfterMs - (Date.now() + 60_000))).toBeLessThan(5000);
    expect(issued.leaseId).toBe(`pki/issue/web/${issued.serial}`);
    const lease = await operator().leases.lookup({ id: issued.leaseId });
    expect(lease).toMatchObject({ kind: "certificate", identity: "svc-a", renewable: false });
    expect(lease.expiresAtMs).toBe(issued.notAfterMs);
  });

  it("carries an IP address as an IP address, allowed only by a role naming that address", async () => {
    await operator().pki.writeRole({
      name: "addresses",
      allowedNames: ["10.0.0.7", "2001:DB8:0:0:0:0:0:1", "*.svc.test"],
      ttlMs: 60_000,
      maxTtlMs: 600_000,
      serverAuth: true,
    });
    expect((await operator().pki.readRole({ name: "addresses" })).allowedNames).toEqual([
      "*.svc.test",
      "10.0.0.7",
      "2001:db8::1",
    ]);
    const client = operator();
    const issued = await client.pki.issue({
      role: "addresses",
      commonName: "10.0.0.7",
      dnsNames: ["2001:db8::1", "api.svc.test"],
      ttlMs: 0,
    });
    const certificate = new X509Certificate(issued.certificatePem);
    // What a TLS client checks when it dials the address.
    expect(certificate.checkIP("10.0.0.7")).toBe("10.0.0.7");
    expect(certificate.checkIP("2001:db8::1")).toBe("2001:db8::1");
    expect(certificate.checkHost("api.svc.test")).toBe("api.svc.test");
    expect(certificate.subjectAltName).toBe(
      "IP Address:10.0.0.7, IP Address:2001:DB8:0:0:0:0:0:1, DNS:api.svc.test",
    );
    const refusal = (request: { commonName: string }) =>
      client.pki
        .issue({ role: "addresses", dnsNames: [], ttlMs: 0, ...request })
        .catch(
          (caught: unknown) =>
            `${(caught as StrongroomError).reason}: ${(caught as StrongroomError).message}`,
        );
    expect(await refusal({ commonName: "10.0.0.8" })).toMatch(
      /^PERMISSION_DENIED: .*does not allow 10\.0\.0\.8/,
    );
    expect(await refusal({ commonName: "10.0.0.256" })).toMatch(
      /^INVALID_ARGUMENT: "10\.0\.0\.256" is neither an IP address nor a DNS name/,
    );
  });

  it("refuses names the role does not allow, lifetimes above its maximum, and callers without the grant", async () => {
    const client = sdk("svc-a");
    const refuse = async (request: object) => {
      const error = (await client.pki
        .issue({ role: "web", commonName: "api.svc.test", dnsNames: [], ttlMs: 0, ...request })
        .catch((caught: unknown) => caught)) as StrongroomError;
      return `${(error as StrongroomError).reason}: ${(error as StrongroomError).message}`;
    };
    expect(await refuse({ commonName: "api.other.test" })).toMatch(
      /^PERMISSION_DENIED: .*does not allow api\.other\.test/,
    );
    // A '*' stands for one label, never for a dot.
    expect(await refuse({ commonName: "a.b.svc.test" })).toMatch(/^PERMISSION_DENIED: .*a\.b\.svc\.test/);
    expect(await refuse({ dnsNames: ["bad name"] })).toMatch(/^INVALID_ARGUMENT: .*not a DNS name/);
    expect(await refuse({ ttlMs: 3_600_000 })).toMatch(
      /^INVALID_ARGUMENT: a TTL of 1h is above role web's max TTL of \d+[smhd]\b/,
    );
    expect(await reasonOf(() => operator().pki.issue({ role: "none", commonName: "api.svc.test" }))).toBe(
      "NOT_FOUND",
    );
    expect(await reasonOf(() => sdk("nobody").pki.issue({ role: "web", commonName: "api.svc.test" }))).toBe(
      "PERMISSION_DENIED",
    );
  });

  it("lists leases of both kinds; renews a token's, refuses to renew a certificate's", async () => {
    const admin = operator();
    const token = await sdk("svc-a").access.createToken({
      ttlMs: 60_000,
      maxTtlMs: 120_000,
      renewable: true,
    });
    const listed = await admin.leases.list({ prefix: "" });
    const ids = listed.leases.map((lease) => lease.id);
    expect(ids).toContain(`auth/token/${token.info?.accessor}`);
    expect(ids.some((id) => id.startsWith("pki/issue/web/"))).toBe(true);
    expect(ids).toEqual([...ids].sort());
    const renewed = await admin.leases.renew({
      id: `auth/token/${token.info?.accessor}`,
      incrementMs: 100_000,
    });
    expect(renewed.kind).toBe("token");
    expect(Math.abs(renewed.expiresAtMs - (Date.now() + 100_000))).toBeLessThan(5000);
    const certificateLease = ids.find((id) => id.startsWith("pki/issue/web/")) ?? "";
    expect(await reasonOf(() => admin.leases.renew({ id: certificateLease }))).toBe("NOT_RENEWABLE");
    expect(await reasonOf(() => admin.leases.lookup({ id: "pki/issue/web/00" }))).toBe("NOT_FOUND");
    expect(await reasonOf(() => admin.leases.lookup({ id: "../etc" }))).toBe("INVALID_ARGUMENT");
    // Pages: one at a time, in order.
    const first = await admin.leases.list({ prefix: "", limit: 1 });
    expect(first.leases).toHaveLength(1);
    const second = await admin.leases.list({ prefix: "", limit: 1, after: first.nextAfter });
    expect(second.leases[0]?.id).toBe(ids[1]);
    await admin.leases.revoke({ id: `auth/token/${token.info?.accessor}` });
  });

  it("puts a revoked certificate on the revocation list every node serves, signed by the CA", async () => {
    const admin = operator();
    const issued = await sdk("svc-a").pki.issue({ role: "web", commonName: "revoked.svc.test" });
    const kept = await sdk("svc-a").pki.issue({ role: "web", commonName: "kept.svc.test" });
    const revoked = await admin.leases.revoke({ id: issued.leaseId });
    expect(revoked.revision).toBeGreaterThan(0);
    expect(await reasonOf(() => admin.leases.lookup({ id: issued.leaseId }))).toBe("NOT_FOUND");
    for (const index of endpoints.keys()) {
      // Linearizable: every node's list names a revocation acknowledged before the call.
      const crl = await sdk("svc-b", null, index).pki.getCrl({});
      expect(crl.revokedSerials).toContain(issued.serial);
      expect(crl.revokedSerials).not.toContain(kept.serial);
      expect(crl.nextUpdateMs).toBeGreaterThan(crl.thisUpdateMs);
      const text = opensslVerifiesCrl(issued.caPem, crl.crlPem);
      expect(text.replace(/\s/g, "").toLowerCase()).toContain(`serialnumber:${issued.serial}`);
    }
    // Revoked by prefix: every lease under it, and nothing else.
    const other = await sdk("svc-b").pki.issue({ role: "short", commonName: "short.svc.test" });
    const byPrefix = await admin.leases.revokePrefix({ prefix: "pki/issue/web/" });
    expect(byPrefix.revoked).toContain(kept.leaseId);
    expect(byPrefix.revoked.every((id) => id.startsWith("pki/issue/web/"))).toBe(true);
    expect((await admin.leases.list({ prefix: "pki/issue/web/" })).leases).toEqual([]);
    expect((await admin.leases.lookup({ id: other.leaseId })).identity).toBe("svc-b");
    expect((await admin.pki.getCrl({})).revokedSerials).toContain(kept.serial);
    expect(await reasonOf(() => admin.leases.revokePrefix({ prefix: "" }))).toBe("INVALID_ARGUMENT");
    // Revoking by prefix needs sudo, as any mass revocation.
    expect(await reasonOf(() => sdk("svc-a").leases.revokePrefix({ prefix: "pki/" }))).toBe(
      "PERMISSION_DENIED",
    );
  });

  it("lets the leader expire a short lease; an expired certificate never joins the list", async () => {
    const issued = await sdk("svc-b").pki.issue({ role: "short", commonName: "short.svc.test" });
    expect(issued.notAfterMs - Date.now()).toBeLessThanOrEqual(1500);
    await eventually(
      async () => (await reasonOf(() => operator().leases.lookup({ id: issued.leaseId }))) === "NOT_FOUND",
      5000,
    );
    expect((await operator().pki.getCrl({})).revokedSerials).not.toContain(issued.serial);
  });

  it("bounds the leases one identity holds, tokens and certificates together", async () => {
    const client = sdk("svc-b");
    const admin = operator();
    await admin.leases.revokePrefix({ prefix: "pki/issue/short/" });
    const held = await Promise.all(
      [1, 2, 3].map((n) => client.pki.issue({ role: "web", commonName: `b${n}.svc.test`, ttlMs: 600_000 })),
    );
    const token = await client.access.createToken({ ttlMs: 60_000 });
    const error = (await client.pki
      .issue({ role: "web", commonName: "b5.svc.test" })
      .catch((caught: unknown) => caught)) as StrongroomError;
    expect(error.reason).toBe("RESOURCE_EXHAUSTED");
    expect(error.message).toMatch(/svc-b holds 4 leases, its limit/);
    expect(await reasonOf(() => client.access.createToken({ ttlMs: 60_000 }))).toBe("RESOURCE_EXHAUSTED");
    // Another identity is not held back by svc-b's leases.
    await sdk("svc-a").pki.issue({ role: "web", commonName: "a9.svc.test" });
    await admin.leases.revoke({ id: held[0]?.leaseId ?? "" });
    await client.pki.issue({ role: "web", commonName: "b6.svc.test" });
    await admin.leases.revoke({ id: `auth/token/${token.info?.accessor}` });
    await admin.leases.revokePrefix({ prefix: "pki/issue/" });
  });
});

describe("an x509 rotation generator", () => {
  it("needs the grant to issue under its role, and rotates to a new certificate from the CA each time", async () => {
    const admin = operator();
    await admin.access.writePolicy({
      name: "cert-owner",
      document: JSON.stringify({
        name: "cert-owner",
        rules: [{ path: "certs/*", capabilities: ["create", "read", "update"] }],
      }),
    });
    const bound = await admin.access.bindIdentity({ identity: "svc-c", policies: ["cert-owner"] });
    await appliedEverywhere(bound.revision);
    const owner = sdk("svc-c");
    await owner.secrets.put({ path: "certs/api", value: new TextEncoder().encode("none yet") });
    const generator = {
      kind: {
        $case: "x509" as const,
        value: { role: "web", commonName: "api.svc.test", dnsNames: ["worker-1"], ttlMs: 300_000 },
      },
    };
    // Update on the secret is not enough: the generator issues certificates under role web.
    const refused = (await owner.secrets
      .updateMetadata({ path: "certs/api", generator, rotationPeriodMs: 3_600_000 })
      .catch((caught: unknown) => caught)) as StrongroomError;
    expect(`${refused.reason}: ${refused.message}`).toMatch(
      /^PERMISSION_DENIED: svc-c may not update sys\/pki\/issue\/web/,
    );
    await admin.secrets.updateMetadata({ path: "certs/api", generator, rotationPeriodMs: 3_600_000 });
    expect((await admin.secrets.getMetadata({ path: "certs/api" })).generator).toEqual(generator);
    const serials: string[] = [];
    for (const expected of [2, 3]) {
      const rotated = await admin.secrets.rotate({ path: "certs/api" });
      expect(rotated.version).toBe(expected);
      const bundle = new TextDecoder().decode((await owner.secrets.get({ path: "certs/api" })).value);
      const blocks = bundle.match(/-----BEGIN [A-Z ]+-----[^-]+-----END [A-Z ]+-----\n/g) ?? [];
      expect(blocks.map((block) => /BEGIN ([A-Z ]+)-----/.exec(block)?.[1])).toEqual([
        "CERTIFICATE",
        "PRIVATE KEY",
        "CERTIFICATE",
      ]);
      const [certificatePem, keyPem, caPem] = blocks as [string, string, string];
      const certificate = new X509Certificate(certificatePem);
      expect(certificate.verify(new X509Certificate(caPem).publicKey)).toBe(true);
      expect(certificate.checkHost("worker-1")).toBe("worker-1");
      const fromKey = createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "der" });
      expect(Buffer.compare(fromKey, certificate.publicKey.export({ type: "spki", format: "der" }))).toBe(0);
      const serial = certificate.serialNumber.toLowerCase();
      serials.push(serial);
      // Each one is a lease of the secret's, revocable like any issued certificate.
      expect(await admin.leases.lookup({ id: `pki/issue/web/${serial}` })).toMatchObject({
        identity: "secret:certs/api",
      });
    }
    expect(new Set(serials).size).toBe(2);
    await admin.leases.revokePrefix({ prefix: "pki/issue/web/" });
  });
});

describe("emergency revocation", () => {
  it("refuses the identity on every node, revokes its credentials, rotates what it could read", async () => {
    const admin = operator();
    await admin.secrets.put({ path: "app/db", value: new TextEncoder().encode("old-password") });
    await admin.secrets.updateMetadata({
      path: "app/db",
      generator: {
        kind: {
          $case: "password",
          value: { length: 24, minLower: 1, minUpper: 1, minDigits: 1, minSymbols: 0, symbols: "" },
        },
      },
    });
    await admin.secrets.put({ path: "app/static", value: new TextEncoder().encode("by hand") });
    await admin.secrets.put({ path: "other/x", value: new TextEncoder().encode("not readable by mallory") });
    const malloryCert = sdk("mallory", null, 2);
    const token = await malloryCert.access.createToken({ ttlMs: 600_000 });
    const malloryToken = sdk("mallory", token.token);
    const certificate = await malloryCert.pki.issue({
      role: "web",
      commonName: "m.svc.test",
      ttlMs: 600_000,
    });
    expect(new TextDecoder().decode((await malloryToken.secrets.get({ path: "app/db" })).value)).toBe(
      "old-password",
    );
    expect(await reasonOf(() => operator().access.revokeIdentity({ identity: "operator" }))).toBe(
      "INVALID_ARGUMENT",
    );
    expect(await reasonOf(() => sdk("svc-a").access.revokeIdentity({ identity: "mallory" }))).toBe(
      "PERMISSION_DENIED",
    );

    // A Watch consumer on a follower, and a poller per node, started before the command.
    const leader = await running.leaderId();
    const followerIndex = specs.findIndex((spec) => spec.id !== leader);
    const events: { event: WatchEvent; at: number }[] = [];
    const watch = sdk("operator", rootToken, followerIndex).watch("app/", 0, {
      onEvent: (event) => events.push({ event, at: performance.now() }),
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Clients made (their certificates generated, connected) before the clock starts.
    const pollerClients = endpoints.map((_endpoint, index) => sdk("mallory", null, index));
    await Promise.all(pollerClients.map((client) => client.secrets.get({ path: "app/db" })));
    const started = performance.now();
    const refusedAt = endpoints.map(() => 0);
    const pollers = pollerClients.map(async (client, index) => {
      while (performance.now() - started < 10_000) {
        const reason = await reasonOf(() => client.secrets.get({ path: "app/db" }, { deadlineMs: 1000 }));
        if (reason === "IDENTITY_DISABLED") {
          refusedAt[index] = performance.now() - started;
          return;
        }
      }
    });
    const report = await admin.access.revokeIdentity({
      identity: "mallory",
      rotateReadable: true,
      reason: "laptop stolen",
    });
    const answeredAfter = performance.now() - started;
    await Promise.all(pollers);
    await eventually(() => events.some(({ event }) => event.path === "app/db" && event.version === 2), 5000);
    watch.close();
    const rotationSeenAfter =
      (events.find(({ event }) => event.path === "app/db" && event.version === 2)?.at ?? 0) - started;
    const everyNode = Math.max(...refusedAt);
    console.log(
      `emergency revocation: refused on every node ${everyNode.toFixed(0)} ms after the command ` +
        `(per node ${refusedAt.map((ms) => ms.toFixed(0)).join("/")} ms); answered after ${answeredAfter.toFixed(0)} ms; ` +
        `the rotated secret's new version reached a Watch consumer on a follower after ${rotationSeenAfter.toFixed(0)} ms`,
    );
    expect(refusedAt.every((ms) => ms > 0)).toBe(true);
    expect(everyNode).toBeLessThan(1000);
    expect(rotationSeenAfter).toBeLessThan(1000);

    expect(report.disabledAtRevision).toBeGreaterThan(0);
    expect(report.tokensRevoked).toEqual([token.info?.accessor]);
    expect(report.leasesRevoked).toEqual([certificate.leaseId]);
    expect(report.secretsRotated).toEqual(["app/db"]);
    expect(report.secretsToRotateByHand).toEqual(["app/static"]);
    expect(report.revision).toBeGreaterThanOrEqual(report.disabledAtRevision);
    // Its token is refused too, and stays revoked; its certificate is on the list.
    expect(await reasonOf(() => malloryToken.secrets.get({ path: "app/db" }))).toBe("IDENTITY_DISABLED");
    expect((await admin.pki.getCrl({})).revokedSerials).toContain(certificate.serial);
    const rotated = new TextDecoder().decode((await admin.secrets.get({ path: "app/db" })).value);
    expect(rotated).not.toBe("old-password");
    expect(rotated).toMatch(/^[A-Za-z0-9]{24}$/);
    expect((await admin.access.listDisabledIdentities({})).identities).toEqual([
      expect.objectContaining({ identity: "mallory", disabledBy: "operator", reason: "laptop stolen" }),
    ]);

    // Enabled again: its certificate identity works, its revoked token does not.
    await admin.access.enableIdentity({ identity: "mallory" });
    await eventually(
      async () => (await reasonOf(() => sdk("mallory").secrets.get({ path: "app/db" }))) === "ok",
      5000,
    );
    expect(await reasonOf(() => sdk("mallory", token.token).secrets.get({ path: "app/db" }))).toBe(
      "TOKEN_INVALID",
    );
    expect(await reasonOf(() => admin.access.enableIdentity({ identity: "mallory" }))).toBe("NOT_FOUND");
  });

  it("with keep_enabled revokes the credentials and leaves the identity's certificate working", async () => {
    const admin = operator();
    const token = await sdk("svc-a").access.createToken({ ttlMs: 600_000 });
    const issued = await sdk("svc-a").pki.issue({ role: "web", commonName: "a1.svc.test" });
    const report = await admin.access.revokeIdentity({ identity: "svc-a", keepEnabled: true });
    expect(report.leasesRevoked).toEqual([issued.leaseId]);
    expect(report.disabledAtRevision).toBe(0);
    expect(report.tokensRevoked).toContain(token.info?.accessor);
    expect(await reasonOf(() => sdk("svc-a").pki.getCa({}))).toBe("ok");
    expect(await reasonOf(() => sdk("svc-a", token.token).pki.getCa({}))).toBe("TOKEN_INVALID");
  });
});
