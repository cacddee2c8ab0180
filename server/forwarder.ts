// Requests a follower cannot serve (writes, operations that propose) go to the leader over the
// peer channel (mutual TLS with the cluster CA): the request as the client sent it, the client's
// identity and token (the leader authorizes it again) and the time left. The leader runs it as its
// own and answers with the response or the error (status, reason, leader hint), which the follower
// passes on unchanged. The leader never forwards again: a leader that lost its role answers
// NOT_LEADER. Requests travel over one stream per leader (Peer.ForwardBatches, forward-stream.ts);
// a leader that does not serve it yet (a rolling upgrade) gets a call per request (Peer.Forward)
// for a minute, then the stream is tried again. The receiving side is forward-receiver.ts.

import { Metadata, status } from "@grpc/grpc-js";
import {
  type ForwardRequest,
  type ForwardResponse,
  PeerClient,
} from "../proto/gen/strongroom/raft/v1/peer.gen.js";
import type { NodeId } from "../raft/core/index.js";
import type { AnyApiMethod } from "./api/api-method.js";
import { ForwardedError, NodeError } from "./errors.js";
import {
  ForwardStream,
  ForwardStreamUnimplemented,
  forwardedRequestBytes,
  forwardingFailure,
} from "./forward-stream.js";
import {
  defaultPeerTransportLimits,
  peerClientChannelOptions,
  peerMessageBytesMax,
} from "./peer/peer-transport.js";
import { msLeft, type RequestContext } from "./request.js";
import { dialTls } from "./tls/credentials.js";
import { nodeIdOf } from "./tls/identity.js";
import type { TlsFiles } from "./tls/tls-files.js";

/** How long a node that refused ForwardBatches gets a call per request before the stream is tried again. */
const unaryFallbackMs = 60_000;

/** The largest request forwarded: what one message between nodes carries. */
const forwardedBytesMax = peerMessageBytesMax(defaultPeerTransportLimits);

interface LeaderChannel {
  readonly address: string;
  readonly client: PeerClient;
  readonly stream: ForwardStream;
  /** Until when requests go by Peer.Forward (the node refused the stream); 0: the stream. */
  unaryUntil: number;
}

export class Forwarder {
  private readonly channels = new Map<NodeId, LeaderChannel>();
  private readonly stopWatchingTls: () => void;

  /** The leader this node knows now (leaderChanged), or null. */
  private leader: NodeId | null = null;
  private readonly graceTimers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly peers: ReadonlyMap<NodeId, string>,
    private readonly tls: TlsFiles,
    /** How long requests held by a replaced leader may still be answered (leaderChanged): an election timeout. */
    private readonly leaderChangeGraceMs = 500,
    /**
     * When this node last heard from a member (any Raft message, a performance.now() time;
     * undefined: never): a replaced leader silent for the grace already gets no more
     * (leaderChanged). Without it, every replaced leader gets the grace.
     */
    private readonly lastHeardFrom: ((node: NodeId) => number | undefined) | null = null,
  ) {
    this.stopWatchingTls = tls.onChange(() => this.closeChannels());
  }

  /** Runs `method` on `leader` and returns its response, or throws the leader's error. */
  async forward<Request, Response>(
    leader: NodeId,
    method: AnyApiMethod,
    request: Request,
    context: RequestContext,
  ): Promise<Response> {
    const channel = this.channelFor(leader);
    const forwardRequest: ForwardRequest = {
      method: method.definition.path,
      request: method.definition.requestSerialize(request),
      clientIdentity: context.identity,
      clientToken: context.token ?? "",
      // A whole number: the field is a uint64.
      deadlineMs: msLeft(context.answerBy, 1),
      tokenUseSpent: context.authorization.tokenUseSpent,
    };
    // Sent, it would fail the stream and every request on it; the client port's own limit
    // (requests.messageBytesMax) may be set above it.
    const bytes = forwardedRequestBytes(forwardRequest);
    if (bytes > forwardedBytesMax) {
      throw new NodeError(
        "RESOURCE_EXHAUSTED",
        `the request of ${bytes} bytes is more than a message between nodes carries (${forwardedBytesMax})`,
      );
    }
    const answer = await this.send(leader, channel, forwardRequest, bytes, context.answerBy);
    if (answer.code !== status.OK) {
      throw new ForwardedError(
        answer.code,
        answer.reason,
        answer.message,
        answer.leaderId === "" ? null : answer.leaderId,
      );
    }
    return method.definition.responseDeserialize(Buffer.from(answer.response)) as Response;
  }

  /**
   * A new leader is known: the requests still waiting on any other node get one election timeout
   * more to be answered, then fail, as outcome unknown (FORWARD_FAILED, the new leader as hint),
   * instead of at their deadline. The old leader may have proposed them (the new one decides
   * whether they commit), and it may never answer: cut off from the others, it cannot even learn
   * it was replaced, and a partition can hold its stream for as long as it lasts (a chaos run saw
   * writes held 3.4 s, until the partition healed). The time given first is for calls whose own
   * success changed the leader (a leadership transfer, the leader's removal): their answer is on
   * its way. An old leader this node has not heard from for that long already (paused, hung, cut
   * off: the reason the others elected) sends no such answer, and its requests fail at once. A
   * node that sees no leader (an election) keeps waiting: the old one may still lead.
   */
  leaderChanged(leader: NodeId | null): void {
    this.leader = leader;
    if (leader === null) return;
    for (const [target, channel] of this.channels) {
      if (target === leader || channel.stream.inFlight === 0) continue;
      const sentThrough = channel.stream.lastSent;
      const abandon = () =>
        channel.stream.abandon(
          sentThrough,
          new NodeError(
            "FORWARD_FAILED",
            `the leader changed to ${leader} while ${target} held the request: it may or may not commit; retry`,
            { leaderHint: leader },
          ),
        );
      if (this.silentFor(target, this.leaderChangeGraceMs)) {
        abandon();
        continue;
      }
      const timer = setTimeout(() => {
        this.graceTimers.delete(timer);
        if (this.leader !== target) abandon();
      }, this.leaderChangeGraceMs);
      this.graceTimers.add(timer);
    }
  }

  /** Whether `node` has sent this node nothing (no Raft message) for `ms` (false without lastHeardFrom). */
  private silentFor(node: NodeId, ms: number): boolean {
    if (this.lastHeardFrom === null) return false;
    const heard = this.lastHeardFrom(node);
    return heard === undefined || performance.now() - heard >= ms;
  }

  /** Requests this node is forwarding now, over every stream. */
  inFlight(): number {
    let count = 0;
    for (const channel of this.channels.values()) count += channel.stream.inFlight;
    return count;
  }

  close(): void {
    for (const timer of this.graceTimers) clearTimeout(timer);
    this.graceTimers.clear();
    this.stopWatchingTls();
    this.closeChannels();
  }

  private async send(
    leader: NodeId,
    channel: LeaderChannel,
    forwardRequest: ForwardRequest,
    bytes: number,
    answerBy: number,
  ): Promise<ForwardResponse> {
    if (performance.now() >= channel.unaryUntil) {
      try {
        return await channel.stream.send(forwardRequest, bytes, answerBy);
      } catch (error) {
        if (!(error instanceof ForwardStreamUnimplemented)) throw error;
        // Nothing sent on the refused stream ran: send it again, a call at a time.
        channel.unaryUntil = performance.now() + unaryFallbackMs;
      }
    }
    return new Promise<ForwardResponse>((resolve, reject) => {
      // grpc-js takes a call's deadline as a wall-clock time.
      const deadline = Date.now() + msLeft(answerBy);
      channel.client.forward(forwardRequest, new Metadata(), { deadline }, (error, response) => {
        if (error === null) {
          resolve(response);
          return;
        }
        reject(forwardingFailure(leader, error));
      });
    });
  }

  private channelFor(leader: NodeId): LeaderChannel {
    const address = this.peers.get(leader);
    if (address === undefined) throw new NodeError("NO_LEADER", `the leader ${leader} has no known address`);
    const known = this.channels.get(leader);
    if (known !== undefined && known.address === address) return known;
    if (known !== undefined) closeChannel(known);
    const tls = dialTls(this.tls, address, (certificate) =>
      nodeIdOf(certificate) === leader
        ? undefined
        : `the certificate at ${address} does not name node ${leader}`,
    );
    const client = new PeerClient(address, tls.credentials, {
      ...peerClientChannelOptions(defaultPeerTransportLimits),
      ...tls.options,
    });
    const channel: LeaderChannel = {
      address,
      client,
      stream: new ForwardStream(client, leader, defaultPeerTransportLimits.batchBytesMax),
      unaryUntil: 0,
    };
    this.channels.set(leader, channel);
    return channel;
  }

  private closeChannels(): void {
    for (const channel of this.channels.values()) closeChannel(channel);
    this.channels.clear();
  }
}

function closeChannel(channel: LeaderChannel): void {
  channel.stream.close();
  channel.client.close();
}
