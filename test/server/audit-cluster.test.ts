// The audit trail on a running cluster: every call - served, forwarded or refused - has a request
// entry and a response entry on the node that took it; values appear only as HMACs; entries name
// what each call acted on and what it made, and a token issued is recorded as the HMAC its later
// calls carry; the chain verifies. Sinks on small tmpfs mounts (the test mounts them: it runs as root, as CI does) fill up:
// with one full the node keeps serving, with all full it refuses with AUDIT_UNAVAILABLE, and it
// serves again once there is room.

import { execFileSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { listAuditFiles } from "../../server/audit/audit-file.js";
import { verifyAuditFiles } from "../../server/audit/audit-verify.js";
import { eventually } from "../support/eventually.js";
import { call, callError, clientsFor, InProcessCluster, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("audit");
const root = mkdtempSync(join(tmpdir(), "strongroom-audit-cluster-"));
const small = [join(root, "small-a"), join(root, "small-b")];
const specs = nodeSpecs(3, 37_000, 120);
const running = new InProcessCluster(pki);
let rootToken = "";
const nodes = running.nodes;
const clientOf = (id: string) => running.client(id);
const auditDirectories = (id: string) => (id === "n1" ? small : [join(root, id, "audit")]);

beforeAll(async () => {
  for (const directory of small) {
    mkdirSync(directory, { recursive: true });
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", directory]);
  }
  const configs = writeConfigs(pki, root, specs, (spec) => ({
    audit: { directories: auditDirectories(spec.id) },
    // Election timeouts of 800-1600 ms (40 ticks of 20 ms): a leader's periodic look at whether it
    // can serve comes every 1.6 s, which the hand-over test below must not have waited for.
    raft: { tickMs: 20, electionTicks: 40, heartbeatTicks: 1 },
  }));
  for (const spec of specs) {
    const entry = configs.get(spec.id);
    if (entry === undefined) throw new Error("no config");
    await running.start(spec, entry.config);
  }
  rootToken = (await running.initializeWithOneShare("n2")).rootToken;
}, 60_000);

afterAll(async () => {
  await running.stop();
  // Lazy: a file a stopped node left open elsewhere must not fail the clean-up.
  for (const directory of small) execFileSync("umount", ["-l", directory]);
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

interface Entry {
  type: string;
  requestId?: string;
  method?: string;
  path?: string;
  identity?: string;
  outcome?: string;
  reason?: string;
  detail?: string;
  code?: string;
  forwardedBy?: string;
  clientRequestId?: string;
  hashed?: Record<string, string>;
  target?: Record<string, unknown>;
  result?: Record<string, unknown>;
}

function entriesOf(directories: readonly string[]): Entry[] {
  return directories.flatMap((directory) =>
    listAuditFiles(directory).flatMap((file) =>
      readFileSync(file, "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as Entry),
    ),
  );
}

it("records every call twice, with values only as HMACs, on a chain that verifies", async () => {
  const marker = "audit-marker-9c4d2e";
  const n3 = clientOf("n3").secrets;
  await call(n3.put.bind(n3), {
    path: "audited/db",
    value: new TextEncoder().encode(marker),
    requestId: "audit-put-1",
  });
  await call(n3.get.bind(n3), {
    path: "audited/db",
    version: 0,
    consistency: Consistency.CONSISTENCY_LINEARIZABLE,
    maxStalenessMs: 0,
  });
  const refused = await callError(n3.put.bind(n3), { path: "../bad", value: new Uint8Array([1]) });
  expect(refused.code).toBe(status.INVALID_ARGUMENT);
  // A caller with neither token nor binding is refused, and the refusal recorded with its cause.
  const stranger = clientsFor(`${specs[2]?.host}:${specs[2]?.clientPort}`, pki, "stranger");
  const denied = await callError(stranger.secrets.put.bind(stranger.secrets), {
    path: "audited/db",
    value: new TextEncoder().encode(marker),
  });
  stranger.close();
  expect(denied.code).toBe(status.PERMISSION_DENIED);

  const entries = entriesOf(auditDirectories("n3")).filter(
    (entry) => entry.type === "request" || entry.type === "response",
  );
  const byId = new Map<string, Entry[]>();
  for (const entry of entries)
    byId.set(entry.requestId ?? "", [...(byId.get(entry.requestId ?? "") ?? []), entry]);
  // Audit completeness: every request id has exactly one request and one response entry.
  for (const [, pair] of byId)
    expect(pair.map((entry) => entry.type).sort()).toEqual(["request", "response"]);
  const puts = entries.filter(
    (entry) => entry.method === "/strongroom.v1.Secrets/Put" && entry.type === "response",
  );
  expect(puts.map((entry) => [entry.path, entry.outcome, entry.code])).toEqual(
    expect.arrayContaining([
      ["audited/db", "ok", "OK"],
      ["../bad", "error", "INVALID_ARGUMENT"],
    ]),
  );
  const refusal = puts.find((entry) => entry.identity === "stranger");
  expect(refusal).toMatchObject({
    outcome: "denied",
    code: "PERMISSION_DENIED",
    reason: "PERMISSION_DENIED",
  });
  expect(refusal?.detail).toBe("no policy grants anything on audited/db");
  const putRequest = entries.find(
    (entry) => entry.type === "request" && entry.path === "audited/db" && entry.method?.endsWith("/Put"),
  );
  expect(putRequest?.identity).toBe("operator");
  expect(putRequest?.hashed?.value).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
  // The token too: an auditor holding it can recognize it; the file never holds it.
  expect(putRequest?.hashed?.token).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
  // The client's request id, which ties a write to its retries.
  expect(putRequest?.clientRequestId).toBe("audit-put-1");

  // The leader recorded the forwarded write too, naming the follower that forwarded it.
  const leader = [...nodes.entries()].find(([, node]) => node.isLeader())?.[0] ?? "";
  if (leader !== "n3") {
    const forwarded = entriesOf(auditDirectories(leader)).find(
      (entry) => entry.path === "audited/db" && entry.forwardedBy === "n3",
    );
    expect(forwarded?.clientRequestId).toBe("audit-put-1");
  }

  for (const spec of specs) {
    for (const directory of auditDirectories(spec.id)) {
      for (const file of listAuditFiles(directory)) {
        expect(readFileSync(file, "utf8")).not.toContain(marker);
        expect(readFileSync(file, "utf8")).not.toContain(rootToken);
      }
      // Running nodes have not written their closing checkpoint yet; nothing else may be wrong.
      expect(verifyAuditFiles(listAuditFiles(directory), null, { live: true }).problems).toEqual([]);
    }
  }
});

it("records the streaming calls too: a watch and a snapshot", async () => {
  const n3 = clientOf("n3");
  const watch = n3.secrets.watch({ prefix: "audited/", fromRevision: 0, progressNotify: false });
  watch.on("error", () => {});
  await new Promise((resolve) => setTimeout(resolve, 100));
  watch.cancel();
  await new Promise<void>((resolve, reject) => {
    const stream = n3.cluster.saveSnapshot({});
    stream.on("data", () => {});
    stream.on("end", () => resolve());
    stream.on("error", reject);
  });
  await eventually(() => {
    const entries = entriesOf(auditDirectories("n3"));
    const pairs = (method: string) =>
      entries.filter((entry) => entry.method === method).map((entry) => entry.type);
    return (
      pairs("/strongroom.v1.Secrets/Watch").sort().join() === "request,response" &&
      pairs("/strongroom.v1.Cluster/SaveSnapshot").sort().join() === "request,response"
    );
  }, 5000);
  const snapshotResponse = entriesOf(auditDirectories("n3")).find(
    (entry) => entry.method === "/strongroom.v1.Cluster/SaveSnapshot" && entry.type === "response",
  );
  expect(snapshotResponse).toMatchObject({ outcome: "ok", code: "OK", identity: "operator" });
});

/** A linearizable read of one secret: each call writes a request and a response entry. */
const request = {
  path: "audited/db",
  version: 0,
  consistency: Consistency.CONSISTENCY_LINEARIZABLE,
  maxStalenessMs: 0,
};

/** Fills one of the small mounts. */
function fill(directory: string): void {
  try {
    writeFileSync(join(directory, "filler"), Buffer.alloc(128 * 1024));
  } catch {
    // ENOSPC: the mount is full now, which is the point.
  }
}

it("names what each call acted on and made, and ties a token issued to its later calls", async () => {
  const n3 = clientOf("n3");
  const policy = JSON.stringify({ name: "audited", rules: [{ path: "audited/*", capabilities: ["read"] }] });
  const written = await call(n3.access.writePolicy.bind(n3.access), { name: "audited", document: policy });
  await call(n3.access.bindIdentity.bind(n3.access), { identity: "auditee", policies: ["audited"] });
  const created = await call(n3.access.createToken.bind(n3.access), {
    policies: ["audited"],
    ttlMs: 60_000,
    maxTtlMs: 0,
    renewable: false,
    orphan: false,
    displayName: "",
    numUses: 0,
    role: "",
    boundIdentities: [],
  });
  const holder = clientsFor(`${specs[2]?.host}:${specs[2]?.clientPort}`, pki, "auditee", created.token);
  const read = await callError(holder.secrets.get.bind(holder.secrets), {
    path: "audited/none",
    version: 0,
    consistency: Consistency.CONSISTENCY_LINEARIZABLE,
    maxStalenessMs: 0,
  });
  holder.close();
  expect(read.code).toBe(status.NOT_FOUND);
  const accessor = created.info?.accessor ?? "";
  await call(n3.access.revokeToken.bind(n3.access), { accessor });
  // A name past the entries' limit is recorded cut, with its length.
  const long = "p".repeat(1000);
  await callError(n3.access.writePolicy.bind(n3.access), { name: long, document: policy });

  const entries = entriesOf(auditDirectories("n3"));
  const one = (method: string, type: string, match: (entry: Entry) => boolean = () => true) => {
    const found = entries.filter(
      (entry) => entry.method === `/strongroom.v1.${method}` && entry.type === type && match(entry),
    );
    expect(found, `${method} ${type}`).toHaveLength(1);
    return found[0] as Entry;
  };
  const auditedName = (entry: Entry) => entry.target?.name === "audited";
  expect(one("Access/WritePolicy", "request", auditedName).target).toEqual({ name: "audited" });
  expect(one("Access/WritePolicy", "response", auditedName).result).toEqual({ revision: written.revision });
  expect(one("Access/BindIdentity", "request").target).toEqual({
    identity: "auditee",
    policies: ["audited"],
  });
  const creation = one("Access/CreateToken", "response");
  expect(creation.target).toEqual({ policies: ["audited"] });
  expect(creation.result).toEqual({ accessor });
  // The token issued is never in the file, but its HMAC is: the one its holder's calls carry.
  const issued = creation.hashed?.issuedToken;
  expect(issued).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
  const hash = await call(n3.sys.auditHash.bind(n3.sys), { input: new TextEncoder().encode(created.token) });
  expect(issued).toBe(hash.hash);
  const use = one("Secrets/Get", "request", (entry) => entry.identity === "auditee");
  expect(use.hashed?.token).toBe(issued);
  expect(one("Access/RevokeToken", "request").target).toEqual({ accessor });
  const cut = one("Access/WritePolicy", "response", (entry) => entry.outcome === "error");
  expect(cut.target?.name).toBe(`${"p".repeat(256)}…(1000 characters)`);
  // A write's response names the version and revision it made.
  const put = entries.find(
    (entry) =>
      entry.method === "/strongroom.v1.Secrets/Put" && entry.type === "response" && entry.outcome === "ok",
  );
  expect(put?.result).toMatchObject({ version: expect.any(Number), revision: expect.any(Number) });
  for (const file of listAuditFiles(auditDirectories("n3")[0] ?? ""))
    expect(readFileSync(file, "utf8")).not.toContain(created.token);
});

it("keeps serving with one sink full, refuses with AUDIT_UNAVAILABLE when all are, and recovers", async () => {
  const n1 = clientOf("n1").secrets;
  const failingSinks = async () => {
    const metrics = await (await fetch(`http://${specs[0]?.host}:${specs[0]?.httpPort}/metrics`)).text();
    return Number(/^strongroom_audit_sinks_failing (\d+)$/m.exec(metrics)?.[1] ?? "-1");
  };

  // One sink full: calls go on (the audit file's last page fills first, then writes fail).
  fill(small[0] ?? "");
  for (let i = 0; i < 60 && (await failingSinks()) === 0; i++) await call(n1.get.bind(n1), request);
  expect(await failingSinks()).toBe(1);
  await call(n1.get.bind(n1), request);
  // Health shows it too.
  const health = await fetch(`http://${specs[0]?.host}:${specs[0]?.httpPort}/v1/sys/health`);
  expect(await health.json()).toMatchObject({ auditSinksFailing: 1, auditSinksStalled: 0 });

  // Both full: the node refuses rather than serve unaudited.
  fill(small[1] ?? "");
  let refusal: Awaited<ReturnType<typeof callError>> | null = null;
  for (let i = 0; i < 60 && refusal === null; i++) {
    refusal = await callError(n1.get.bind(n1), request).catch(() => null);
  }
  expect(refusal).toMatchObject({ code: status.UNAVAILABLE, reason: "AUDIT_UNAVAILABLE" });
  // Each refused call tries to reopen both sinks: a file that cannot take its header is removed
  // and its descriptor closed (every attempt used to leave an empty file and an open descriptor).
  const filesBefore = small.map((directory) => listAuditFiles(directory).length);
  for (let i = 0; i < 20; i++) await callError(n1.get.bind(n1), request).catch(() => null);
  expect(small.map((directory) => listAuditFiles(directory).length)).toEqual(filesBefore);
  for (const directory of small)
    expect(listAuditFiles(directory).filter((file) => statSync(file).size === 0)).toEqual([]);
  // The nodes run in this process: its descriptors are theirs.
  const openInSmall = readdirSync("/proc/self/fd").filter((fd) => {
    const target = (() => {
      try {
        return readlinkSync(join("/proc/self/fd", fd));
      } catch {
        return "";
      }
    })();
    return small.some((directory) => target.startsWith(`${directory}/`));
  });
  expect(openInSmall.length).toBeLessThanOrEqual(small.length);

  // Room again: the sinks reopen (a new file, linked to the chain) and the node serves.
  for (const directory of small) rmSync(join(directory, "filler"), { force: true });
  await call(n1.get.bind(n1), request);
  expect(await failingSinks()).toBe(0);
  for (const directory of small)
    expect(verifyAuditFiles(listAuditFiles(directory), null, { live: true }).problems).toEqual([]);
});

it("a leader whose every audit sink fails hands the leadership to another voter: the cluster goes on taking writes", async () => {
  // n1, the node with the small sinks, leads.
  const leader = clientOf(await running.leaderId()).cluster;
  await call(leader.transferLeader.bind(leader), { nodeId: "n1" });
  await eventually(() => nodes.get("n1")?.isLeader() === true, 10_000);
  const n1 = clientOf("n1").secrets;
  for (const directory of small) fill(directory);
  try {
    // Its calls find both sinks full: refused. It must not keep the leadership it cannot serve with:
    // while its heartbeats went on, no other node took over, and the cluster took no write.
    let refusal: Awaited<ReturnType<typeof callError>> | null = null;
    for (let i = 0; i < 60 && refusal === null; i++)
      refusal = await callError(n1.get.bind(n1), request).catch(() => null);
    const refusedAt = performance.now();
    expect(refusal).toMatchObject({ reason: "AUDIT_UNAVAILABLE" });
    await eventually(() => nodes.get("n1")?.isLeader() === false, 10_000);
    const next = await running.leaderId();
    expect(next).not.toBe("n1");
    // It handed over as its last sink failed, not at its next periodic look (up to 1.6 s here).
    const handedOverMs = performance.now() - refusedAt;
    expect(handedOverMs, `a new leader ${Math.round(handedOverMs)} ms after the refusal`).toBeLessThan(300);
    const writer = clientOf(next).secrets;
    const put = await call(writer.put.bind(writer), {
      path: "audited/after-handoff",
      value: Buffer.from("v"),
    });
    expect(put.version).toBe(1);
  } finally {
    for (const directory of small) rmSync(join(directory, "filler"), { force: true });
  }
});
