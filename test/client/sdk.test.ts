// The SDK against a real 3-node cluster of child processes over mutual TLS: typed calls and typed
// errors; the leader killing itself right after applying a write, which the SDK sends again with
// its request id and the cluster applies once; the leader SIGKILLed in the middle of a write and
// read loop, with no error reaching the caller, no acknowledged write lost and none applied twice;
// a Watch that sees a change within a second, and one on a SIGSTOPped node that moves on once its
// pings go unanswered; and the read cache answering from stale entries once every node is down.

import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as createTlsServer } from "node:tls";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createClient, type StrongroomClient, StrongroomError } from "../../client/index.js";
import { ChangeKind, Consistency, type WatchEvent } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { metricLinesOf, nodeSpecs, writeConfigs } from "../server/cluster-harness.js";
import { TestPki } from "../server/pki-fixture.js";
import { NodeProcess, tearDownProcessCluster } from "../server/process-cluster.js";
import { eventually } from "../support/eventually.js";

const pki = new TestPki("sdk");
const root = mkdtempSync(join(tmpdir(), "strongroom-sdk-"));
const specs = nodeSpecs(3, 47_000, 160);
const configs = writeConfigs(pki, root, specs);
// Each node's test failpoints (server/failpoints.ts), armed by writing the file and a SIGUSR2.
const failpointFiles = specs.map((spec) => join(root, `${spec.id}-failpoints.json`));
const processes = specs.map(
  (spec, index) =>
    new NodeProcess(spec, configs.get(spec.id)?.file ?? "", {
      STRONGROOM_TEST_FAILPOINTS: failpointFiles[index],
    }),
);
const endpoints = specs.map((spec) => `${spec.host}:${spec.clientPort}`);
const opened: StrongroomClient[] = [];
// Node's warnings in this process (only SDK clients run here: the nodes are child processes).
const warnings: { name: string; code?: string }[] = [];
process.on("warning", (warning) => warnings.push(warning as { name: string; code?: string }));
let rootToken: string | null = null;
let unsealShare = "";

function tlsOf(name: string) {
  const files = pki.client(name);
  return { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile };
}

/** An SDK client as identity `name`, with the root token once there is one. */
function sdk(options: { endpoints?: string[]; cache?: Parameters<typeof createClient>[0]["cache"] } = {}) {
  const client = createClient({
    endpoints: options.endpoints ?? endpoints,
    // A test that gives the endpoints stages which one is tried first.
    endpointOrder: options.endpoints === undefined ? "random" : "given",
    tls: tlsOf("app"),
    token: () => rootToken,
    deadlineMs: 15_000,
    ...(options.cache === undefined ? {} : { cache: options.cache }),
  });
  opened.push(client);
  return client;
}

const bytes = (text: string) => new TextEncoder().encode(text);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (value: Uint8Array) => new TextDecoder().decode(value);
const linearizable = (path: string) => ({
  path,
  version: 0,
  consistency: Consistency.CONSISTENCY_LINEARIZABLE,
  maxStalenessMs: 0,
});

beforeAll(async () => {
  await Promise.all(processes.map((node) => node.start()));
  const client = sdk();
  // Init goes to whichever node leads once one does; the SDK retries while there is none.
  const init = await client.sys.init({
    shamir: { count: 1, threshold: 1, operatorKeys: [] },
    hsm: false,
    generateHsmKey: false,
    recovery: undefined,
  });
  for (const endpoint of endpoints) {
    await sdk({ endpoints: [endpoint] }).sys.unseal({
      share: init.unsealShares[0] ?? "",
      nonce: "",
      reset: false,
    });
  }
  rootToken = init.rootToken;
  unsealShare = init.unsealShares[0] ?? "";
}, 60_000);

afterAll(() => tearDownProcessCluster({ clients: opened, processes, pki, root }));

it("typed calls answer typed responses, and failures are StrongroomErrors with the server's reason", async () => {
  const client = sdk();
  const put = await client.secrets.put({ path: "sdk/typed", value: bytes("v1") });
  expect(put.version).toBe(1);
  const read = await client.secrets.get(linearizable("sdk/typed"));
  expect(text(read.value)).toBe("v1");
  // Fields left out take the proto defaults: the newest version, read linearizably.
  expect((await client.secrets.get({ path: "sdk/typed" })).version).toBe(1);
  const missing = await client.secrets.get(linearizable("sdk/none")).catch((error: unknown) => error);
  expect(missing).toBeInstanceOf(StrongroomError);
  expect(missing).toMatchObject({ code: status.NOT_FOUND, reason: "NOT_FOUND", statusName: "NOT_FOUND" });
  const conflict = await client.secrets
    .put({ path: "sdk/typed", value: bytes("v2"), cas: 0 })
    .catch((e) => e);
  expect(conflict).toMatchObject({ reason: "CAS_MISMATCH", outcomeUnknown: false });
  // A Secrets write's error names the request id it was sent with: one the SDK chose, or the caller's.
  expect(conflict.requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const own = await client.secrets
    .put({ path: "sdk/typed", value: bytes("v2"), cas: 0, requestId: "caller-1" })
    .catch((e) => e);
  expect(own).toMatchObject({ reason: "CAS_MISMATCH", requestId: "caller-1" });
  expect((missing as StrongroomError).requestId).toBeNull();
  // A client made without request ids sends none (the caller's own is still sent).
  const withoutIds = createClient({
    endpoints,
    tls: tlsOf("app"),
    token: () => rootToken,
    requestIds: false,
  });
  opened.push(withoutIds);
  const plain = await withoutIds.secrets
    .put({ path: "sdk/typed", value: bytes("v3"), cas: 0 })
    .catch((e) => e);
  expect(plain).toMatchObject({ reason: "CAS_MISMATCH", requestId: null });
  const anonymous = createClient({ endpoints, tls: tlsOf("nobody") });
  opened.push(anonymous);
  await expect(anonymous.secrets.get(linearizable("sdk/typed"))).rejects.toMatchObject({
    code: status.PERMISSION_DENIED,
    reason: "PERMISSION_DENIED",
  });
  expect(() => createClient({ endpoints: ["no-port"], tls: tlsOf("app") })).toThrow(/is not host:port/);
  // What JavaScript (or a cast) can pass that the types forbid: the caller's argument is named as
  // what is wrong, not gRPC's INTERNAL "Request message serialization failure".
  const unencodable = { path: "sdk/typed", value: "a string" } as unknown as {
    path: string;
    value: Uint8Array;
  };
  await expect(client.secrets.put(unencodable)).rejects.toMatchObject({
    code: status.INVALID_ARGUMENT,
    message: expect.stringMatching(
      /^the request could not be encoded \(invalid uint32: undefined\): a field's value has the wrong type/,
    ),
  });
  await expect(client.secrets.get({ path: "sdk/typed", version: -1 })).rejects.toMatchObject({
    code: status.INVALID_ARGUMENT,
    message: expect.stringContaining("(invalid uint32: -1)"),
  });
  expect((await client.secrets.get({ path: "sdk/typed" })).version).toBe(1);
  // A deadline of 0 or less is the caller's mistake, not a slow node's DEADLINE_EXCEEDED.
  await expect(client.secrets.get({ path: "sdk/typed" }, { deadlineMs: 0 })).rejects.toThrow(
    new TypeError("get: deadlineMs must be a positive number of milliseconds, got 0"),
  );
});

/** Calls of `method` a node has answered (strongroom_grpc_server_handled_total, every code). */
async function handledBy(id: string, method: string): Promise<number> {
  const spec = specs.find((candidate) => candidate.id === id);
  if (spec === undefined) throw new Error(`no spec for ${id}`);
  const lines = await metricLinesOf(spec, `strongroom_grpc_server_handled_total{method="${method}"`);
  return lines.reduce((total, line) => total + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
}

it("writes go to the leader once an answer named it, not through the endpoint given first", async () => {
  const { leaderId } = await sdk().cluster.status({});
  const follower = specs.find((spec) => spec.id !== leaderId) as (typeof specs)[number];
  const followerEndpoint = `${follower.host}:${follower.clientPort}`;
  const client = sdk({
    endpoints: [followerEndpoint, ...endpoints.filter((endpoint) => endpoint !== followerEndpoint)],
  });
  // The first call is answered by the follower, which names the leader in its trailers; which
  // endpoint is the leader is then learned in the background.
  await client.secrets.put({ path: "sdk/to-leader/0", value: bytes("v") });
  await sleep(500);
  const put = "/strongroom.v1.Secrets/Put";
  const before = await handledBy(follower.id, put);
  for (let i = 1; i <= 10; i++) await client.secrets.put({ path: `sdk/to-leader/${i}`, value: bytes("v") });
  // Forwarded by the follower, each would count there too.
  expect(await handledBy(follower.id, put)).toBe(before);
});

it("Cluster.Members goes to the leader once the client knows it: only the leader knows the members' progress", async () => {
  const { leaderId } = await sdk().cluster.status({});
  const ids = specs.map((spec) => spec.id);
  const follower = endpoints[ids.findIndex((id) => id !== leaderId)] as string;
  // The follower first: it answers the status and names the leader, and a read would go back to
  // it (the last endpoint that answered). Which endpoint is the leader is learned in the background.
  const client = sdk({ endpoints: [follower, ...endpoints.filter((endpoint) => endpoint !== follower)] });
  expect((await client.cluster.status({})).role).toBe("follower");
  let answeredBy = "";
  await eventually(async () => {
    const members = await client.cluster.members({});
    answeredBy = members.answeredBy;
    return members.leaderView;
  }, 5000);
  expect(answeredBy).toBe(leaderId);
});

it("a watch sees a change within a second", async () => {
  const client = sdk();
  const events: { event: WatchEvent; at: number }[] = [];
  let opened = false;
  const watch = client.watch("sdk/watched/", 0, {
    onEvent: (event) => events.push({ event, at: Date.now() }),
    onOpen: () => {
      opened = true;
    },
  });
  await eventually(() => opened, 5000);
  const sentAt = Date.now();
  await client.secrets.put({ path: "sdk/watched/key", value: bytes("rotated") });
  await eventually(() => events.length > 0, 1000);
  watch.close();
  expect(events[0]?.event).toMatchObject({ path: "sdk/watched/key", version: 1 });
  expect((events[0]?.at ?? Number.POSITIVE_INFINITY) - sentAt).toBeLessThan(1000);
});

it("a watch resumed from a revision the cluster has not reached reports a gap and goes on from now", async () => {
  const client = sdk();
  const gaps: StrongroomError[] = [];
  const events: WatchEvent[] = [];
  let opened = false;
  // As when the endpoints were changed to another cluster's: its revisions are below the last one seen.
  const watch = client.watch("sdk/resumed/", 1_000_000_000, {
    onEvent: (event) => events.push(event),
    onGap: (error) => gaps.push(error),
    onOpen: () => {
      opened = true;
    },
  });
  await eventually(() => gaps.length > 0, 5000);
  expect(gaps[0]).toMatchObject({ code: status.OUT_OF_RANGE, reason: "REVISION_AHEAD" });
  // Then it starts again from now.
  await eventually(() => opened, 5000);
  await client.secrets.put({ path: "sdk/resumed/key", value: bytes("after the gap") });
  await eventually(() => events.length > 0, 5000);
  watch.close();
  expect(events.map((event) => event.path)).toEqual(["sdk/resumed/key"]);
});

it("a watch of a prefix the cluster refuses ends for good: onEnd, no reconnection", async () => {
  const ended: StrongroomError[] = [];
  const retried: StrongroomError[] = [];
  const watch = sdk().watch("sdk/not a prefix/", 0, {
    onEvent: () => {},
    onError: (error) => retried.push(error),
    onEnd: (error) => ended.push(error),
  });
  await eventually(() => ended.length > 0, 5000);
  // Its backoff would have retried several times by now.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  watch.close();
  expect(ended).toHaveLength(1);
  expect(ended[0]).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_ARGUMENT" });
  expect(retried).toEqual([]);
});

it("a connection that cannot be made says why: a CA that did not sign the node, nothing listening, a key of another certificate", async () => {
  const attempt = async (options: Partial<Parameters<typeof createClient>[0]>) => {
    const client = createClient({ endpoints, tls: tlsOf("app"), deadlineMs: 1500, ...options });
    opened.push(client);
    return client.secrets
      .get(linearizable("sdk/anything"))
      .catch((error: unknown) => error as StrongroomError);
  };
  // The client CA as the bundle that should sign the nodes: a common first mistake.
  const untrusted = await attempt({ tls: { ...tlsOf("app"), caFile: pki.clientCaFile() } });
  expect(untrusted).toBeInstanceOf(StrongroomError);
  // Whichever endpoint it tried last.
  expect((untrusted as StrongroomError).message).toMatch(
    /cannot connect to 127\.0\.0\.\d+:\d+: unable to verify the first certificate: the node's certificate is not signed by a CA in the client's CA bundle/,
  );
  // A port on the first node's address that nothing listens on.
  const closed = `${specs[0]?.host}:${(specs[0]?.clientPort ?? 0) + 7}`;
  const refused = await attempt({ endpoints: [closed] });
  expect((refused as StrongroomError).message).toContain(
    `cannot connect to ${closed}: connect ECONNREFUSED ${closed}: nothing listens there`,
  );
  // A node whose certificate names another address than the one dialled: refused, though the
  // server name sent for an IP address is not the address (no DEP0123 warning, test at the end).
  const misnamed = pki.node("misnamed", ["127.0.0.1"]);
  const server = createTlsServer({
    cert: readFileSync(misnamed.certificateFile),
    key: readFileSync(misnamed.privateKeyFile),
    ALPNProtocols: ["h2"],
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.2", resolve));
  const misnamedAddress = `127.0.0.2:${(server.address() as AddressInfo).port}`;
  try {
    const wrongName = await attempt({ endpoints: [misnamedAddress] });
    expect((wrongName as StrongroomError).message).toContain(
      `cannot connect to ${misnamedAddress}: Hostname/IP does not match certificate's altnames: IP: 127.0.0.2 is not in the cert's list: 127.0.0.1: the node's certificate does not name the address used`,
    );
  } finally {
    server.close();
  }
  const other = pki.client("other");
  expect(() => createClient({ endpoints, tls: { ...tlsOf("app"), keyFile: other.privateKeyFile } })).toThrow(
    `the client key does not match the client certificate (${tlsOf("app").certFile}, ${other.privateKeyFile})`,
  );
  // A file that cannot be read is named, with what it is for.
  expect(() => createClient({ endpoints, tls: { ...tlsOf("app"), caFile: "/nonexistent/ca.pem" } })).toThrow(
    "cannot read the CA bundle (tls.caFile) /nonexistent/ca.pem: ENOENT",
  );
});

it("close() ends the client's watches: no event after it, nothing left open", async () => {
  const closing = sdk();
  const events: WatchEvent[] = [];
  let opened = false;
  closing.watch("sdk/closed/", 0, {
    onEvent: (event) => events.push(event),
    onOpen: () => {
      opened = true;
    },
  });
  await eventually(() => opened, 5000);
  closing.close();
  await sdk().secrets.put({ path: "sdk/closed/key", value: bytes("after close") });
  // A watch still open would have it within a second ("a watch sees a change within a second").
  await new Promise((resolve) => setTimeout(resolve, 1500));
  expect(events).toEqual([]);
  // A call after close() says so (grpc-js said "Channel has been shut down").
  await expect(closing.secrets.get({ path: "sdk/closed/key" })).rejects.toMatchObject({
    code: status.CANCELLED,
    message: "this client is closed (close() was called): make a new one",
  });
  expect(() => closing.watch("sdk/closed/", 0, { onEvent: () => {} })).toThrow("this client is closed");
});

it("a sealed node is left for the next endpoint; when every endpoint is sealed, the call fails at once", async () => {
  await sdk().secrets.put({ path: "sdk/sealed", value: bytes("v") });
  const [sealedNode = "", ...others] = endpoints;
  await sdk({ endpoints: [sealedNode] }).sys.seal({});
  try {
    // With another endpoint, the read moves on and is served.
    const read = await sdk({ endpoints: [sealedNode, ...others] }).secrets.get(linearizable("sdk/sealed"));
    expect(text(read.value)).toBe("v");
    // It moves on at once, not after a backoff: here a backoff would be up to a minute.
    const patient = createClient({
      endpoints: [sealedNode, ...others],
      endpointOrder: "given",
      tls: tlsOf("app"),
      token: () => rootToken,
      retry: { baseMs: 60_000, maxMs: 60_000 },
    });
    opened.push(patient);
    const movedAt = performance.now();
    expect(text((await patient.secrets.get(linearizable("sdk/sealed"))).value)).toBe("v");
    expect(performance.now() - movedAt).toBeLessThan(1000);
    // With only the sealed node, it says so at once instead of retrying it to the deadline (15 s).
    const started = performance.now();
    const error = await sdk({ endpoints: [sealedNode] })
      .secrets.get(linearizable("sdk/sealed"))
      .catch((caught: unknown) => caught);
    expect(performance.now() - started).toBeLessThan(2000);
    expect(error).toBeInstanceOf(StrongroomError);
    expect(error).toMatchObject({ reason: "SEALED", details: { attempts: 1 } });
  } finally {
    await sdk({ endpoints: [sealedNode] }).sys.unseal({ share: unsealShare, nonce: "", reset: false });
  }
});

it("a call given an endpoint goes there alone: one client seals, reads and unseals one node of three", async () => {
  const client = sdk();
  await client.secrets.put({ path: "sdk/pinned", value: bytes("v") });
  // Each node describes itself: the status comes from the endpoint named, whatever the client's order.
  for (const [index, endpoint] of endpoints.entries()) {
    const status = await client.sys.sealStatus({}, { endpoint });
    expect(status).toMatchObject({ nodeId: specs[index]?.id, sealed: false });
  }
  const target = endpoints[2] ?? "";
  await client.sys.seal({}, { endpoint: target });
  try {
    for (const endpoint of endpoints)
      expect((await client.sys.sealStatus({}, { endpoint })).sealed).toBe(endpoint === target);
    // A read sent to the sealed node is refused there, not moved to a node that would serve it.
    const refused = await client.secrets
      .get(linearizable("sdk/pinned"), { endpoint: target })
      .catch((caught: unknown) => caught);
    expect(refused).toMatchObject({ reason: "SEALED", details: { attempts: 1 } });
    expect(text((await client.secrets.get(linearizable("sdk/pinned"))).value)).toBe("v");
  } finally {
    await client.sys.unseal({ share: unsealShare, nonce: "", reset: false }, { endpoint: target });
  }
  expect((await client.sys.sealStatus({}, { endpoint: target })).sealed).toBe(false);
  // An endpoint the client was not given is refused before anything is sent.
  const unknown = await client.sys
    .unseal({ share: unsealShare, nonce: "", reset: false }, { endpoint: "127.0.0.1:1" })
    .catch((caught: unknown) => caught);
  expect(unknown).toBeInstanceOf(TypeError);
  expect((unknown as Error).message).toBe(
    `unseal: endpoint "127.0.0.1:1" is not one of this client's (${endpoints.join(", ")})`,
  );
});

it("a paused node does not hold a read to its deadline: the next endpoint answers", async () => {
  await sdk().secrets.put({ path: "sdk/paused", value: bytes("here") });
  // A follower, first in the client's list: the read goes to it first.
  let pausedIndex = -1;
  for (const [index, endpoint] of endpoints.entries()) {
    const view = await sdk({ endpoints: [endpoint] }).cluster.status({});
    if (view.role !== "leader") pausedIndex = index;
  }
  const paused = endpoints[pausedIndex] ?? "";
  processes[pausedIndex]?.signal("SIGSTOP");
  try {
    const client = createClient({
      endpoints: [paused, ...endpoints.filter((endpoint) => endpoint !== paused)],
      endpointOrder: "given",
      tls: tlsOf("app"),
      token: () => rootToken,
      deadlineMs: 15_000,
      attemptTimeoutMs: 500,
    });
    opened.push(client);
    const started = performance.now();
    const read = await client.secrets.get(linearizable("sdk/paused"));
    expect(text(read.value)).toBe("here");
    // One attempt's timeout on the paused node, then another node: far from the 15 s deadline.
    expect(performance.now() - started).toBeLessThan(3000);
  } finally {
    processes[pausedIndex]?.signal("SIGCONT");
  }
});

/** The position of the node that leads, once one does. */
async function leaderIndex(): Promise<number> {
  for (;;) {
    for (const [index, endpoint] of endpoints.entries()) {
      const view = await sdk({ endpoints: [endpoint] })
        .cluster.status({})
        .catch(() => null);
      if (view?.role === "leader") return index;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

it("a paused leader holds a write only until the others elect another: it goes there, and applies once", async () => {
  const victim = await leaderIndex();
  // The leader first, so every write goes to it; an attempt timeout past the deadline, so that only
  // the stall check (stallCheckMs) can move the write before the deadline ends it.
  const client = createClient({
    endpoints: [endpoints[victim] ?? "", ...endpoints.filter((_, index) => index !== victim)],
    endpointOrder: "given",
    tls: tlsOf("app"),
    token: () => rootToken,
    deadlineMs: 15_000,
    attemptTimeoutMs: 60_000,
  });
  opened.push(client);
  expect((await client.secrets.put({ path: "sdk/stalled", value: bytes("v1") })).version).toBe(1);
  processes[victim]?.signal("SIGSTOP");
  try {
    const written = await client.secrets.put({ path: "sdk/stalled", value: bytes("v2") });
    expect(written.version).toBe(2);
    expect(await leaderIndex()).not.toBe(victim);
  } finally {
    processes[victim]?.signal("SIGCONT");
  }
  // Resumed, it says it leads until it hears of the new term; the tests after this one ask who leads.
  await eventually(async () => {
    const view = await sdk({ endpoints: [endpoints[victim] ?? ""] })
      .cluster.status({})
      .catch(() => null);
    return view !== null && view.role !== "leader";
  }, 10_000);
  // The paused leader may have taken the first attempt: resumed, it follows; the write is there once.
  const history = await client.secrets.history({
    path: "sdk/stalled",
    consistency: Consistency.CONSISTENCY_LINEARIZABLE,
  });
  expect(history.versions.map((version) => version.version)).toEqual([1, 2]);
}, 60_000);

it("a watch on a paused node moves to another once its pings go unanswered, and misses no change", async () => {
  // A follower first in the client's list: the watch opens there.
  const pausedIndex = ((await leaderIndex()) + 1) % endpoints.length;
  const paused = endpoints[pausedIndex] ?? "";
  const others = endpoints.filter((endpoint) => endpoint !== paused);
  const client = createClient({
    endpoints: [paused, ...others],
    endpointOrder: "given",
    tls: tlsOf("app"),
    token: () => rootToken,
    keepalive: { intervalMs: 300, timeoutMs: 300 },
  });
  opened.push(client);
  const events: WatchEvent[] = [];
  const failures: StrongroomError[] = [];
  let opens = 0;
  const watch = client.watch("sdk/watch-paused/", 0, {
    onEvent: (event) => events.push(event),
    onOpen: () => opens++,
    onError: (error) => failures.push(error),
  });
  await eventually(() => opens === 1, 5000);
  processes[pausedIndex]?.signal("SIGSTOP");
  try {
    // Written while the watch's node is paused: the node keeps the connection open and says nothing.
    const written = await sdk({ endpoints: others }).secrets.put({
      path: "sdk/watch-paused/key",
      value: bytes("while paused"),
    });
    // Two pings' time and a backoff, far from the pause's end (the finally below).
    await eventually(() => events.length > 0, 5000);
    expect(events).toEqual([
      {
        revision: written.revision,
        path: "sdk/watch-paused/key",
        kind: ChangeKind.CHANGE_KIND_PUT,
        version: 1,
      },
    ]);
    expect(opens).toBe(2);
    expect(failures.map((failure) => [failure.code, failure.details.endpoint])).toEqual([
      [status.UNAVAILABLE, paused],
    ]);
  } finally {
    processes[pausedIndex]?.signal("SIGCONT");
    watch.close();
  }
});

it("the leader dies after applying a write, before answering it: the SDK sends it again, and it applies once", async () => {
  const client = sdk();
  expect((await client.secrets.put({ path: "sdk/once", value: bytes("v1") })).version).toBe(1);
  const victim = await leaderIndex();
  // The next entry the leader applies (this write: the cluster is otherwise idle) kills it, as a
  // power cut would, before it answers: the write is committed, and its caller cannot know.
  await processes[victim]?.armFailpoints({ "after-apply": "crash" });
  try {
    const written = await client.secrets.put({ path: "sdk/once", value: bytes("v2") });
    // Answered as the first attempt applied it, by the new leader: one version more, not two.
    expect(written.version).toBe(2);
    // It did die there (the failpoint's SIGKILL to itself).
    expect(await processes[victim]?.exited()).toBeNull();
    const history = await client.secrets.history({
      path: "sdk/once",
      consistency: Consistency.CONSISTENCY_LINEARIZABLE,
    });
    expect(history.versions.map((version) => version.version)).toEqual([1, 2]);
  } finally {
    writeFileSync(failpointFiles[victim] ?? "", "{}");
    await processes[victim]?.kill();
    await processes[victim]?.start();
    await sdk({ endpoints: [endpoints[victim] ?? ""] }).sys.unseal({
      share: unsealShare,
      nonce: "",
      reset: false,
    });
  }
}, 60_000);

it("the leader is SIGKILLed mid-loop: no error reaches the caller, no write is lost or applied twice", async () => {
  const client = sdk();
  const victim = await leaderIndex();
  const written: string[] = [];
  const failures: unknown[] = [];
  const operations = 120;
  for (let i = 0; i < operations; i++) {
    if (i === 40) {
      // Between two operations. A write sent in the instant before the client's connection sees
      // the close goes onto a dead socket; with its request id, the SDK sends it again.
      await processes[victim]?.kill();
    }
    try {
      const path = `sdk/loop/k${i}`;
      await client.secrets.put({ path, value: bytes(`v${i}`) });
      written.push(path);
      // An earlier write, spread over the whole history (a fixed stride, so a run replays).
      const earlier = written[(i * 7919) % written.length] ?? path;
      const read = await client.secrets.get(linearizable(earlier));
      expect(text(read.value)).toBe(`v${earlier.slice("sdk/loop/k".length)}`);
    } catch (error) {
      failures.push(error);
    }
  }
  expect(failures).toEqual([]);
  expect(written).toHaveLength(operations);
  // Every acknowledged write is there, exactly once (a write applied twice would be version 2).
  for (const path of written) {
    const read = await client.secrets.get(linearizable(path));
    expect(read.version, path).toBe(1);
  }
}, 90_000);

it("the read cache drops an entry when its secret changes, and says which of its watches are not open", async () => {
  const client = sdk({
    cache: {
      ttlMs: 60_000,
      jitter: 0,
      maxEntries: 10,
      staleIfError: false,
      watchPrefixes: ["sdk/watched/", "sdk/x y/"],
    },
  });
  const writer = sdk();
  await eventually(() => client.cacheStats().watches[0]?.open === true, 10_000);
  await writer.secrets.put({ path: "sdk/watched/a", value: bytes("1") });
  const cached = await client.secrets.get({ path: "sdk/watched/a" });
  expect(text(cached.value)).toBe("1");
  // What the cache keeps is the value's bytes, not the response message (or pool slab) around them.
  expect(cached.value.buffer.byteLength).toBe(1);
  await writer.secrets.put({ path: "sdk/watched/a", value: bytes("2") });
  // Within the TTL, the watch's event dropped the entry: the next read fetches the new value.
  await eventually(
    async () => text((await client.secrets.get({ path: "sdk/watched/a" })).value) === "2",
    5000,
  );
  // A prefix the cluster refuses can never be watched: its entries would live out their TTL. Its
  // watch may still be on its way to a node that answers (an earlier test killed the leader, which
  // may be the first endpoint: that attempt fails to connect, and the next waits its backoff).
  await eventually(
    () => client.cacheStats().watches[1]?.lastError?.includes("(INVALID_ARGUMENT)") === true,
    10_000,
  );
  expect(client.cacheStats().watches).toEqual([
    { prefix: "sdk/watched/", open: true, lastError: null },
    { prefix: "sdk/x y/", open: false, lastError: expect.stringContaining("(INVALID_ARGUMENT)") },
  ]);
  writer.close();
  client.close();
}, 30_000);

it("the read cache answers from stale entries while no node can be reached", async () => {
  const client = sdk({ cache: { ttlMs: 200, jitter: 0, maxEntries: 10, staleIfError: true } });
  await client.secrets.put({ path: "sdk/cached", value: bytes("kept") });
  expect(text((await client.secrets.get(linearizable("sdk/cached"))).value)).toBe("kept");
  expect(text((await client.secrets.get(linearizable("sdk/cached"))).value)).toBe("kept");
  expect(client.cacheStats()).toMatchObject({ hits: 1, misses: 1, entries: 1 });
  // All nodes but one gone (earlier tests may have stopped one already): the call fails with what
  // the node left explained (it has no quorum), not with the last endpoint tried being down.
  const healthOf = (spec: (typeof specs)[number]) => `http://${spec.host}:${spec.httpPort}/v1/sys/health`;
  const answering = await Promise.all(
    specs.map((spec) =>
      fetch(healthOf(spec)).then(
        () => true,
        () => false,
      ),
    ),
  );
  const survivor = answering.indexOf(true);
  await Promise.all(processes.map((node, i) => (i === survivor ? undefined : node.kill())));
  // Once it knows it has no leader (a leader steps down within an election timeout); before, its
  // reads wait on a quorum until the call's deadline, which explains nothing either.
  const survivorSpec = specs[survivor];
  if (survivorSpec === undefined) throw new Error("no node answers health");
  await eventually(async () => {
    const view = (await (await fetch(healthOf(survivorSpec))).json()) as {
      leaderKnown: boolean;
    };
    return view.leaderKnown === false;
  }, 10_000);
  const asked = performance.now();
  const noQuorum = await sdk()
    .secrets.get(linearizable("sdk/never"), { deadlineMs: 3000 })
    .catch((error: unknown) => error as StrongroomError);
  const tookMs = Math.round(performance.now() - asked);
  expect(noQuorum).toBeInstanceOf(StrongroomError);
  // All of what the SDK answered is in the comparison, so that a failure shows it.
  const { reason, message, details } = noQuorum as StrongroomError;
  expect({ reason, message, details, tookMs }).toEqual({
    reason: "NO_LEADER",
    message: expect.any(String),
    details: expect.anything(),
    tookMs: expect.any(Number),
  });
  expect(message).not.toMatch(/^cannot connect/);
  await Promise.all(processes.map((node) => node.kill()));
  await new Promise((resolve) => setTimeout(resolve, 300));
  const stale = await client.secrets.get(linearizable("sdk/cached"), { deadlineMs: 2000 });
  expect(text(stale.value)).toBe("kept");
  const stats = client.cacheStats();
  expect(stats.staleServed).toBe(1);
  expect(stats.lastStaleAgeMs).toBeGreaterThanOrEqual(300);
  expect(stats.hitRatio).toBeCloseTo(1 / 3);
  // What was never cached fails as the cluster does.
  await expect(client.secrets.get(linearizable("sdk/never"), { deadlineMs: 1000 })).rejects.toMatchObject({
    code: status.UNAVAILABLE,
  });
}, 30_000);

it("dialling nodes by IP address raises no warning in the application (DEP0123: an IP as the TLS server name)", () => {
  // Every test above dialled 127.0.0.x addresses.
  expect(warnings.filter((warning) => warning.code === "DEP0123")).toEqual([]);
});
