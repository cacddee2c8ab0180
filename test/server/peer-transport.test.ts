// The Raft transport between node processes, over real sockets and real mutual TLS 1.3: the shared
// Transport contract, the refusals (a client certificate, another cluster's CA, a node speaking
// for another, a listener that is not the node dialled), and three RaftNodes electing a leader
// and committing through it.

import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { type MessageBatch, PeerClient } from "../../proto/gen/strongroom/raft/v1/peer.gen.js";
import type { Entry, Message, NodeId } from "../../raft/core/index.js";
import { MemoryLogStore, RaftNode, type StateMachine } from "../../raft/node/index.js";
import { ForwardReceiver } from "../../server/forward-receiver.js";
import { explainPeerFailure } from "../../server/peer/peer-diagnosis.js";
import {
  everyMemberHas,
  localFeatures,
  memberFeatureGate,
  peerFeatures,
} from "../../server/peer/peer-features.js";
import { type PeerListener, startPeerListener } from "../../server/peer/peer-listener.js";
import { GrpcPeerTransport } from "../../server/peer/peer-transport.js";
import { toWire } from "../../server/peer/raft-message-codec.js";
import { dialTls } from "../../server/tls/credentials.js";
import { type TlsFilePaths, TlsFiles } from "../../server/tls/tls-files.js";
import { transportConformance } from "../conformance/transport-conformance.js";
import { eventually } from "../support/eventually.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("peer");
afterAll(() => pki.cleanup());
// Node's warnings in this process, where every transport dials its peers at 127.0.0.1.
const warnings: { name: string; code?: string }[] = [];
process.on("warning", (warning) => warnings.push(warning as { name: string; code?: string }));

interface PeerNode {
  readonly id: NodeId;
  readonly transport: GrpcPeerTransport;
  readonly listener: PeerListener;
  readonly tls: TlsFiles;
  readonly drops: string[];
  readonly streamErrors: string[];
}

/**
 * Nodes n1..nN, each with its transport and peer listener on 127.0.0.1, all knowing each other.
 * Those in `declining` say they would not take the leadership, as a sealed member does.
 */
async function startPeers(
  count: number,
  paths: (id: NodeId) => TlsFilePaths = (id) => pki.node(id),
  declining: ReadonlySet<NodeId> = new Set(),
) {
  const addresses = new Map<NodeId, string>();
  const nodes: PeerNode[] = [];
  for (let i = 1; i <= count; i++) {
    const id = `n${i}`;
    const tls = new TlsFiles(paths(id));
    const drops: string[] = [];
    const streamErrors: string[] = [];
    const transport = new GrpcPeerTransport({
      nodeId: id,
      peers: addresses,
      tls,
      onDrop: (peer, messages, why) => drops.push(`${peer} ${messages} ${why}`),
      onStreamError: (peer, details) => streamErrors.push(`${peer}: ${details}`),
      declinesLeadership: () => declining.has(id),
    });
    const listener = await startPeerListener({
      address: "127.0.0.1:0",
      tls,
      transport,
      // No method is forwarded in this test: every forwarded request is refused by name.
      forwarding: new ForwardReceiver({
        methods: new Map(),
        execute: async () => null,
        deadlineMsMax: 1000,
        answerReserveMs: 100,
      }),
    });
    addresses.set(id, `127.0.0.1:${listener.port}`);
    nodes.push({ id, transport, listener, tls, drops, streamErrors });
  }
  return {
    nodes,
    addresses,
    node: (id: NodeId) => nodes.find((node) => node.id === id) ?? fail(`no node ${id}`),
    async close() {
      for (const node of nodes) {
        await node.transport.close();
        await node.listener.close();
        node.tls.close();
      }
    },
  };
}

function fail(why: string): never {
  throw new Error(why);
}

/** Opens a raw Peer.Stream with some certificate and writes one batch; resolves to how it ended. */
function rawStream(
  address: string,
  paths: TlsFilePaths,
  messages: readonly Message[],
  /** What the sender says it understands: 0, as a version before MessageBatch.features sends. */
  features = 0,
): Promise<ServiceError | null> {
  const tls = new TlsFiles(paths);
  const dial = dialTls(tls, address);
  const client = new PeerClient(address, dial.credentials, dial.options);
  return new Promise((resolve) => {
    const stream = client.stream((error) => {
      client.close();
      tls.close();
      resolve(error);
    });
    stream.on("error", () => {});
    const batch: MessageBatch = { messages: messages.map(toWire), features, declinesLeadership: false };
    stream.write(batch);
    setTimeout(() => stream.end(), 300);
  });
}

transportConformance("GrpcPeerTransport (mutual TLS 1.3 on loopback)", {
  async create(count) {
    const peers = await startPeers(count);
    return {
      transports: new Map(peers.nodes.map((node) => [node.id, node.transport])),
      close: () => peers.close(),
    };
  },
});

describe("peer transport security", () => {
  it("refuses a client certificate, and a node certificate of another cluster's CA, at the handshake", async () => {
    const peers = await startPeers(2);
    const received: Message[] = [];
    peers.node("n2").transport.listen((message) => received.push(message));
    const address = peers.addresses.get("n2") ?? "";
    const message: Message = { from: "n1", to: "n2", term: 1, type: "timeoutNow", transferNumber: 1 };

    const asClient = await rawStream(address, pki.client("alice"), [message]);
    expect(asClient?.code).toBe(status.UNAVAILABLE);
    const otherCluster = new TestPki("other");
    // A node certificate from another CA, trusting ours (so only the server side can refuse it).
    const foreign = otherCluster.write(
      "foreign-n1",
      (await import("../../server/tls/dev-pki.js")).issueNodeCertificate(otherCluster.clusterCa, {
        nodeId: "n1",
        hosts: ["127.0.0.1"],
      }),
      pki.clusterCa,
    );
    const asForeignNode = await rawStream(address, foreign, [message]);
    expect(asForeignNode?.code).toBe(status.UNAVAILABLE);
    otherCluster.cleanup();
    expect(received).toEqual([]);
    await peers.close();
  });

  it("refuses a node that sends messages in another node's name", async () => {
    const peers = await startPeers(3);
    const received: Message[] = [];
    peers.node("n2").transport.listen((message) => received.push(message));
    const spoofed: Message = { from: "n1", to: "n2", term: 99, type: "timeoutNow", transferNumber: 1 };
    const error = await rawStream(peers.addresses.get("n2") ?? "", pki.node("n3"), [spoofed]);
    expect(error?.code).toBe(status.PERMISSION_DENIED);
    expect(error?.details).toBe(
      "node n3 sent a message from n1 to n2; it may only send its own messages to n2",
    );
    expect(received).toEqual([]);
    await peers.close();
  });

  it("learns from each peer's batches what its state machine understands; an older peer's say nothing", async () => {
    const peers = await startPeers(3);
    const n2 = peers.node("n2").transport;
    n2.listen(() => {});
    const understood = memberFeatureGate(
      peerFeatures.requestIds,
      "n2",
      () => ["n1", "n2", "n3"],
      (member) => n2.featuresOf(member),
    );
    expect(n2.featuresOf("n1")).toBeUndefined();
    peers
      .node("n1")
      .transport.send([{ from: "n1", to: "n2", term: 1, type: "timeoutNow", transferNumber: 1 }]);
    await eventually(() => n2.featuresOf("n1") === localFeatures, 5000);
    // n3 has said nothing yet: request ids stay out of the entries.
    expect(understood()).toBe(false);
    // n3 running a version before the field: its batches carry 0.
    const older: Message = { from: "n3", to: "n2", term: 1, type: "timeoutNow", transferNumber: 1 };
    expect(await rawStream(peers.addresses.get("n2") ?? "", pki.node("n3"), [older])).toBeNull();
    expect(n2.featuresOf("n3")).toBe(0);
    expect(understood()).toBe(false);
    // n3 restarted with this version: the next write may carry request ids.
    peers.node("n3").transport.send([older]);
    await eventually(() => n2.featuresOf("n3") === localFeatures, 5000);
    expect(understood()).toBe(true);
    expect(everyMemberHas(peerFeatures.requestIds, ["n1", "n3", "n4"], "n2", (m) => n2.featuresOf(m))).toBe(
      false,
    );
    await peers.close();
  });

  it("learns from each peer's latest batch whether it would take the leadership; an older peer's say it would", async () => {
    const declining = new Set<NodeId>(["n1"]);
    const peers = await startPeers(3, undefined, declining);
    const n2 = peers.node("n2").transport;
    n2.listen(() => {});
    const message = (from: NodeId): Message => ({
      from,
      to: "n2",
      term: 1,
      type: "heartbeatResponse",
      readRound: 0,
      transfersAbandoned: 0,
    });
    // Before a peer has sent anything, it is taken to accept (as every leader assumed before).
    expect(n2.declinesLeadership("n1")).toBe(false);
    peers.node("n1").transport.send([message("n1")]);
    await eventually(() => n2.declinesLeadership("n1"), 5000);
    // Unsealed: its next batch says so.
    declining.delete("n1");
    peers.node("n1").transport.send([message("n1")]);
    await eventually(() => !n2.declinesLeadership("n1"), 5000);
    // A version before the field sends false: it is offered the leadership as before.
    declining.add("n3");
    peers.node("n3").transport.send([message("n3")]);
    await eventually(() => n2.declinesLeadership("n3"), 5000);
    expect(await rawStream(peers.addresses.get("n2") ?? "", pki.node("n3"), [message("n3")])).toBeNull();
    expect(n2.declinesLeadership("n3")).toBe(false);
    await peers.close();
  });

  it("does not send to a listener whose certificate names another node", async () => {
    const peers = await startPeers(3);
    const received: Message[] = [];
    peers.node("n3").transport.listen((message) => received.push(message));
    // n1 believes n2 lives where n3 listens.
    peers.addresses.set("n2", peers.addresses.get("n3") ?? "");
    peers
      .node("n1")
      .transport.send([{ from: "n1", to: "n2", term: 1, type: "timeoutNow", transferNumber: 1 }]);
    await eventually(() => peers.node("n1").streamErrors.length > 0, 5000);
    expect(peers.node("n1").streamErrors[0]).toMatch(/^n2: .*names node n3, not n2/);
    expect(received).toEqual([]);
    await peers.close();
  });

  it("does not send to a peer whose certificate does not name the address dialled, though the server name sent is not the address", async () => {
    // n2's certificate names it, but for 127.0.0.9 only.
    const peers = await startPeers(2, (id) => (id === "n2" ? pki.node("n2", ["127.0.0.9"]) : pki.node(id)));
    const received: Message[] = [];
    peers.node("n2").transport.listen((message) => received.push(message));
    peers
      .node("n1")
      .transport.send([{ from: "n1", to: "n2", term: 1, type: "timeoutNow", transferNumber: 1 }]);
    await eventually(() => peers.node("n1").streamErrors.length > 0, 5000);
    expect(peers.node("n1").streamErrors[0]).toMatch(
      /^n2: .*IP: 127\.0\.0\.1 is not in the cert's list: 127\.0\.0\.9/,
    );
    expect(received).toEqual([]);
    await peers.close();
  });
});

describe("Raft over the gRPC transport", () => {
  it("three nodes elect a leader and commit what it proposes on every node", async () => {
    const peers = await startPeers(3);
    const applied = new Map<NodeId, string[]>();
    const nodes = await Promise.all(
      peers.nodes.map((peer) => {
        const values: string[] = [];
        applied.set(peer.id, values);
        const machine: StateMachine<number> = {
          apply(entry: Entry) {
            if (entry.type === "normal" && entry.data.length > 0)
              values.push(new TextDecoder().decode(entry.data));
            return values.length;
          },
          snapshot: () => new Uint8Array(0),
          restore() {},
          appliedIndex: () => 0,
        };
        return RaftNode.start<number>({
          id: peer.id,
          logStore: new MemoryLogStore(),
          transport: peer.transport,
          stateMachine: machine,
          tickMs: 10,
          bootstrap: { voters: ["n1", "n2", "n3"], learners: [] },
        });
      }),
    );
    await eventually(() => nodes.some((node) => node.status().role === "leader"), 10_000);
    const leader = nodes.find((node) => node.status().role === "leader") ?? fail("no leader");
    for (let i = 0; i < 20; i++) await leader.propose(new TextEncoder().encode(`value-${i}`));
    const expected = Array.from({ length: 20 }, (_, i) => `value-${i}`);
    await eventually(() => [...applied.values()].every((values) => values.length === 20), 10_000);
    for (const values of applied.values()) expect(values).toEqual(expected);
    await Promise.all(nodes.map((node) => node.stop()));
    await peers.close();
  });
});

describe("peer connection failures, explained", () => {
  it("names a certificate without a SAN for the address used, a foreign CA, and a peer that is down", async () => {
    const peers = await startPeers(2, (id) => (id === "n2" ? pki.node("n2", ["localhost"]) : pki.node(id)));
    const n1 = peers.node("n1");
    n1.transport.send([{ from: "n1", to: "n2", term: 1, type: "timeoutNow", transferNumber: 1 }]);
    await eventually(() => n1.streamErrors.length > 0, 5000);
    const explain = (line: string) =>
      explainPeerFailure("n2", peers.addresses.get("n2") ?? "", line.slice("n2: ".length));
    expect(explain(n1.streamErrors[0] ?? "")).toMatch(
      /^n2 at 127\.0\.0\.1:\d+: its certificate has no SAN for the address used/,
    );
    await peers.close();

    const other = new TestPki("stranger");
    const strangers = await startPeers(2, (id) => (id === "n2" ? other.node("n2") : pki.node(id)));
    const s1 = strangers.node("n1");
    s1.transport.send([{ from: "n1", to: "n2", term: 1, type: "timeoutNow", transferNumber: 1 }]);
    await eventually(() => s1.streamErrors.length > 0, 5000);
    expect(explainPeerFailure("n2", "x", (s1.streamErrors[0] ?? "").slice(4))).toMatch(
      /not signed by a CA this node trusts/,
    );
    await strangers.close();
    other.cleanup();

    expect(
      explainPeerFailure(
        "n3",
        "127.0.0.9:1",
        "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.9:1",
      ),
    ).toBe("n3 at 127.0.0.9:1 refuses connections: is it running, and is the address right?");
  });
});

it("dials its peers before it has anything to send them, so that a first vote request waits for no connection", async () => {
  // Followers send each other nothing until an election: their first message is a pre-vote.
  const peers = await startPeers(3);
  try {
    for (const node of peers.nodes) {
      node.transport.listen(() => {});
      node.transport.startDialing();
    }
    await eventually(
      () =>
        peers.nodes.every((node) =>
          peers.nodes.every((peer) => peer === node || node.transport.isConnected(peer.id)),
        ),
      5000,
    );
    // Nothing was sent; and no node dials itself (the addresses given include its own).
    expect(peers.nodes.map((node) => node.transport.isConnected(node.id))).toEqual([false, false, false]);
    expect(peers.nodes.flatMap((node) => node.streamErrors)).toEqual([]);
  } finally {
    await peers.close();
  }
});

it("dials ahead only the peers it is told are members (a removed one is not dialled again)", async () => {
  const peers = await startPeers(3);
  const tls = new TlsFiles(pki.node("n1"));
  const transport = new GrpcPeerTransport({
    nodeId: "n1",
    peers: peers.addresses,
    tls,
    dialAhead: () => ["n2"],
  });
  try {
    transport.listen(() => {});
    transport.startDialing();
    await eventually(() => transport.isConnected("n2"), 5000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(transport.isConnected("n3")).toBe(false);
  } finally {
    await transport.close();
    tls.close();
    await peers.close();
  }
});

it("dials a peer at its new address once the member is recorded with another", async () => {
  const peers = await startPeers(2);
  const moved = await startPeers(2);
  try {
    let receivedAtOld = 0;
    let receivedAtNew = 0;
    peers.node("n1").transport.listen(() => {});
    peers.node("n1").transport.startDialing();
    peers.node("n2").transport.listen(() => {
      receivedAtOld += 1;
    });
    moved.node("n2").transport.listen(() => {
      receivedAtNew += 1;
    });
    const sender = peers.node("n1").transport;
    const heartbeat = () =>
      sender.send([
        { from: "n1", to: "n2", term: 1, type: "heartbeat", commit: 0, readRound: 0, transfersAbandoned: 0 },
      ]);
    heartbeat();
    await eventually(() => receivedAtOld === 1, 5000);
    // n2 is recorded with the address of another listener (the same certificate's node).
    peers.addresses.set("n2", moved.addresses.get("n2") ?? fail("no address"));
    await eventually(() => {
      heartbeat();
      return receivedAtNew > 0;
    }, 5000);
  } finally {
    await moved.close();
    await peers.close();
  }
});

/**
 * A TCP relay in front of a listener that can stop reading what it is sent: a peer paused
 * (SIGSTOP) or a link that has stopped, as the sender sees it.
 */
async function stallableRelay(target: string) {
  const [host, port] = target.split(":");
  const sockets = new Set<Socket>();
  let stalled = false;
  const server = createServer((downstream) => {
    const upstream = connect(Number(port), host);
    for (const socket of [downstream, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.once("close", () => sockets.delete(socket));
    }
    downstream.on("data", (chunk) => {
      upstream.write(chunk);
      if (stalled) downstream.pause();
    });
    upstream.pipe(downstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    stall() {
      stalled = true;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

it("waits for what it sent one peer to leave, not for another peer's backed-up stream", async () => {
  // A leader stopping on a full disk waits for its farewell to reach the voter it names; a
  // paused follower's stream, full, must not hold the process for the whole wait.
  const peers = await startPeers(3);
  const relay = await stallableRelay(peers.addresses.get("n3") ?? fail("no address for n3"));
  peers.addresses.set("n3", relay.address);
  try {
    let receivedAtN2 = 0;
    let receivedAtN3 = 0;
    peers.node("n2").transport.listen(() => {
      receivedAtN2 += 1;
    });
    peers.node("n3").transport.listen(() => {
      receivedAtN3 += 1;
    });
    const sender = peers.node("n1").transport;
    const heartbeat = (to: NodeId) =>
      sender.send([
        { from: "n1", to, term: 1, type: "heartbeat", commit: 0, readRound: 0, transfersAbandoned: 0 },
      ]);
    heartbeat("n3");
    await eventually(() => receivedAtN3 === 1, 5000);
    relay.stall();
    // 48 MiB for n3: more than the relay and the kernel's socket buffers take once it stops reading.
    const entry: Entry = { index: 1, term: 1, type: "normal", data: new Uint8Array(1024 * 1024) };
    for (let index = 1; index <= 48; index++) {
      sender.send([
        {
          from: "n1",
          to: "n3",
          term: 1,
          type: "append",
          prevIndex: index - 1,
          prevTerm: 1,
          entries: [{ ...entry, index }],
          commit: 0,
          commitOnly: false,
        },
      ]);
    }
    const n3Flushed = sender.flushed("n3").then(() => "flushed");
    // What the test rests on: n3's stream is backed up and stays so.
    expect(await Promise.race([n3Flushed, delay(1000, "still waiting")])).toBe("still waiting");
    heartbeat("n2");
    const started = performance.now();
    await sender.flushed("n2");
    const tookMs = performance.now() - started;
    expect(tookMs).toBeLessThan(500);
    await eventually(() => receivedAtN2 === 1, 5000);
    // A peer the sender never wrote to has nothing to wait for.
    expect(await Promise.race([sender.flushed("n4").then(() => "flushed"), delay(500, "waiting")])).toBe(
      "flushed",
    );
  } finally {
    await relay.close();
    await peers.close();
  }
}, 30_000);

describe("peer stream memory", () => {
  // grpc-js keeps what a call has sent for a retry until the server's first answer; a Raft
  // stream's server answered only as the stream ended. A follower's small acknowledgements each
  // pinned an 8 KiB slab of Node's buffer pool: tens of MB held on a follower under load.
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  // V8 frees array buffers' memory after a collection, on another thread: counted once it has.
  const collectGarbage = async () => {
    for (let round = 0; round < 2; round++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  /**
   * The array-buffer memory still held, after a collection, once 2,000 small acknowledgements sent
   * by `acknowledge` have all been `received`.
   */
  const heldAfterSending = async (acknowledge: (round: number) => void, received: () => number) => {
    acknowledge(0);
    await eventually(() => received() === 1, 5000);
    await collectGarbage();
    const before = process.memoryUsage().arrayBuffers;
    const batches = 2000;
    for (let round = 1; round <= batches; round++) {
      acknowledge(round);
      // What a busy node allocates between two batches: each batch lands in another pool slab.
      Buffer.allocUnsafe(4000);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await eventually(() => received() === batches + 1, 10_000);
    await collectGarbage();
    return process.memoryUsage().arrayBuffers - before;
  };

  it("holds no batch it has written: thousands of small ones, among other allocations, leave no memory behind", async () => {
    const peers = await startPeers(2);
    try {
      let received = 0;
      peers.node("n1").transport.listen(() => {});
      peers.node("n2").transport.listen(() => {
        received += 1;
      });
      const sender = peers.node("n1").transport;
      const heldBytes = await heldAfterSending(
        (round) =>
          sender.send([
            {
              from: "n1",
              to: "n2",
              term: 1,
              type: "heartbeatResponse",
              readRound: round,
              transfersAbandoned: 0,
            },
          ]),
        () => received,
      );
      expect(heldBytes).toBeLessThan(2 * 1024 * 1024);
    } finally {
      await peers.close();
    }
  });

  it("answers a stream's headers as it accepts it: a sender that keeps grpc-js's retry budget holds no batch either", async () => {
    // A member not yet upgraded during a rolling upgrade dials with grpc-js's default channel
    // options, retry budget included; its call commits at the receiver's first answer.
    const peers = await startPeers(2);
    const tls = new TlsFiles(pki.node("n1"));
    const address = peers.addresses.get("n2") ?? fail("no address for n2");
    const dial = dialTls(tls, address);
    const client = new PeerClient(address, dial.credentials, dial.options);
    try {
      let received = 0;
      peers.node("n2").transport.listen(() => {
        received += 1;
      });
      const stream = client.stream(() => {});
      stream.on("error", () => {});
      let headers = false;
      stream.on("metadata", () => {
        headers = true;
      });
      const heldBytes = await heldAfterSending(
        (round) =>
          stream.write({
            messages: [
              toWire({
                from: "n1",
                to: "n2",
                term: 1,
                type: "heartbeatResponse",
                readRound: round,
                transfersAbandoned: 0,
              }),
            ],
            features: 0,
            declinesLeadership: false,
          } satisfies MessageBatch),
        () => received,
      );
      expect(heldBytes).toBeLessThan(2 * 1024 * 1024);
      expect(headers).toBe(true);
      stream.end();
    } finally {
      client.close();
      tls.close();
      await peers.close();
    }
  });
});

it("dials peers by IP address without Node's warning about an IP as the TLS server name (DEP0123)", () => {
  // Every test above dialled 127.0.0.1.
  expect(warnings.filter((warning) => warning.code === "DEP0123")).toEqual([]);
});
