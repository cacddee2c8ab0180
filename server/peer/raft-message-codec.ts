// Raft messages to and from their wire form (strongroom.raft.v1.RaftMessage). The core's message
// types and the proto's oneof cases share their names, so the mapping is one case per type. What
// arrives from a peer is checked here before the core sees it: a body that is missing or of the
// wrong shape is refused (PeerMessageError), never passed on half-filled.

import {
  EntryType,
  type RaftMessage,
  type Entry as WireEntry,
  type Membership as WireMembership,
  type SnapshotMeta as WireSnapshotMeta,
} from "../../proto/gen/strongroom/raft/v1/peer.gen.js";
import type { Entry, Membership, Message, SnapshotMeta } from "../../raft/core/index.js";

export class PeerMessageError extends Error {
  override readonly name = "PeerMessageError";
}

export function toWire(message: Message): RaftMessage {
  const { from, to, term } = message;
  const wire = (body: RaftMessage["body"]): RaftMessage => ({ from, to, term, body });
  switch (message.type) {
    case "preVote":
      return wire({ $case: "preVote", value: { lastIndex: message.lastIndex, lastTerm: message.lastTerm } });
    case "vote":
      return wire({
        $case: "vote",
        value: {
          lastIndex: message.lastIndex,
          lastTerm: message.lastTerm,
          transfer: message.transfer,
          transferNumber: message.transferNumber,
        },
      });
    case "preVoteResponse":
    case "voteResponse":
      return wire({ $case: message.type, value: { granted: message.granted } });
    case "append":
      return wire({
        $case: "append",
        value: {
          prevIndex: message.prevIndex,
          prevTerm: message.prevTerm,
          entries: message.entries.map(entryToWire),
          commit: message.commit,
          commitOnly: message.commitOnly,
        },
      });
    case "appendResponse":
      return wire({
        $case: "appendResponse",
        value: {
          success: message.success,
          index: message.index,
          hintIndex: message.hintIndex,
          hintTerm: message.hintTerm,
        },
      });
    case "heartbeat":
      return wire({
        $case: "heartbeat",
        value: {
          commit: message.commit,
          readRound: message.readRound,
          transfersAbandoned: message.transfersAbandoned,
        },
      });
    case "heartbeatResponse":
      return wire({
        $case: "heartbeatResponse",
        value: { readRound: message.readRound, transfersAbandoned: message.transfersAbandoned },
      });
    case "snapshotChunk":
      return wire({
        $case: "snapshotChunk",
        value: {
          meta: metaToWire(message.meta),
          totalBytes: message.totalBytes,
          offset: message.offset,
          chunk: message.chunk,
        },
      });
    case "snapshotResponse":
      return wire({
        $case: "snapshotResponse",
        value: {
          snapshotIndex: message.snapshotIndex,
          snapshotTerm: message.snapshotTerm,
          nextOffset: message.nextOffset,
          installed: message.installed,
        },
      });
    case "timeoutNow":
      return wire({ $case: "timeoutNow", value: { transferNumber: message.transferNumber } });
    case "readIndex":
      return wire({ $case: "readIndex", value: { context: message.context } });
    case "readIndexResponse":
      return wire({ $case: "readIndexResponse", value: { context: message.context, index: message.index } });
    case "removed":
      return wire({ $case: "removed", value: {} });
  }
}

/**
 * Each message is built field by field rather than spread from the decoded body: on Node 20 (V8
 * 11.3) an object literal that spreads one object and then adds properties (`{ ...base, type,
 * ...value }`) took 3-5 µs a message in a scratch loop, against 0.02-0.4 µs built like this; Node
 * 22 and 24 are fast either way (docs/performance.md, fifty-seventh session).
 */
export function fromWire(wire: RaftMessage): Message {
  const { from, to, term, body } = wire;
  if (body === undefined) throw new PeerMessageError(`a Raft message from ${from} has no body`);
  switch (body.$case) {
    case "preVote":
      return {
        from,
        to,
        term,
        type: "preVote",
        lastIndex: body.value.lastIndex,
        lastTerm: body.value.lastTerm,
      };
    case "vote": {
      const vote = body.value;
      return {
        from,
        to,
        term,
        type: "vote",
        lastIndex: vote.lastIndex,
        lastTerm: vote.lastTerm,
        transfer: vote.transfer,
        transferNumber: vote.transferNumber,
      };
    }
    case "preVoteResponse":
    case "voteResponse":
      return { from, to, term, type: body.$case, granted: body.value.granted };
    case "append": {
      const append = body.value;
      return {
        from,
        to,
        term,
        type: "append",
        prevIndex: append.prevIndex,
        prevTerm: append.prevTerm,
        entries: append.entries.map(entryFromWire),
        commit: append.commit,
        commitOnly: append.commitOnly,
      };
    }
    case "appendResponse": {
      const answer = body.value;
      return {
        from,
        to,
        term,
        type: "appendResponse",
        success: answer.success,
        index: answer.index,
        hintIndex: answer.hintIndex,
        hintTerm: answer.hintTerm,
      };
    }
    case "heartbeat": {
      const heartbeat = body.value;
      return {
        from,
        to,
        term,
        type: "heartbeat",
        commit: heartbeat.commit,
        readRound: heartbeat.readRound,
        transfersAbandoned: heartbeat.transfersAbandoned,
      };
    }
    case "heartbeatResponse":
      return {
        from,
        to,
        term,
        type: "heartbeatResponse",
        readRound: body.value.readRound,
        transfersAbandoned: body.value.transfersAbandoned,
      };
    case "snapshotChunk":
      return {
        from,
        to,
        term,
        type: "snapshotChunk",
        meta: metaFromWire(body.value.meta, from),
        totalBytes: body.value.totalBytes,
        offset: body.value.offset,
        chunk: body.value.chunk,
      };
    case "snapshotResponse": {
      const answer = body.value;
      return {
        from,
        to,
        term,
        type: "snapshotResponse",
        snapshotIndex: answer.snapshotIndex,
        snapshotTerm: answer.snapshotTerm,
        nextOffset: answer.nextOffset,
        installed: answer.installed,
      };
    }
    case "timeoutNow":
      return { from, to, term, type: "timeoutNow", transferNumber: body.value.transferNumber };
    case "readIndex":
      return { from, to, term, type: "readIndex", context: body.value.context };
    case "readIndexResponse":
      return {
        from,
        to,
        term,
        type: "readIndexResponse",
        context: body.value.context,
        index: body.value.index,
      };
    case "removed":
      return { from, to, term, type: "removed" };
  }
}

function entryToWire(entry: Entry): WireEntry {
  return {
    index: entry.index,
    term: entry.term,
    type: entry.type === "config" ? EntryType.ENTRY_TYPE_CONFIG : EntryType.ENTRY_TYPE_NORMAL,
    data: entry.data,
  };
}

function entryFromWire(entry: WireEntry): Entry {
  if (entry.type !== EntryType.ENTRY_TYPE_NORMAL && entry.type !== EntryType.ENTRY_TYPE_CONFIG) {
    throw new PeerMessageError(`entry ${entry.index} has an unknown type ${entry.type}`);
  }
  return {
    index: entry.index,
    term: entry.term,
    type: entry.type === EntryType.ENTRY_TYPE_CONFIG ? "config" : "normal",
    data: entry.data,
  };
}

function metaToWire(meta: SnapshotMeta): WireSnapshotMeta {
  return { index: meta.index, term: meta.term, membership: membershipToWire(meta.membership) };
}

function metaFromWire(meta: WireSnapshotMeta | undefined, from: string): SnapshotMeta {
  if (meta === undefined || meta.membership === undefined) {
    throw new PeerMessageError(`a snapshot chunk from ${from} has no snapshot metadata`);
  }
  return { index: meta.index, term: meta.term, membership: membershipFromWire(meta.membership) };
}

function membershipToWire(membership: Membership): WireMembership {
  return {
    voters: [...membership.voters],
    learners: [...membership.learners],
    removed: [...(membership.removed ?? [])],
  };
}

function membershipFromWire(membership: WireMembership): Membership {
  return {
    voters: membership.voters,
    learners: membership.learners,
    ...(membership.removed.length === 0 ? {} : { removed: membership.removed }),
  };
}
