// The Raft transport between node processes: one gRPC client stream per peer (Peer.Stream) over
// mutual TLS with the cluster CA. Messages from one Ready go out as one batch. send() never blocks
// and never throws: each peer has a bounded queue, HTTP/2 flow control pushes back when the peer
// falls behind, and what does not fit is dropped and counted (Raft retries by itself). A peer that
// is down costs a failed stream and a reconnect with backoff, nothing else.
//
// Both directions check identity: the dialer accepts only a server certificate naming the node it
// dials, and the receiver accepts a stream only from a certificate naming a node, and only
// messages that say they come from that node and are addressed to this one.

import {
  type ClientWritableStream,
  connectivityState,
  Metadata,
  type ServerReadableStream,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import {
  type MessageBatch,
  PeerClient,
  type RaftMessage,
  type StreamClosed,
} from "../../proto/gen/strongroom/raft/v1/peer.gen.js";
import type { Message, NodeId } from "../../raft/core/index.js";
import type { Transport } from "../../raft/node/index.js";
import { dialTls } from "../tls/credentials.js";
import { nodeIdOf } from "../tls/identity.js";
import type { TlsFiles } from "../tls/tls-files.js";
import { localFeatures } from "./peer-features.js";
import { fromWire, type PeerMessageError, toWire } from "./raft-message-codec.js";

export interface PeerTransportLimits {
  /** Bytes queued for one peer before new messages to it are dropped. */
  readonly queueBytesMax: number;
  /** Bytes in one batch on the wire (a snapshot chunk larger than this goes alone). */
  readonly batchBytesMax: number;
}

export const defaultPeerTransportLimits: PeerTransportLimits = {
  queueBytesMax: 64 * 1024 * 1024,
  batchBytesMax: 4 * 1024 * 1024,
};

/** The largest message a peer channel carries: a batch (or a snapshot chunk) must fit, with 4 MiB of headroom. */
export function peerMessageBytesMax(limits: PeerTransportLimits): number {
  return limits.batchBytesMax + 4 * 1024 * 1024;
}

/** gRPC channel options for peers, explicit rather than grpc-js's defaults (see each comment). */
export function peerChannelOptions(limits: PeerTransportLimits): Record<string, number> {
  return {
    "grpc.max_send_message_length": peerMessageBytesMax(limits),
    "grpc.max_receive_message_length": peerMessageBytesMax(limits),
    // Notice a dead peer within seconds, not at the next TCP timeout.
    "grpc.keepalive_time_ms": 5_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    // A restarted peer is dialled again quickly: failover time depends on it. The chaos harness
    // measured a 1.4 s election after two nodes came back in turn: a 2 s ceiling had let the
    // backoff grow while a peer was down, and the survivor could not reach the restarted one (whose
    // vote it needed) until its next attempt. A dead peer dialled four times a second costs nothing.
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 250,
  };
}

/**
 * A channel to a peer: the peer options, without channelz - nothing reads it, and its bookkeeping
 * is paid on every call. Servers keep it (client-listener.ts says why). And no service config from
 * DNS, which gRPC looks up beside a host name (a TXT record): the members' channels are configured
 * here, not by whoever answers DNS, and where nothing answers such a query it stays pending for
 * about 20 s (the SDK's channels do the same: client/endpoint-pool.ts).
 */
export function peerClientChannelOptions(limits: PeerTransportLimits): Record<string, number> {
  return {
    ...peerChannelOptions(limits),
    "grpc.enable_channelz": 0,
    "grpc.service_config_disable_resolution": 1,
  };
}

/**
 * The Raft stream's channel keeps nothing it has sent. grpc-js holds every message of a call, for a
 * retry, until the server's first answer (its headers or a message), and a Raft stream's server
 * answers only as the stream ends: each batch sent stayed held until the call's 256 KiB retry
 * budget ran out. A follower's acknowledgements are a few dozen bytes, each pinning an 8 KiB slab
 * of Node's buffer pool: up to 150 MB of a follower's memory under load that no garbage collection
 * could free (docs/performance.md, thirty-fourth session). With no budget the call commits at its
 * first message. Nothing is lost by it: a failed stream's batches are dropped, and Raft sends again.
 */
const raftStreamChannelOptions = { "grpc.per_rpc_retry_buffer_size": 0 } as const;

/**
 * How often every known peer is dialled if its connection is not up. Followers send each other
 * nothing until an election, and a first message waited for its TCP, TLS and HTTP/2 set-up:
 * pre-vote rounds of 38-70 ms under load, against 8-28 ms on a connection already up (chaos runs,
 * docs/chaos.md). The longer the round, the likelier two followers that time out near each other
 * both stand and split the vote, each split another election timeout of failover.
 */
const peerDialEveryMs = 1000;

export interface PeerTransportOptions {
  readonly nodeId: NodeId;
  /** Where each peer's Peer service listens (host:port), by node id. */
  readonly peers: ReadonlyMap<NodeId, string>;
  /** The cluster CA bundle and this node's certificate. */
  readonly tls: TlsFiles;
  readonly limits?: PeerTransportLimits;
  /**
   * The peers to keep connected ahead of need: the cluster's members now (a removed member is not
   * dialled again). Every peer with an address when absent.
   */
  readonly dialAhead?: () => Iterable<NodeId>;
  /** Called when messages to a peer are dropped (queue full, peer unknown or unreachable). */
  readonly onDrop?: (peer: NodeId, messages: number, why: string) => void;
  /** Called when a stream to a peer fails (unreachable, TLS refused, refused by the peer). */
  readonly onStreamError?: (peer: NodeId, details: string) => void;
  /**
   * Whether this node would not take the leadership now (MessageBatch.declines_leadership), asked
   * for every batch it sends: peers leading hand the leadership to other voters. Never, if absent.
   */
  readonly declinesLeadership?: () => boolean;
}

interface Outbox {
  readonly peer: NodeId;
  queue: { readonly message: RaftMessage; readonly bytes: number }[];
  queuedBytes: number;
  client: PeerClient | null;
  /** The address `client` dials: the peer's as recorded when the client was made. */
  clientAddress: string;
  stream: ClientWritableStream<MessageBatch> | null;
  /** True while waiting for the stream to drain. */
  blocked: boolean;
}

export class GrpcPeerTransport implements Transport {
  private handler: ((message: Message) => void) | null = null;
  /** What each peer last said its state machine understands (MessageBatch.features). */
  private readonly peerFeatures = new Map<NodeId, number>();
  /** The peers whose last batch said they would not take the leadership. */
  private readonly peersDeclining = new Set<NodeId>();
  private readonly outboxes = new Map<NodeId, Outbox>();
  private readonly limits: PeerTransportLimits;
  private flushScheduled = false;
  private closed = false;
  /** Answers each stream accepted from a peer and not yet ended (see close). */
  private readonly acceptedStreams = new Set<() => void>();
  private readonly stopWatchingTls: () => void;
  private dialTimer: NodeJS.Timeout | null = null;

  constructor(private readonly options: PeerTransportOptions) {
    this.limits = options.limits ?? defaultPeerTransportLimits;
    // New certificates apply to new connections: drop the clients, the next dial uses them.
    this.stopWatchingTls = options.tls.onChange(() => {
      for (const outbox of this.outboxes.values()) this.disconnect(outbox);
    });
  }

  /**
   * From now on, dials every known peer ahead of need (now, and every peerDialEveryMs while its
   * connection is not up). Called once the node's own listeners are bound: an outgoing connection
   * takes a local port from the ephemeral range, which may be one the node is about to listen on
   * where its listen addresses are its only addresses (CI: a chaos run's restarted node could not
   * listen on its HTTP port).
   */
  startDialing(): void {
    if (this.closed || this.dialTimer !== null) return;
    this.dialPeers();
    this.dialTimer = setInterval(() => this.dialPeers(), peerDialEveryMs);
    this.dialTimer.unref();
  }

  /**
   * Dials every known peer whose connection is not up (and not already being made), so that the
   * first message to it, a vote request as likely as not, does not wait for the connection. grpc-js
   * keeps each connection up and redials a lost one with its own backoff once asked to connect.
   */
  private dialPeers(): void {
    if (this.closed) return;
    for (const peer of this.options.dialAhead?.() ?? this.options.peers.keys()) {
      const address = this.options.peers.get(peer);
      if (peer === this.options.nodeId || address === undefined) continue;
      const outbox = this.outboxFor(peer);
      if (outbox === null) continue;
      // A member recorded again with another address (an operator correcting a learner's, say)
      // is dialled there from now on, not at the address its client was made for.
      if (outbox.client !== null && outbox.clientAddress !== address) this.disconnect(outbox);
      this.clientOf(outbox).getChannel().getConnectivityState(true);
    }
  }

  /** Whether the connection to `peer` is up (for tests and diagnosis). */
  isConnected(peer: NodeId): boolean {
    const client = this.outboxes.get(peer)?.client;
    return client?.getChannel().getConnectivityState(false) === connectivityState.READY;
  }

  send(messages: readonly Message[]): void {
    if (this.closed) return;
    for (const message of messages) {
      const outbox = this.outboxFor(message.to);
      if (outbox === null) {
        this.options.onDrop?.(message.to, 1, "unknown peer");
        continue;
      }
      const wire = toWire(message);
      const bytes = estimatedBytes(message);
      if (outbox.queuedBytes + bytes > this.limits.queueBytesMax) {
        this.options.onDrop?.(message.to, 1, "queue full");
        continue;
      }
      outbox.queue.push({ message: wire, bytes });
      outbox.queuedBytes += bytes;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Everything sent in this turn of the event loop (one Ready) leaves as one batch per peer.
      setImmediate(() => {
        this.flushScheduled = false;
        for (const outbox of this.outboxes.values()) this.flush(outbox);
      });
    }
  }

  /**
   * Resolves once every message sent so far to `peer` has been written to its connection, or has
   * nowhere to go (no stream yet: the connection is not up; a stream blocked for want of room
   * waits, so bound the wait). What a leader stopping on a fatal error waits for before its
   * process ends: its farewell (RaftCore.farewell) must leave first. Only that peer's: another
   * peer's stream backed up (the peer paused, its link slow) would otherwise hold the exit.
   */
  flushed(peer: NodeId): Promise<void> {
    return new Promise((resolve) => {
      // Queued after the flush that send() scheduled: setImmediate callbacks run in order.
      const check = () => {
        const outbox = this.outboxes.get(peer);
        const pending =
          outbox !== undefined &&
          outbox.stream !== null &&
          (outbox.queue.length > 0 || outbox.stream.writableLength > 0);
        if (pending && !this.closed) setTimeout(check, 1);
        else resolve();
      };
      setImmediate(check);
    });
  }

  /** What `peer` last said its state machine understands, or undefined before it sent anything. */
  featuresOf(peer: NodeId): number | undefined {
    return this.peerFeatures.get(peer);
  }

  /**
   * Whether `peer`'s last batch said it would not take the leadership (sealed). False before it
   * sent anything: a leader then offers the leadership as it always did.
   */
  declinesLeadership(peer: NodeId): boolean {
    return this.peersDeclining.has(peer);
  }

  listen(handler: (message: Message) => void): void {
    this.handler = handler;
  }

  /**
   * The receiving side of Peer.Stream: checks the sender's certificate, then hands every message
   * to the Raft node. Registered by the peer listener.
   */
  acceptStream(
    call: ServerReadableStream<MessageBatch, StreamClosed>,
    callback: sendUnaryData<StreamClosed>,
  ): void {
    const peer = nodeIdOf(call.getAuthContext()?.sslPeerCertificate);
    let batches = 0;
    let answered = false;
    const refuse = (code: status, details: string): void => {
      if (answered) return;
      answered = true;
      this.acceptedStreams.delete(finish);
      callback({ code, details });
      call.destroy();
    };
    const finish = (): void => {
      if (answered) return;
      answered = true;
      this.acceptedStreams.delete(finish);
      callback(null, { batches });
    };
    if (peer === null) {
      refuse(status.PERMISSION_DENIED, "the peer certificate names no node (SAN URI strongroom://node/<id>)");
      return;
    }
    if (this.closed) {
      refuse(status.UNAVAILABLE, `node ${this.options.nodeId} is stopping`);
      return;
    }
    this.acceptedStreams.add(finish);
    // Headers at once: a sender whose channel keeps grpc-js's retry budget (a member still on a
    // release from before raftStreamChannelOptions) holds every batch it sends until its call's
    // first answer; the headers commit its call.
    call.sendMetadata(new Metadata());
    call.on("data", (batch: MessageBatch) => {
      if (answered) return;
      batches += 1;
      this.peerFeatures.set(peer, batch.features);
      if (batch.declinesLeadership) this.peersDeclining.add(peer);
      else this.peersDeclining.delete(peer);
      for (const wire of batch.messages) {
        if (wire.from !== peer || wire.to !== this.options.nodeId) {
          refuse(
            status.PERMISSION_DENIED,
            `node ${peer} sent a message from ${wire.from} to ${wire.to}; it may only send its own messages to ${this.options.nodeId}`,
          );
          return;
        }
        let message: Message;
        try {
          message = fromWire(wire);
        } catch (error) {
          refuse(status.INVALID_ARGUMENT, (error as PeerMessageError).message);
          return;
        }
        if (!this.closed) this.handler?.(message);
      }
    });
    call.on("end", finish);
    call.on("error", () => {
      // The sender went away; it dials again when it has something to send.
      this.acceptedStreams.delete(finish);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.dialTimer !== null) clearInterval(this.dialTimer);
    // A peer's stream never ends by itself: answered now, it no longer holds the peer listener's
    // shutdown (which waited its full second for them at every stop), and the peer dials again
    // when it has something to send.
    for (const finish of [...this.acceptedStreams]) finish();
    this.stopWatchingTls();
    for (const outbox of this.outboxes.values()) this.disconnect(outbox);
    this.outboxes.clear();
  }

  private outboxFor(peer: NodeId): Outbox | null {
    let outbox = this.outboxes.get(peer);
    if (outbox === undefined) {
      if (!this.options.peers.has(peer)) return null;
      outbox = {
        peer,
        queue: [],
        queuedBytes: 0,
        client: null,
        clientAddress: "",
        stream: null,
        blocked: false,
      };
      this.outboxes.set(peer, outbox);
    }
    return outbox;
  }

  private flush(outbox: Outbox): void {
    while (outbox.queue.length > 0 && !outbox.blocked && !this.closed) {
      const stream = this.streamTo(outbox);
      const batch: RaftMessage[] = [];
      let batchBytes = 0;
      while (outbox.queue.length > 0) {
        const next = outbox.queue[0];
        if (next === undefined || (batch.length > 0 && batchBytes + next.bytes > this.limits.batchBytesMax))
          break;
        outbox.queue.shift();
        outbox.queuedBytes -= next.bytes;
        batch.push(next.message);
        batchBytes += next.bytes;
      }
      const writable = stream.write({
        messages: batch,
        features: localFeatures,
        declinesLeadership: this.options.declinesLeadership?.() ?? false,
      });
      if (!writable) {
        outbox.blocked = true;
        stream.once("drain", () => {
          outbox.blocked = false;
          this.flush(outbox);
        });
      }
    }
  }

  private clientOf(outbox: Outbox): PeerClient {
    if (outbox.client !== null) return outbox.client;
    const address = this.options.peers.get(outbox.peer) ?? "";
    const expected = outbox.peer;
    const tls = dialTls(this.options.tls, address, (certificate) => {
      const named = nodeIdOf(certificate);
      return named === expected
        ? undefined
        : `the certificate at ${address} names node ${named ?? "(none)"}, not ${expected}`;
    });
    outbox.client = new PeerClient(address, tls.credentials, {
      ...peerClientChannelOptions(this.limits),
      ...raftStreamChannelOptions,
      ...tls.options,
    });
    outbox.clientAddress = address;
    return outbox.client;
  }

  private streamTo(outbox: Outbox): ClientWritableStream<MessageBatch> {
    if (outbox.stream !== null) return outbox.stream;
    const stream = this.clientOf(outbox).stream((error) => {
      // The stream ended (peer down, refused, or closed by us): the next flush opens another.
      if (outbox.stream === stream) {
        outbox.stream = null;
        outbox.blocked = false;
      }
      if (error === null || this.closed) return;
      this.options.onStreamError?.(outbox.peer, error.details);
      if (outbox.queue.length > 0) {
        this.options.onDrop?.(outbox.peer, outbox.queue.length, "stream failed");
        outbox.queue = [];
        outbox.queuedBytes = 0;
      }
    });
    stream.on("error", () => {
      // Reported through the callback above.
    });
    outbox.stream = stream;
    return stream;
  }

  private disconnect(outbox: Outbox): void {
    outbox.stream?.end();
    outbox.stream = null;
    outbox.blocked = false;
    outbox.client?.close();
    outbox.client = null;
  }
}

/** A message's size on the wire, near enough for the queue bound: its payload bytes plus headers. */
function estimatedBytes(message: Message): number {
  const overhead = 64;
  if (message.type === "append") {
    return overhead + message.entries.reduce((sum, entry) => sum + entry.data.length + 32, 0);
  }
  if (message.type === "snapshotChunk") {
    return (
      overhead +
      message.chunk.length +
      64 *
        (message.meta.membership.voters.length +
          message.meta.membership.learners.length +
          (message.meta.membership.removed?.length ?? 0))
    );
  }
  return overhead;
}
