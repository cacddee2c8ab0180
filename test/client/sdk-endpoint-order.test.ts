// The order in which SDK clients try their endpoints, against stand-in nodes (real gRPC servers
// over mutual TLS): by default each client has its own random order, so that many applications
// given the same member list spread their reads, and their moves away from a node that is down,
// over the members; `endpointOrder: "given"` keeps the list's order. Sticky reads stay on the
// endpoint that answered one last: a write answered by the leader does not move them there.

import { Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { afterAll, expect, it } from "vitest";
import { createClient, type EndpointOrder, type StrongroomClient } from "../../client/index.js";
import { ClusterService, StatusResponse } from "../../proto/gen/strongroom/v1/cluster.gen.js";
import {
  Consistency,
  type GetResponse,
  type PutResponse,
  SecretsService,
} from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { NodeError, toServiceError } from "../../server/errors.js";
import { TestPki } from "../server/pki-fixture.js";
import { closedPort, StandInNodes } from "./stand-in-node.js";

const pki = new TestPki("sdk-endpoint-order");
const standIns = new StandInNodes(pki);
afterAll(() => {
  standIns.stopAll();
  pki.cleanup();
});

type Callback<T> = (error: Partial<ServiceError> | null, response?: T, trailer?: Metadata) => void;

interface StandIn {
  readonly id: string;
  address: string;
  /** Its Secrets.Get calls, linearizable and stale, and its Secrets.Put calls. */
  gets: number;
  staleGets: number;
  puts: number;
  /** While true it answers reads as a sealed node does. */
  sealed: boolean;
}

/**
 * A stand-in for node `id` of a cluster led by `leader`, in `region`: Cluster.Status says so, and
 * every answer names the leader in its trailer, as a node's do.
 */
async function standIn(id: string, leader: string, region = ""): Promise<StandIn> {
  const node: StandIn = { id, address: "", gets: 0, staleGets: 0, puts: 0, sealed: false };
  const trailer = () => {
    const metadata = new Metadata();
    metadata.set("strongroom-leader", leader);
    return metadata;
  };
  const secrets: UntypedServiceImplementation = {
    get: (call: { request: { consistency: Consistency } }, callback: Callback<GetResponse>) => {
      if (call.request.consistency === Consistency.CONSISTENCY_STALE) node.staleGets++;
      else node.gets++;
      if (node.sealed)
        return callback(
          toServiceError(new NodeError("SEALED", "this node is sealed: unseal it to serve secrets")),
        );
      const value = new TextEncoder().encode(id);
      callback(null, { value, version: 1, revision: 1, createdMs: 0 }, trailer());
    },
    put: (_call: unknown, callback: Callback<PutResponse>) => {
      node.puts++;
      callback(null, { version: 1, revision: 1 }, trailer());
    },
  };
  const cluster: UntypedServiceImplementation = {
    status: (_call: unknown, callback: Callback<StatusResponse>) => {
      const role = id === leader ? "leader" : "follower";
      const status = { nodeId: id, role, leaderId: leader, term: 2, region };
      callback(null, { ...StatusResponse.decode(new Uint8Array(0)), ...status }, trailer());
    },
  };
  node.address = await standIns.startServing([
    [SecretsService, secrets],
    [ClusterService, cluster],
  ]);
  return node;
}

function sdk(endpoints: readonly string[], endpointOrder?: EndpointOrder, region?: string): StrongroomClient {
  const files = pki.client("caller");
  // Where calls start and go is the point here, not how long they take: a slow answer (60
  // clients' handshakes at once on a loaded machine took CI over the 2 s default once) must not
  // move a call to the next member, so the attempt timeout and the stall check wait long.
  return createClient({
    endpoints,
    tls: { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile },
    deadlineMs: 60_000,
    attemptTimeoutMs: 30_000,
    stallCheckMs: 30_000,
    ...(endpointOrder === undefined ? {} : { endpointOrder }),
    ...(region === undefined ? {} : { region }),
  });
}

const read = (client: StrongroomClient, consistency = Consistency.CONSISTENCY_LINEARIZABLE) =>
  client.secrets.get({ path: "app/db", version: 0, consistency, maxStalenessMs: 0 });

/**
 * `count` clients given `endpoints` (and `region`), each reading once, ten at a time: each client
 * opens a connection to every member (to learn their regions, with a 2 s bound), and a hundred
 * handshakes at once on a loaded machine can take longer than that.
 */
async function readOnceEach(
  count: number,
  endpoints: readonly string[],
  endpointOrder?: EndpointOrder,
  region?: string,
) {
  for (let started = 0; started < count; started += 10) {
    const clients = Array.from({ length: Math.min(10, count - started) }, () =>
      sdk(endpoints, endpointOrder, region),
    );
    try {
      await Promise.all(clients.map((client) => read(client)));
    } finally {
      for (const client of clients) client.close();
    }
  }
}

// Each of the 60 clients starts at one of three members, each with chance 1/3: that one member gets
// fewer than 5 of them has a chance of about 1 in 100,000 (binomial, n 60, p 1/3).
it("60 clients given one list start at every member by default; given, all start at its first", async () => {
  const nodes = await Promise.all(["n1", "n2", "n3"].map((id) => standIn(id, "n1")));
  const endpoints = nodes.map((node) => node.address);
  await readOnceEach(60, endpoints);
  const spread = nodes.map((node) => node.gets);
  process.stdout.write(`endpoint order: 60 clients' first reads per member, random: ${spread.join(", ")}\n`);
  expect(spread.reduce((sum, gets) => sum + gets, 0)).toBe(60);
  for (const gets of spread) expect(gets).toBeGreaterThanOrEqual(5);

  for (const node of nodes) node.gets = 0;
  await readOnceEach(60, endpoints, "given");
  expect(nodes.map((node) => node.gets)).toEqual([60, 0, 0]);
});

it("with the first member down, the clients that start there move on to different members", async () => {
  const down = `127.0.0.1:${await closedPort()}`;
  const nodes = await Promise.all(["n2", "n3"].map((id) => standIn(id, "n2")));
  const endpoints = [down, ...nodes.map((node) => node.address)];
  await readOnceEach(60, endpoints);
  const spread = nodes.map((node) => node.gets);
  process.stdout.write(
    `endpoint order: 60 clients' reads with the first member down: ${spread.join(", ")}\n`,
  );
  expect(spread.reduce((sum, gets) => sum + gets, 0)).toBe(60);
  // Each of the two gets a client with chance 1/2: fewer than 15 of 60 has a chance below 1 in 10,000.
  for (const gets of spread) expect(gets).toBeGreaterThanOrEqual(15);

  for (const node of nodes) node.gets = 0;
  await readOnceEach(60, endpoints, "given");
  expect(nodes.map((node) => node.gets)).toEqual([60, 0]);
});

it("clients with a region start at every member in it, in their own orders, and at none elsewhere", async () => {
  const nodes = await Promise.all([
    standIn("n1", "n1", "eu"),
    standIn("n2", "n1", "us"),
    standIn("n3", "n1", "us"),
  ]);
  const endpoints = nodes.map((node) => node.address);
  await readOnceEach(40, endpoints, undefined, "us");
  const spread = nodes.map((node) => node.gets);
  process.stdout.write(
    `endpoint order: 40 clients in us, reads per member (eu, us, us): ${spread.join(", ")}\n`,
  );
  expect(spread[0]).toBe(0);
  // Each us member gets a client with chance 1/2: fewer than 8 of 40 has a chance below 1 in 10,000.
  for (const gets of spread.slice(1)) expect(gets).toBeGreaterThanOrEqual(8);

  for (const node of nodes) node.gets = 0;
  await readOnceEach(40, endpoints, "given", "us");
  expect(nodes.map((node) => node.gets)).toEqual([0, 40, 0]);
});

it("sticky reads stay on their member after writes the leader answered; stale reads follow the leader", async () => {
  const [n2, n1, n3] = await Promise.all(["n2", "n1", "n3"].map((id) => standIn(id, "n1")));
  if (n1 === undefined || n2 === undefined || n3 === undefined) throw new Error("three stand-ins");
  const client = sdk([n2.address, n1.address, n3.address], "given");
  try {
    expect(new TextDecoder().decode((await read(client)).value)).toBe("n2");
    // The first write goes where calls go (n2, whose answer names n1); once the client has asked
    // the members who they are (in the background), writes go to n1.
    const put = () => client.secrets.put({ path: "app/db", value: new TextEncoder().encode("v") });
    await put();
    const deadline = Date.now() + 5000;
    while (n1.puts === 0 && Date.now() < deadline) {
      await put();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(n1.puts).toBeGreaterThan(0);
    const readsBefore = n2.gets;
    for (let i = 0; i < 10; i++) await read(client);
    expect([n1.gets, n2.gets - readsBefore, n3.gets]).toEqual([0, 10, 0]);
    // A stale read is served from a node's own state: it goes where other calls go, to the
    // endpoint that answered last (after a write, the leader, whose state is the newest).
    await put();
    await read(client, Consistency.CONSISTENCY_STALE);
    expect([n1.staleGets, n2.staleGets]).toEqual([1, 0]);
    await read(client);
    expect([n1.gets, n2.gets - readsBefore]).toEqual([0, 11]);
  } finally {
    client.close();
  }
});

it("a sticky read moves on from a member that cannot serve it, and later reads stay where it went", async () => {
  const nodes = await Promise.all(["n1", "n2", "n3"].map((id) => standIn(id, "n1")));
  const [first, second] = nodes;
  if (first === undefined || second === undefined) throw new Error("three stand-ins");
  const client = sdk(
    nodes.map((node) => node.address),
    "given",
  );
  try {
    await read(client);
    first.sealed = true;
    expect(new TextDecoder().decode((await read(client)).value)).toBe("n2");
    first.sealed = false;
    for (let i = 0; i < 5; i++) await read(client);
    expect(nodes.map((node) => node.gets)).toEqual([2, 6, 0]);
  } finally {
    client.close();
  }
});

it("endpointOrder must be random or given", () => {
  const files = pki.client("caller");
  expect(() =>
    createClient({
      endpoints: ["127.0.0.1:1"],
      tls: { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile },
      endpointOrder: "shuffled" as never,
    }),
  ).toThrow(new TypeError('createClient: endpointOrder is "random" or "given", not "shuffled"'));
});
