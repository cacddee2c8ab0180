import { describe, expect, it } from "vitest";
import { EntryType, RaftMessage } from "../../proto/gen/strongroom/raft/v1/peer.gen.js";
import type { Message } from "../../raft/core/index.js";
import { fromWire, PeerMessageError, toWire } from "../../server/peer/raft-message-codec.js";

const base = { from: "n1", to: "n2", term: 7 } as const;

/** One message of every type, each field set to a value its wire form does not default to. */
const everyType: { readonly [type in Message["type"]]: Message & { readonly type: type } } = {
  preVote: { ...base, type: "preVote", lastIndex: 41, lastTerm: 6 },
  vote: { ...base, type: "vote", lastIndex: 42, lastTerm: 6, transfer: true, transferNumber: 3 },
  preVoteResponse: { ...base, type: "preVoteResponse", granted: true },
  voteResponse: { ...base, type: "voteResponse", granted: true },
  append: {
    ...base,
    type: "append",
    prevIndex: 40,
    prevTerm: 5,
    entries: [
      { index: 41, term: 6, type: "normal", data: Uint8Array.of(1, 2, 3) },
      { index: 42, term: 7, type: "config", data: Uint8Array.of(4) },
    ],
    commit: 39,
    commitOnly: true,
  },
  appendResponse: { ...base, type: "appendResponse", success: true, index: 42, hintIndex: 30, hintTerm: 4 },
  heartbeat: { ...base, type: "heartbeat", commit: 42, readRound: 9, transfersAbandoned: 2 },
  heartbeatResponse: { ...base, type: "heartbeatResponse", readRound: 9, transfersAbandoned: 2 },
  snapshotChunk: {
    ...base,
    type: "snapshotChunk",
    meta: {
      index: 40,
      term: 5,
      membership: { voters: ["n1", "n2", "n3"], learners: ["n4"], removed: ["n0"] },
    },
    totalBytes: 4096,
    offset: 1024,
    chunk: Uint8Array.of(9, 8, 7),
  },
  snapshotResponse: {
    ...base,
    type: "snapshotResponse",
    snapshotIndex: 40,
    snapshotTerm: 5,
    nextOffset: 2048,
    installed: true,
  },
  timeoutNow: { ...base, type: "timeoutNow", transferNumber: 4 },
  readIndex: { ...base, type: "readIndex", context: "read-17" },
  readIndexResponse: { ...base, type: "readIndexResponse", context: "read-17", index: 42 },
  removed: { ...base, type: "removed" },
};

/** A message as a peer receives it: encoded to the wire's bytes and decoded again. */
function throughTheWire(message: Message): Message {
  return fromWire(RaftMessage.decode(RaftMessage.encode(toWire(message)).finish()));
}

/** Byte fields as plain Uint8Arrays (the decoder may hand back Buffers), for comparison. */
function plainBytes(value: unknown): unknown {
  if (value instanceof Uint8Array) return Uint8Array.from(value);
  if (Array.isArray(value)) return value.map(plainBytes);
  if (typeof value === "object" && value !== null)
    return Object.fromEntries(Object.entries(value).map(([key, field]) => [key, plainBytes(field)]));
  return value;
}

describe("Raft messages on the wire", () => {
  it.each(Object.values(everyType))(
    "a $type message arrives with every field it was sent with",
    (message) => {
      const received = throughTheWire(message);
      expect(plainBytes(received)).toStrictEqual(plainBytes(message));
    },
  );

  it("a snapshot's membership without removed members arrives without the field", () => {
    const chunk = {
      ...everyType.snapshotChunk,
      meta: { index: 1, term: 1, membership: { voters: ["n1"], learners: [] } },
    };
    const received = throughTheWire(chunk);
    expect(received.type === "snapshotChunk" && received.meta.membership).toStrictEqual({
      voters: ["n1"],
      learners: [],
    });
  });

  it("refuses a message without a body, a snapshot chunk without its metadata, and an entry of an unknown type", () => {
    expect(() => fromWire({ ...base, body: undefined })).toThrow(
      new PeerMessageError("a Raft message from n1 has no body"),
    );
    expect(() =>
      fromWire({
        ...base,
        body: {
          $case: "snapshotChunk",
          value: { meta: undefined, totalBytes: 1, offset: 0, chunk: new Uint8Array(1) },
        },
      }),
    ).toThrow(new PeerMessageError("a snapshot chunk from n1 has no snapshot metadata"));
    expect(() =>
      fromWire({
        ...base,
        body: {
          $case: "append",
          value: {
            prevIndex: 0,
            prevTerm: 0,
            entries: [{ index: 1, term: 1, type: EntryType.ENTRY_TYPE_UNSPECIFIED, data: new Uint8Array(0) }],
            commit: 0,
            commitOnly: false,
          },
        },
      }),
    ).toThrow(/entry 1 has an unknown type/);
  });
});
