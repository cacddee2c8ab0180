// The contract every Raft Transport keeps, run against the in-process network and the mutual-TLS
// gRPC transport: every message type arrives intact at the node it is addressed to, in order
// when nothing fails; a burst arrives whole when the receiver keeps up; a message to an unknown
// node is dropped without an exception; a closed transport sends and delivers nothing.

import { describe, expect, it } from "vitest";
import type { Message, NodeId } from "../../raft/core/index.js";
import type { Transport } from "../../raft/node/index.js";
import { eventually } from "../support/eventually.js";

export interface TransportCluster {
  readonly transports: ReadonlyMap<NodeId, Transport>;
  close(): Promise<void>;
}

export interface TransportFactory {
  /** Transports for nodes n1..nN that can reach each other. */
  create(nodes: number): Promise<TransportCluster>;
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const membership = { voters: ["n1", "n2", "n3"], learners: ["n4"] };

/** One message of every type, from n1 to n2. */
export function everyMessageType(): Message[] {
  const base = { from: "n1", to: "n2", term: 7 } as const;
  return [
    { ...base, type: "preVote", lastIndex: 10, lastTerm: 6 },
    { ...base, type: "vote", lastIndex: 10, lastTerm: 6, transfer: true, transferNumber: 2 },
    { ...base, type: "preVoteResponse", granted: true },
    { ...base, type: "voteResponse", granted: false },
    {
      ...base,
      type: "append",
      prevIndex: 10,
      prevTerm: 6,
      entries: [
        { index: 11, term: 7, type: "normal", data: bytes("ciphertext") },
        { index: 12, term: 7, type: "config", data: bytes('{"kind":"addLearner","node":"n4"}') },
        { index: 13, term: 7, type: "normal", data: new Uint8Array(0) },
      ],
      commit: 9,
      commitOnly: false,
    },
    { ...base, type: "append", prevIndex: 13, prevTerm: 7, entries: [], commit: 13, commitOnly: true },
    { ...base, type: "appendResponse", success: false, index: 10, hintIndex: 8, hintTerm: 5 },
    { ...base, type: "heartbeat", commit: 12, readRound: 3, transfersAbandoned: 2 },
    { ...base, type: "heartbeatResponse", readRound: 3, transfersAbandoned: 1 },
    {
      ...base,
      type: "snapshotChunk",
      meta: { index: 100, term: 6, membership },
      totalBytes: 5000,
      offset: 4096,
      chunk: new Uint8Array(904).fill(7),
    },
    {
      ...base,
      type: "snapshotResponse",
      snapshotIndex: 100,
      snapshotTerm: 6,
      nextOffset: 5000,
      installed: true,
    },
    { ...base, type: "timeoutNow", transferNumber: 3 },
    { ...base, type: "readIndex", context: "read-42" },
    { ...base, type: "readIndexResponse", context: "read-42", index: 12 },
    { ...base, type: "removed" },
    // A snapshot's membership with the nodes removed so far.
    {
      ...base,
      type: "snapshotChunk",
      meta: { index: 101, term: 6, membership: { ...membership, removed: ["n5", "n7"] } },
      totalBytes: 10,
      offset: 0,
      chunk: new Uint8Array(10).fill(1),
    },
  ];
}

/** A message with its byte arrays as plain arrays, so a Buffer and a Uint8Array of the same bytes compare equal. */
function comparable(value: unknown): unknown {
  if (value instanceof Uint8Array) return [...value];
  if (Array.isArray(value)) return value.map(comparable);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, field]) => [key, comparable(field)]));
  }
  return value;
}

export function transportConformance(name: string, factory: TransportFactory): void {
  describe(`Transport conformance: ${name}`, () => {
    it("delivers every message type intact to the addressed node, in order", async () => {
      const cluster = await factory.create(3);
      const received = new Map<NodeId, Message[]>([
        ["n1", []],
        ["n2", []],
        ["n3", []],
      ]);
      for (const [id, transport] of cluster.transports)
        transport.listen((message) => received.get(id)?.push(message));
      const sent = everyMessageType();
      cluster.transports.get("n1")?.send(sent);
      await eventually(() => (received.get("n2")?.length ?? 0) >= sent.length, 5000);
      expect(received.get("n2")?.map(comparable)).toEqual(sent.map(comparable));
      expect(received.get("n3")).toEqual([]);
      expect(received.get("n1")).toEqual([]);
      await cluster.close();
    });

    it("delivers a burst from several senders whole when the receivers keep up", async () => {
      const cluster = await factory.create(3);
      const counts = new Map<string, number>();
      for (const [id, transport] of cluster.transports) {
        transport.listen((message) =>
          counts.set(`${message.from}->${id}`, (counts.get(`${message.from}->${id}`) ?? 0) + 1),
        );
      }
      const perPair = 500;
      for (let round = 0; round < perPair; round++) {
        for (const [from, transport] of cluster.transports) {
          const to = from === "n1" ? "n2" : "n1";
          transport.send([
            {
              from,
              to,
              term: 1,
              type: "append",
              prevIndex: round,
              prevTerm: 1,
              entries: [{ index: round + 1, term: 1, type: "normal", data: new Uint8Array(1024) }],
              commit: round,
              commitOnly: false,
            },
          ]);
        }
      }
      const total = () => [...counts.values()].reduce((sum, count) => sum + count, 0);
      await eventually(() => total() >= 3 * perPair, 10_000);
      expect(Object.fromEntries(counts)).toEqual({ "n1->n2": perPair, "n2->n1": perPair, "n3->n1": perPair });
      await cluster.close();
    });

    it("drops a message to an unknown node without throwing, and still delivers the rest", async () => {
      const cluster = await factory.create(2);
      const received: Message[] = [];
      cluster.transports.get("n2")?.listen((message) => received.push(message));
      expect(() =>
        cluster.transports.get("n1")?.send([
          { from: "n1", to: "n9", term: 1, type: "timeoutNow", transferNumber: 1 },
          { from: "n1", to: "n2", term: 1, type: "timeoutNow", transferNumber: 1 },
        ]),
      ).not.toThrow();
      await eventually(() => received.length === 1, 5000);
      expect(received[0]).toMatchObject({ to: "n2", type: "timeoutNow", transferNumber: 1 });
      await cluster.close();
    });

    it("a closed transport sends nothing and throws nothing", async () => {
      const cluster = await factory.create(2);
      const received: Message[] = [];
      cluster.transports.get("n2")?.listen((message) => received.push(message));
      await cluster.transports.get("n1")?.close();
      expect(() =>
        cluster.transports
          .get("n1")
          ?.send([{ from: "n1", to: "n2", term: 1, type: "timeoutNow", transferNumber: 1 }]),
      ).not.toThrow();
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(received).toEqual([]);
      await cluster.close();
    });
  });
}
