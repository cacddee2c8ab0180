// How the SDK tells a stalled node from a slow one, against stand-in nodes (real gRPC servers over
// mutual TLS): while an attempt waits past `stallCheckMs`, the client asks every endpoint for
// Cluster.Status. A node that answers neither the call nor that, while another names a leader other
// than it, is given up at once for that leader; a node that is slow but answers Cluster.Status keeps
// the call; and so does a silent node the others still name as leader (an election not over), until
// the attempt's own timeout. (test/client/sdk.test.ts pauses a real leader with SIGSTOP.)

import type { ServiceError, UntypedServiceImplementation } from "@grpc/grpc-js";
import { afterAll, expect, it } from "vitest";
import { createClient } from "../../client/index.js";
import { ClusterService, StatusResponse } from "../../proto/gen/strongroom/v1/cluster.gen.js";
import {
  type GetResponse,
  type PutResponse,
  SecretsService,
} from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { TestPki } from "../server/pki-fixture.js";
import { StandInNodes } from "./stand-in-node.js";

const pki = new TestPki("sdk-stall");
const standIns = new StandInNodes(pki);
afterAll(() => {
  standIns.stopAll();
  pki.cleanup();
});

type Callback<T> = (error: Partial<ServiceError> | null, response?: T) => void;

/** What each stand-in was asked: its calls of Secrets.Get and Secrets.Put. */
interface Asked {
  gets: number;
  puts: number;
}

/**
 * A stand-in node: Cluster.Status answers `status` (never, for null), Secrets.Get and Secrets.Put
 * answer after `answerAfterMs` (never, for null).
 */
async function standIn(
  status: Partial<StatusResponse> | null,
  answerAfterMs: number | null,
  name: string,
): Promise<{ address: string; asked: Asked }> {
  const asked: Asked = { gets: 0, puts: 0 };
  const later = <T>(callback: Callback<T>, response: T) => {
    if (answerAfterMs !== null) setTimeout(() => callback(null, response), answerAfterMs);
  };
  const secrets: UntypedServiceImplementation = {
    get: (_call: unknown, callback: Callback<GetResponse>) => {
      asked.gets++;
      later(callback, { value: new TextEncoder().encode(name), version: 1, revision: 1, createdMs: 0 });
    },
    put: (_call: unknown, callback: Callback<PutResponse>) => {
      asked.puts++;
      later(callback, { version: 1, revision: 1 });
    },
  };
  const cluster: UntypedServiceImplementation = {
    status: (_call: unknown, callback: Callback<StatusResponse>) => {
      // The fields not given as an empty message decodes them.
      if (status !== null) callback(null, { ...StatusResponse.decode(new Uint8Array(0)), ...status });
    },
  };
  const address = await standIns.startServing([
    [SecretsService, secrets],
    [ClusterService, cluster],
  ]);
  return { address, asked };
}

function sdk(endpoints: string[]) {
  const files = pki.client("caller");
  return createClient({
    endpoints,
    // The tests stage which stand-in is tried first.
    endpointOrder: "given",
    tls: { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile },
    deadlineMs: 8000,
    attemptTimeoutMs: 6000,
    stallCheckMs: 100,
  });
}

it("a node silent to the call and to Cluster.Status, while another names a new leader, is left for it at once", async () => {
  const paused = await standIn(null, null, "paused");
  const elected = await standIn({ nodeId: "b", role: "leader", leaderId: "b", term: 7 }, 0, "b");
  const client = sdk([paused.address, elected.address]);
  try {
    const started = performance.now();
    const written = await client.secrets.put({ path: "app/db", value: new TextEncoder().encode("v") });
    const tookMs = performance.now() - started;
    expect(written.version).toBe(1);
    // Sent to the first endpoint, given up there, answered by the leader the other named.
    expect([paused.asked.puts, elected.asked.puts]).toEqual([1, 1]);
    // Two checks' worth of waiting (about 200 ms), far from the attempt's 6 s timeout.
    expect(tookMs).toBeLessThan(3000);
    // The leader is noted: the next write goes straight to it.
    await client.secrets.put({ path: "app/db", value: new TextEncoder().encode("w") });
    expect([paused.asked.puts, elected.asked.puts]).toEqual([1, 2]);
  } finally {
    client.close();
  }
});

it("a slow node that answers Cluster.Status keeps the call, and answers it", async () => {
  const slow = await standIn({ nodeId: "a", role: "leader", leaderId: "a", term: 3 }, 900, "a");
  const other = await standIn({ nodeId: "b", role: "follower", leaderId: "a", term: 3 }, 0, "b");
  const client = sdk([slow.address, other.address]);
  try {
    const read = await client.secrets.get({ path: "app/db" });
    expect(new TextDecoder().decode(read.value)).toBe("a");
    expect([slow.asked.gets, other.asked.gets]).toEqual([1, 0]);
  } finally {
    client.close();
  }
});

it("a silent node the others still name as leader keeps the call until the attempt's own timeout", async () => {
  const silent = await standIn(null, null, "a");
  const follower = await standIn({ nodeId: "b", role: "follower", leaderId: "a", term: 3 }, 0, "b");
  const files = pki.client("caller");
  const client = createClient({
    endpoints: [silent.address, follower.address],
    endpointOrder: "given",
    tls: { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile },
    deadlineMs: 8000,
    attemptTimeoutMs: 1000,
    stallCheckMs: 100,
  });
  try {
    const started = performance.now();
    const read = await client.secrets.get({ path: "app/db" });
    const tookMs = performance.now() - started;
    expect(new TextDecoder().decode(read.value)).toBe("b");
    expect([silent.asked.gets, follower.asked.gets]).toEqual([1, 1]);
    // Its node was not given up on a check: the attempt ran out its 1 s.
    expect(tookMs).toBeGreaterThanOrEqual(950);
  } finally {
    client.close();
  }
});

it("stallCheckMs and the keepalive's times must be positive numbers of milliseconds", () => {
  const files = pki.client("caller");
  const tls = { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile };
  for (const bad of [0, -5, Number.NaN]) {
    expect(() => createClient({ endpoints: ["127.0.0.1:1"], tls, stallCheckMs: bad })).toThrow(
      "createClient: stallCheckMs must be a positive number",
    );
    expect(() => createClient({ endpoints: ["127.0.0.1:1"], tls, keepalive: { intervalMs: bad } })).toThrow(
      "createClient: keepalive.intervalMs must be a positive number",
    );
    expect(() => createClient({ endpoints: ["127.0.0.1:1"], tls, keepalive: { timeoutMs: bad } })).toThrow(
      "createClient: keepalive.timeoutMs must be a positive number",
    );
  }
});
