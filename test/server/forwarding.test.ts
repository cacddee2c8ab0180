// Forwarding between two nodes over real sockets and mutual TLS: a Forwarder on the follower and
// the leader's peer listener with its ForwardReceiver; the leader's execution is the test's. Many
// requests share one stream and each gets its own answer, whatever order they finish in; the
// requests made in one turn travel as one message, and so do the answers ready in one, within a
// batch's bytes, and a request or answer too large for any message is refused alone; the
// leader's errors pass through with their reason; a request past its deadline fails by it; the
// leader going away fails what it had (outcome unknown), and a leader never reached is NO_LEADER
// (nothing sent); a new leader known fails what the old one holds after a grace; a leader of an
// older version, without ForwardBatches, is served a call at a time, and a follower of an older
// version is still served over ForwardStream. The executor forwards a call at once, but runs one
// here only once what its interceptors handed it (a request entry being written) settles.

import { Server, status } from "@grpc/grpc-js";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import {
  type ForwardedAnswer,
  ForwardedAnswers,
  type ForwardedCalls,
  PeerClient,
  PeerService,
} from "../../proto/gen/strongroom/raft/v1/peer.gen.js";
import {
  type PutRequest,
  type PutResponse,
  type ReadTimesRequest,
  type ReadTimesResponse,
  SecretsService,
} from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { NotLeaderError } from "../../raft/core/index.js";
import { type AnyApiMethod, method } from "../../server/api/api-method.js";
import { ForwardedError, NodeError } from "../../server/errors.js";
import { Executor } from "../../server/executor.js";
import { ForwardReceiver } from "../../server/forward-receiver.js";
import { Forwarder } from "../../server/forwarder.js";
import { type PeerListener, startPeerListener } from "../../server/peer/peer-listener.js";
import { GrpcPeerTransport } from "../../server/peer/peer-transport.js";
import type { RequestContext } from "../../server/request.js";
import { dialTls, serverCredentials } from "../../server/tls/credentials.js";
import { TlsFiles } from "../../server/tls/tls-files.js";
import { eventually } from "../support/eventually.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("forwarding");
const closers: (() => unknown)[] = [];
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  pki.cleanup();
});
afterEach(() => {
  vi.restoreAllMocks();
});

const put = method<PutRequest, PutResponse>(SecretsService.put, "leader", async () => ({
  version: 0,
  revision: 0,
}));
/** A "peer" method whose answer can be large: `prefix` "n:B" asks for n paths of B bytes each. */
const readTimes = method<ReadTimesRequest, ReadTimesResponse>(SecretsService.readTimes, "peer", async () => ({
  lastReadMs: {},
  trackedSinceMs: 0,
}));
const readTimesAnswer = async (request: ReadTimesRequest): Promise<ReadTimesResponse> => {
  const [count, bytes] = request.prefix.split(":").map(Number);
  const lastReadMs: Record<string, number> = {};
  for (let n = 0; n < (count ?? 0); n++) lastReadMs[`${n}/`.padEnd(bytes ?? 0, "x")] = n;
  return { lastReadMs, trackedSinceMs: 1 };
};
const methods = new Map<string, AnyApiMethod>([
  [SecretsService.put.path, put],
  [SecretsService.readTimes.path, readTimes],
]);

type Execute = (request: PutRequest, context: RequestContext) => Promise<PutResponse>;

/**
 * The leader "n1": a peer listener whose forwarded requests run `execute`; counts its streams and
 * the requests each ForwardBatches message brought and the answers each one took back.
 */
async function startLeader(execute: Execute, port = 0) {
  const tls = new TlsFiles(pki.node("n1", ["127.0.0.1"]));
  const transport = new GrpcPeerTransport({ nodeId: "n1", peers: new Map(), tls });
  const receiver = new ForwardReceiver({
    methods,
    execute: (method, request, context) =>
      method === readTimes
        ? readTimesAnswer(request as ReadTimesRequest)
        : execute(request as PutRequest, context),
    deadlineMsMax: 30_000,
    answerReserveMs: 100,
  });
  let streams = 0;
  const requestsPerMessage: number[] = [];
  const answersPerMessage: number[] = [];
  const answerBytesPerMessage: number[] = [];
  const serveBatches = receiver.batches();
  const listener: PeerListener = await startPeerListener({
    address: `127.0.0.1:${port}`,
    tls,
    transport,
    forwarding: {
      unary: () => receiver.unary(),
      stream: () => receiver.stream(),
      batches: () => (call) => {
        streams += 1;
        call.on("data", (message: ForwardedCalls) => requestsPerMessage.push(message.calls.length));
        const write = call.write.bind(call);
        call.write = (message: ForwardedAnswers) => {
          answersPerMessage.push(message.answers.length);
          answerBytesPerMessage.push(ForwardedAnswers.encode(message).finish().length);
          return write(message);
        };
        serveBatches(call);
      },
      close: () => receiver.close(),
    },
  });
  const stop = async () => {
    await listener.close();
    await transport.close();
    tls.close();
  };
  return {
    port: listener.port,
    streams: () => streams,
    requestsPerMessage,
    answersPerMessage,
    answerBytesPerMessage,
    stop,
  };
}

/** The follower "n2": a Forwarder that knows n1 at `port`. */
function follower(port: number): Forwarder {
  const tls = new TlsFiles(pki.node("n2", ["127.0.0.1"]));
  const forwarder = new Forwarder(new Map([["n1", `127.0.0.1:${port}`]]), tls);
  closers.push(() => {
    forwarder.close();
    tls.close();
  });
  return forwarder;
}

const contextFor = (deadlineMs = 10_000): RequestContext => ({
  method: SecretsService.put.path,
  identity: "alice",
  token: null,
  answerBy: performance.now() + deadlineMs,
  forwardedBy: null,
  authorization: { caller: null, tokenUseSpent: false },
});

const forwardPut = (forwarder: Forwarder, path: string, deadlineMs?: number) =>
  forwarder.forward<PutRequest, PutResponse>(
    "n1",
    put,
    { path, value: new TextEncoder().encode(path) },
    contextFor(deadlineMs),
  );

describe("forwarding over one stream", () => {
  it("answers each of many requests with its own response, out of order, over one stream", async () => {
    const seen: string[] = [];
    const leader = await startLeader(async (request, context) => {
      seen.push(`${context.identity} via ${context.forwardedBy}`);
      const n = Number(request.path.slice(2));
      // Later requests finish first.
      await new Promise((resolve) => setTimeout(resolve, 200 - n));
      return { version: n, revision: 1000 + n };
    });
    closers.push(leader.stop);
    const forwarder = follower(leader.port);
    const answers = await Promise.all(Array.from({ length: 200 }, (_, n) => forwardPut(forwarder, `p/${n}`)));
    expect(answers.map((answer) => answer.version)).toEqual(Array.from({ length: 200 }, (_, n) => n));
    expect(answers.map((answer) => answer.revision)).toEqual(Array.from({ length: 200 }, (_, n) => 1000 + n));
    expect(new Set(seen)).toEqual(new Set(["alice via n2"]));
    expect(leader.streams()).toBe(1);
    // Made in one turn of the event loop, the 200 requests left as one message.
    expect(leader.requestsPerMessage).toEqual([200]);
    expect(forwarder.inFlight()).toBe(0);
  });

  it("sends the answers ready in one turn as one message, and requests made in separate turns one by one", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let running = 0;
    const leader = await startLeader(async (request) => {
      running += 1;
      await gate;
      return { version: request.path.length, revision: 7 };
    });
    closers.push(leader.stop);
    const forwarder = follower(leader.port);
    const together = Promise.all(Array.from({ length: 50 }, (_, n) => forwardPut(forwarder, `p/${n}`)));
    await eventually(() => running === 50, 5_000);
    release();
    expect((await together).map((answer) => answer.version)).toEqual(
      Array.from({ length: 50 }, (_, n) => `p/${n}`.length),
    );
    expect(leader.answersPerMessage).toEqual([50]);
    for (const path of ["p/a", "p/bb", "p/ccc"])
      expect((await forwardPut(forwarder, path)).version).toBe(path.length);
    expect(leader.requestsPerMessage).toEqual([50, 1, 1, 1]);
    expect(leader.answersPerMessage).toEqual([50, 1, 1, 1]);
    expect(leader.streams()).toBe(1);
  });

  it("keeps each message within a batch's bytes, and refuses alone what no message between nodes carries", async () => {
    const leader = await startLeader(async (request) => ({ version: request.value.length, revision: 1 }));
    closers.push(leader.stop);
    const forwarder = follower(leader.port);
    const mib = 1024 * 1024;
    const putOf = (bytes: number) =>
      forwarder.forward<PutRequest, PutResponse>(
        "n1",
        put,
        { path: "p/big", value: new Uint8Array(bytes) },
        contextFor(),
      );
    // Five requests of 1.5 MiB made in one turn: at most 4 MiB (the peer transport's batch) a message.
    const big = await Promise.all(Array.from({ length: 5 }, () => putOf(1.5 * mib)));
    expect(big.map((answer) => answer.version)).toEqual(Array(5).fill(1.5 * mib));
    expect(leader.requestsPerMessage).toEqual([2, 2, 1]);
    // Over 8 MiB (a batch and its headroom), refused here: sent, it would fail the stream.
    const tooBig = await putOf(9 * mib).catch((error: unknown) => error);
    expect(tooBig).toBeInstanceOf(NodeError);
    expect(tooBig).toMatchObject({ code: "RESOURCE_EXHAUSTED" });
    expect((tooBig as Error).message).toMatch(/more than a message between nodes carries \(8388608\)/);
    expect(leader.requestsPerMessage).toEqual([2, 2, 1]);
    // Answers likewise: two of about 3 MiB go in two messages; one of about 9 MiB is refused alone.
    const readTimesOf = (prefix: string) =>
      forwarder.forward<ReadTimesRequest, ReadTimesResponse>("n1", readTimes, { prefix }, contextFor());
    const [three, another, nine, small] = await Promise.allSettled([
      readTimesOf("3000:1000"),
      readTimesOf("3000:1000"),
      readTimesOf("9000:1000"),
      readTimesOf("2:10"),
    ]);
    expect(three.status === "fulfilled" && Object.keys(three.value.lastReadMs).length).toBe(3000);
    expect(another.status === "fulfilled" && Object.keys(another.value.lastReadMs).length).toBe(3000);
    expect(small.status === "fulfilled" && Object.keys(small.value.lastReadMs)).toEqual([
      "0/xxxxxxxx",
      "1/xxxxxxxx",
    ]);
    expect(nine.status).toBe("rejected");
    const refused = (nine as PromiseRejectedResult).reason;
    expect(refused).toBeInstanceOf(ForwardedError);
    expect(refused).toMatchObject({ grpcCode: status.RESOURCE_EXHAUSTED, reason: "RESOURCE_EXHAUSTED" });
    expect((refused as Error).message).toMatch(
      /answer of \d+ bytes is more than a message between nodes carries/,
    );
    expect(Math.max(...leader.answerBytesPerMessage)).toBeLessThanOrEqual(4 * mib);
    expect(leader.streams()).toBe(1);
  });

  it("still serves a follower of an older version: ForwardStream, a message per request and per answer", async () => {
    const leader = await startLeader(async (request) => ({ version: request.path.length, revision: 5 }));
    closers.push(leader.stop);
    const tls = new TlsFiles(pki.node("n2", ["127.0.0.1"]));
    const dial = dialTls(tls, `127.0.0.1:${leader.port}`);
    const client = new PeerClient(`127.0.0.1:${leader.port}`, dial.credentials, dial.options);
    closers.push(() => {
      client.close();
      tls.close();
    });
    const call = client.forwardStream();
    const answers: ForwardedAnswer[] = [];
    call.on("data", (answer: ForwardedAnswer) => answers.push(answer));
    const ended = new Promise<void>((resolve) => call.on("end", resolve));
    for (const [id, path] of [
      [4, "p/a"],
      [9, "p/bbbb"],
    ] as const) {
      call.write({
        id,
        request: {
          method: SecretsService.put.path,
          request: SecretsService.put.requestSerialize({ path, value: new Uint8Array(1) }),
          clientIdentity: "alice",
          deadlineMs: 5_000,
          clientToken: "",
          tokenUseSpent: false,
        },
      });
    }
    call.end();
    await ended;
    expect(answers.map((answer) => [answer.id, answer.response?.code])).toEqual(
      expect.arrayContaining([
        [4, status.OK],
        [9, status.OK],
      ]),
    );
    expect(answers).toHaveLength(2);
    const versions = answers.map(
      (answer) =>
        SecretsService.put.responseDeserialize(Buffer.from(answer.response?.response ?? [])).version,
    );
    expect(versions.sort()).toEqual([3, 6]);
    expect(leader.streams()).toBe(0);
  });

  it("passes the leader's error on with its reason, and fails a request at its deadline", async () => {
    const leader = await startLeader(async (request) => {
      if (request.path === "p/refused")
        throw new NodeError("PERMISSION_DENIED", "alice may not update p/refused");
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      return { version: 1, revision: 1 };
    });
    closers.push(leader.stop);
    const forwarder = follower(leader.port);
    const refused = await forwardPut(forwarder, "p/refused").catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ForwardedError);
    expect(refused).toMatchObject({ grpcCode: status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" });
    const started = Date.now();
    const late = await forwardPut(forwarder, "p/slow", 300).catch((error: unknown) => error);
    expect(late).toBeInstanceOf(NodeError);
    expect((late as NodeError).code).toBe("FORWARD_FAILED");
    expect((late as Error).message).toMatch(/did not answer before the deadline/);
    expect(Date.now() - started).toBeLessThan(2_000);
    // The stream outlives a request that timed out: the next one goes through it.
    const again = await forwardPut(forwarder, "p/refused").catch((error: unknown) => error);
    expect(again).toMatchObject({ reason: "PERMISSION_DENIED" });
    expect(leader.streams()).toBe(1);
  });

  it("counts a call's time left on the monotonic clock: a wall clock stepped back an hour stretches no wait", async () => {
    let leaderHad = 0;
    const leader = await startLeader(async (_request, context) => {
      leaderHad = context.answerBy - performance.now();
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      return { version: 1, revision: 1 };
    });
    closers.push(leader.stop);
    const forwarder = follower(leader.port);
    const context = contextFor(400);
    // The wall clock steps back an hour after the call arrived (its time counted from then).
    const wallClock = Date.now.bind(Date);
    vi.spyOn(Date, "now").mockImplementation(() => wallClock() - 3_600_000);
    const started = performance.now();
    const late = await forwarder
      .forward<PutRequest, PutResponse>("n1", put, { path: "p/slow", value: new Uint8Array(1) }, context)
      .catch((error: unknown) => error);
    expect((late as NodeError).code).toBe("FORWARD_FAILED");
    expect(performance.now() - started).toBeLessThan(2_000);
    // The leader was given what was left of the 400 ms, less its reserve for the answer.
    expect(leaderHad).toBeGreaterThan(150);
    expect(leaderHad).toBeLessThanOrEqual(400);

    // Waiting for a leader, too: NO_LEADER at the call's deadline, not an hour later.
    const executor = new Executor({
      leader: () => ({ isLeader: false, leaderId: null }),
      forwarder,
      interceptors: [],
    });
    const waited = performance.now();
    const noLeader = await executor
      .execute(put, { path: "p/waits", value: new Uint8Array(1) }, contextFor(300))
      .catch((error: unknown) => error);
    expect((noLeader as NodeError).code).toBe("NO_LEADER");
    expect(performance.now() - waited).toBeLessThan(2_000);
  });

  it("fails what a leader that went away had, unknown outcome; the next request opens a new stream", async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = await startLeader(async () => {
      await held;
      return { version: 1, revision: 1 };
    });
    const forwarder = follower(first.port);
    const pending = Promise.all([forwardPut(forwarder, "p/a"), forwardPut(forwarder, "p/b")]).catch(
      (error: unknown) => error,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    await first.stop();
    release();
    const failure = await pending;
    expect(failure).toBeInstanceOf(NodeError);
    expect((failure as NodeError).code).toBe("FORWARD_FAILED");
    // Nothing listens there now: never sent, so NO_LEADER (the executor may retry it).
    const unreachable = await forwardPut(forwarder, "p/c").catch((error: unknown) => error);
    expect((unreachable as NodeError).code).toBe("NO_LEADER");
    // The leader back on the same port: a new stream.
    const second = await startLeader(async () => ({ version: 2, revision: 2 }), first.port);
    closers.push(second.stop);
    let answer: PutResponse | null = null;
    for (let attempt = 0; attempt < 50 && answer === null; attempt++) {
      answer = await forwardPut(forwarder, "p/d").catch(() => null);
      if (answer === null) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(answer?.version).toBe(2);
    expect(second.streams()).toBe(1);
  });

  it("fails what the old leader holds an election timeout after a new leader is known, not at the deadline", async () => {
    // A leader that never answers "p/held": cut off by a partition, it cannot learn it was replaced.
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const leader = await startLeader(async (request) => {
      if (request.path.startsWith("p/held")) await held;
      if (request.path === "p/late") await new Promise((resolve) => setTimeout(resolve, 150));
      return { version: 7, revision: 7 };
    });
    closers.push(async () => {
      release();
      await leader.stop();
    });
    const tls = new TlsFiles(pki.node("n2", ["127.0.0.1"]));
    const graceMs = 400;
    const forwarder = new Forwarder(new Map([["n1", `127.0.0.1:${leader.port}`]]), tls, graceMs);
    closers.push(() => {
      forwarder.close();
      tls.close();
    });
    const pending = [forwardPut(forwarder, "p/held-a"), forwardPut(forwarder, "p/held-b")].map((call) =>
      call.catch((error: unknown) => error),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    // An election under way, or the same leader again: it may still answer, so they keep waiting.
    forwarder.leaderChanged(null);
    forwarder.leaderChanged("n1");
    await new Promise((resolve) => setTimeout(resolve, graceMs + 200));
    expect(forwarder.inFlight()).toBe(2);
    // A call whose answer comes within the grace (one that moved the leadership itself, say) succeeds.
    const late = forwardPut(forwarder, "p/late");
    await new Promise((resolve) => setTimeout(resolve, 20));
    const changedAt = Date.now();
    forwarder.leaderChanged("n2");
    expect((await late).version).toBe(7);
    // What n1 still holds after the grace fails, outcome unknown, naming the new leader.
    for (const failure of await Promise.all(pending)) {
      expect(failure).toBeInstanceOf(NodeError);
      expect(failure).toMatchObject({ code: "FORWARD_FAILED", leaderHint: "n2" });
      expect((failure as Error).message).toMatch(/leader changed to n2 while n1 held the request/);
    }
    expect(Date.now() - changedAt).toBeGreaterThanOrEqual(graceMs - 50);
    expect(Date.now() - changedAt).toBeLessThan(5_000);
    expect(forwarder.inFlight()).toBe(0);
    // The stream itself was kept: n1, leader again, is reached over it; its late answers are dropped.
    forwarder.leaderChanged("n1");
    release();
    expect((await forwardPut(forwarder, "p/after")).version).toBe(7);
    expect(leader.streams()).toBe(1);
  });

  it("fails at once what an old leader holds that has been silent for the grace: paused, it sends no answer", async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const leader = await startLeader(async () => {
      await held;
      return { version: 7, revision: 7 };
    });
    closers.push(async () => {
      release();
      await leader.stop();
    });
    const tls = new TlsFiles(pki.node("n2", ["127.0.0.1"]));
    const graceMs = 2000;
    // When the follower last heard from each member over Raft (the monotonic clock, as
    // PeerContact's): the test moves it.
    const heard = new Map<string, number>([["n1", performance.now()]]);
    const forwarder = new Forwarder(new Map([["n1", `127.0.0.1:${leader.port}`]]), tls, graceMs, (node) =>
      heard.get(node),
    );
    closers.push(() => {
      forwarder.close();
      tls.close();
    });
    const pending = forwardPut(forwarder, "p/held").catch((error: unknown) => error);
    await eventually(() => forwarder.inFlight() === 1, 5_000);
    // Heard from lately (a leadership transfer, say): its answer may be on its way; the grace holds.
    forwarder.leaderChanged("n2");
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(forwarder.inFlight()).toBe(1);
    // Silent for the grace when the next leader is known: no answer is coming, it fails now.
    heard.set("n1", performance.now() - graceMs);
    const changedAt = Date.now();
    forwarder.leaderChanged("n3");
    const failure = await pending;
    expect(Date.now() - changedAt).toBeLessThan(graceMs / 2);
    expect(failure).toMatchObject({ code: "FORWARD_FAILED", leaderHint: "n3" });
    expect((failure as Error).message).toMatch(/leader changed to n3 while n1 held the request/);
    expect(forwarder.inFlight()).toBe(0);
  });

  it("sends a call per request to a leader of an older version (ForwardStream, not ForwardBatches)", async () => {
    const tls = new TlsFiles(pki.node("n1", ["127.0.0.1"]));
    const receiver = new ForwardReceiver({
      methods,
      execute: async (_method, request) => ({ version: (request as PutRequest).path.length, revision: 3 }),
      deadlineMsMax: 30_000,
      answerReserveMs: 100,
    });
    // The last version's peer service: ForwardBatches is answered UNIMPLEMENTED by gRPC.
    const { forwardBatches: _absent, ...oldService } = PeerService;
    let unaryCalls = 0;
    const unary = receiver.unary();
    const server = new Server();
    server.addService(oldService, {
      stream: () => {},
      forward: (call: Parameters<typeof unary>[0], callback: Parameters<typeof unary>[1]) => {
        unaryCalls += 1;
        unary(call, callback);
      },
      forwardStream: receiver.stream(),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", serverCredentials(tls), (error, bound) =>
        error === null ? resolve(bound) : reject(error),
      ),
    );
    closers.push(() => {
      server.forceShutdown();
      tls.close();
    });
    const forwarder = follower(port);
    const answers = await Promise.all([forwardPut(forwarder, "p/x"), forwardPut(forwarder, "p/xyz")]);
    expect(answers.map((answer) => answer.version)).toEqual([3, 5]);
    expect(unaryCalls).toBe(2);
    // And for the next minute, without trying the stream again.
    expect((await forwardPut(forwarder, "p/xy")).version).toBe(4);
    expect(unaryCalls).toBe(3);
  });
});

describe("the executor and what a call must await before acting", () => {
  /**
   * An executor on n2 whose one interceptor hands the chain a promise the test settles: as the
   * audit trail hands over a request entry still being written.
   */
  const executorWith = (forwarder: Forwarder, isLeader: () => boolean, ranHere: string[]) => {
    let release: () => void = () => {};
    const entryWritten = new Promise<void>((resolve) => {
      release = resolve;
    });
    const localPut = method<PutRequest, PutResponse>(SecretsService.put, "leader", async (request) => {
      ranHere.push(request.path);
      return { version: 1, revision: 1 };
    });
    const executor = new Executor({
      leader: () => ({ isLeader: isLeader(), leaderId: isLeader() ? "n2" : "n1" }),
      forwarder,
      interceptors: [(_context, _request, next) => next(entryWritten)],
    });
    const run = (path: string) =>
      executor.execute(localPut, { path, value: new Uint8Array(1) }, contextFor()) as Promise<PutResponse>;
    return { run, release };
  };

  it("forwards a call to the leader at once, and runs one here only once what it awaits settles", async () => {
    const atLeader: string[] = [];
    const leader = await startLeader(async (request) => {
      atLeader.push(request.path);
      return { version: 9, revision: 9 };
    });
    closers.push(leader.stop);
    const ranHere: string[] = [];
    let leadsHere = false;
    const { run, release } = executorWith(follower(leader.port), () => leadsHere, ranHere);

    // n2 follows: the call reaches the leader while n2's entry is still being written.
    const held = new Promise((resolve) => setTimeout(() => resolve("held back"), 2_000));
    expect(await Promise.race([run("p/forwarded"), held])).toEqual({ version: 9, revision: 9 });
    expect(atLeader).toEqual(["p/forwarded"]);

    // n2 leads: the call waits for the entry before the handler runs.
    leadsHere = true;
    const local = run("p/local");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(ranHere).toEqual([]);
    release();
    expect((await local).version).toBe(1);
    expect(ranHere).toEqual(["p/local"]);
  });

  it("spends a token's use only where a call runs, and tells the leader when it was spent here first", async () => {
    const seenAtLeader: boolean[] = [];
    const leader = await startLeader(async (_request, context) => {
      seenAtLeader.push(context.authorization.tokenUseSpent);
      return { version: 7, revision: 7 };
    });
    closers.push(leader.stop);
    let leadsHere = false;
    const spentHere: string[] = [];
    const localPut = method<PutRequest, PutResponse>(SecretsService.put, "leader", async () => {
      // This node lost the lead before proposing: the executor tries again, on the new leader.
      leadsHere = false;
      throw new NotLeaderError("n1");
    });
    const executor = new Executor({
      leader: () => ({ isLeader: leadsHere, leaderId: leadsHere ? "n2" : "n1" }),
      forwarder: follower(leader.port),
      interceptors: [],
      beforeRun: async (context) => {
        spentHere.push(context.method);
        context.authorization.tokenUseSpent = true;
      },
    });
    const run = () =>
      executor.execute(
        localPut,
        { path: "p", value: new Uint8Array(1) },
        contextFor(),
      ) as Promise<PutResponse>;

    // Forwarded at once: nothing spent here, the leader spends.
    expect((await run()).version).toBe(7);
    expect(spentHere).toEqual([]);
    expect(seenAtLeader).toEqual([false]);

    // Begun here as leader (spent here), then forwarded: the leader learns it was spent.
    leadsHere = true;
    expect((await run()).version).toBe(7);
    expect(spentHere).toEqual([SecretsService.put.path]);
    expect(seenAtLeader).toEqual([false, true]);
  });
});
