// The receiving side of forwarding (on the leader, or on the node a "peer" method was asked of):
// Peer.ForwardBatches, many requests over one stream per forwarding node with the answers ready in
// one turn of the event loop sent as one message; and for followers not yet upgraded,
// Peer.ForwardStream (the same, a message per request and per answer) and Peer.Forward (a call per
// request). Each request is decoded as the method it names (a known leader- or peer-routed one),
// run with the client's identity and token and the forwarder's deadline, and answered with the
// response or the mapped error. Only a peer certificate (cluster CA, naming a node) reaches this
// port.

import {
  type handleBidiStreamingCall,
  type handleUnaryCall,
  type ServerDuplexStream,
  status,
} from "@grpc/grpc-js";
import type {
  ForwardedAnswer,
  ForwardedAnswers,
  ForwardedCall,
  ForwardedCalls,
  ForwardRequest,
  ForwardResponse,
} from "../proto/gen/strongroom/raft/v1/peer.gen.js";
import type { AnyApiMethod } from "./api/api-method.js";
import { mapError, NodeError } from "./errors.js";
import {
  defaultPeerTransportLimits,
  type PeerTransportLimits,
  peerMessageBytesMax,
} from "./peer/peer-transport.js";
import { type RequestContext, workingDeadline } from "./request.js";
import { nodeIdOf } from "./tls/identity.js";

export interface ForwardReceiverOptions {
  readonly methods: ReadonlyMap<string, AnyApiMethod>;
  readonly execute: (method: AnyApiMethod, request: unknown, context: RequestContext) => Promise<unknown>;
  /** The longest deadline a forwarded request gets, whatever the forwarder asks. */
  readonly deadlineMsMax: number;
  /** How long before a forwarded call's deadline the leader stops waiting (request.ts workingDeadline). */
  readonly answerReserveMs: number;
  /**
   * Requests one stream may have running at once; past it a request is answered
   * RESOURCE_EXHAUSTED at once. A follower sends what its own clients have in flight, which its
   * own limits bound; this keeps one peer from queueing without end.
   */
  readonly inFlightPerStreamMax?: number;
  /** The peer channel's limits: a batch of answers holds up to batchBytesMax (default: the transport's). */
  readonly limits?: PeerTransportLimits;
}

const defaultInFlightPerStreamMax = 10_000;

/** What serving a forwarding stream needs of it, whichever message types it carries. */
type ServedStream = Pick<
  ServerDuplexStream<unknown, unknown>,
  "cancelled" | "end" | "emit" | "getAuthContext" | "on"
>;

/** What the peer listener serves forwarded requests with. */
export interface ForwardingHandlers {
  unary(): handleUnaryCall<ForwardRequest, ForwardResponse>;
  stream(): handleBidiStreamingCall<ForwardedCall, ForwardedAnswer>;
  batches(): handleBidiStreamingCall<ForwardedCalls, ForwardedAnswers>;
  /**
   * The node is stopping: each open stream ends once the requests it has running are answered
   * (a forwarder keeps its stream open for as long as it works, so it would hold the listener's
   * shutdown to its deadline).
   */
  close(): void;
}

export class ForwardReceiver implements ForwardingHandlers {
  /** Ends each open stream once its requests are answered (see close). */
  private readonly openStreams = new Set<() => void>();

  constructor(private readonly options: ForwardReceiverOptions) {}

  close(): void {
    for (const finish of [...this.openStreams]) finish();
  }

  /** Peer.Forward: one request, one call. */
  unary(): handleUnaryCall<ForwardRequest, ForwardResponse> {
    return (call, callback) => {
      const peer = nodeIdOf(call.getAuthContext()?.sslPeerCertificate);
      if (peer === null) {
        callback({ code: status.PERMISSION_DENIED, details: "the peer certificate names no node" });
        return;
      }
      this.answer(peer, call.request).then((response) => callback(null, response));
    };
  }

  /** Peer.ForwardStream (followers of an older version): a message per request and per answer. */
  stream(): handleBidiStreamingCall<ForwardedCall, ForwardedAnswer> {
    return (call: ServerDuplexStream<ForwardedCall, ForwardedAnswer>) => {
      const run = this.serveStream(call, false, (answers) => {
        for (const answer of answers) call.write(answer);
      });
      if (run !== null) call.on("data", run);
    };
  }

  /** Peer.ForwardBatches: requests and answers a batch per message. */
  batches(): handleBidiStreamingCall<ForwardedCalls, ForwardedAnswers> {
    return (call: ServerDuplexStream<ForwardedCalls, ForwardedAnswers>) => {
      const run = this.serveStream(call, true, (answers) => call.write({ answers }));
      if (run !== null) {
        call.on("data", (message: ForwardedCalls) => {
          for (const forwarded of message.calls) run(forwarded);
        });
      }
    };
  }

  /**
   * Serves one forwarding stream: returns what runs each request it carries (null: the peer was
   * refused), whose answer, tagged with its id, goes out as it completes (`batchAnswers` false) or
   * with the others ready in the same turn of the event loop. When the forwarder half-closes, the
   * stream ends once every request it sent has been answered.
   */
  private serveStream(
    call: ServedStream,
    batchAnswers: boolean,
    writeAnswers: (answers: ForwardedAnswer[]) => void,
  ): ((forwarded: ForwardedCall) => void) | null {
    const peer = nodeIdOf(call.getAuthContext()?.sslPeerCertificate);
    if (peer === null) {
      call.emit("error", { code: status.PERMISSION_DENIED, details: "the peer certificate names no node" });
      return null;
    }
    const inFlightMax = this.options.inFlightPerStreamMax ?? defaultInFlightPerStreamMax;
    const limits = this.options.limits ?? defaultPeerTransportLimits;
    const messageBytesMax = peerMessageBytesMax(limits);
    let inFlight = 0;
    let outgoing: ForwardedAnswer[] = [];
    let outgoingBytes = 0;
    let flushScheduled = false;
    let halfClosed = false;
    let ended = false;
    const endWhenDone = (): void => {
      if (!halfClosed || inFlight > 0 || outgoing.length > 0 || ended) return;
      ended = true;
      this.openStreams.delete(finish);
      if (!call.cancelled) call.end();
    };
    const finish = (): void => {
      halfClosed = true;
      endWhenDone();
    };
    const writeOutgoing = (): void => {
      const answers = outgoing;
      outgoing = [];
      outgoingBytes = 0;
      if (answers.length > 0 && !call.cancelled && !ended) writeAnswers(answers);
    };
    const flush = (): void => {
      flushScheduled = false;
      writeOutgoing();
      endWhenDone();
    };
    const send = (ready: ForwardedAnswer): void => {
      let answer = ready;
      let bytes = answerBytes(ready);
      if (bytes > messageBytesMax) {
        answer = tooLargeForPeerMessage(ready.id, bytes, messageBytesMax);
        bytes = answerBytes(answer);
      }
      if (outgoing.length > 0 && outgoingBytes + bytes > limits.batchBytesMax) writeOutgoing();
      outgoing.push(answer);
      outgoingBytes += bytes;
      if (!batchAnswers) flush();
      else if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flush);
      }
    };
    this.openStreams.add(finish);
    call.on("end", finish);
    // A forwarder gone (cancelled, connection lost): its answers have nowhere to go.
    call.on("error", () => this.openStreams.delete(finish));
    return (forwarded) => {
      if (inFlight >= inFlightMax) {
        send({
          id: forwarded.id,
          response: failure(
            new NodeError(
              "RESOURCE_EXHAUSTED",
              `${inFlightMax} forwarded requests are already running for ${peer}`,
            ),
          ),
        });
        return;
      }
      inFlight += 1;
      this.answer(peer, forwarded.request).then((response) => {
        inFlight -= 1;
        send({ id: forwarded.id, response });
      });
    };
  }

  /** Runs one forwarded request; never rejects (a failure is an answer). */
  private async answer(peer: string, forwarded: ForwardRequest | undefined): Promise<ForwardResponse> {
    try {
      if (forwarded === undefined)
        throw new NodeError("INVALID_ARGUMENT", "a forwarded call carries no request");
      const method = this.options.methods.get(forwarded.method);
      if (method === undefined || method.route === "local") {
        throw new NodeError("INVALID_ARGUMENT", `${forwarded.method} is not a method that is forwarded`);
      }
      let request: unknown;
      try {
        request = method.definition.requestDeserialize(Buffer.from(forwarded.request));
      } catch {
        throw new NodeError("INVALID_ARGUMENT", `the forwarded ${forwarded.method} request does not decode`);
      }
      const context: RequestContext = {
        method: method.definition.path,
        identity: forwarded.clientIdentity,
        token: forwarded.clientToken === "" ? null : forwarded.clientToken,
        // The forwarder keeps its own reserve; this one is for the leader's answer to reach it.
        answerBy: workingDeadline(
          Math.min(forwarded.deadlineMs, this.options.deadlineMsMax),
          this.options.answerReserveMs,
        ),
        forwardedBy: peer,
        authorization: { caller: null, tokenUseSpent: forwarded.tokenUseSpent },
      };
      const response = await this.options.execute(method, request, context);
      return {
        response: method.definition.responseSerialize(response),
        code: status.OK,
        message: "",
        reason: "",
        leaderId: "",
      };
    } catch (error) {
      return failure(error);
    }
  }
}

/** About how many bytes `answer` takes in a message. */
function answerBytes(answer: ForwardedAnswer): number {
  const response = answer.response;
  if (response === undefined) return 32;
  return (
    response.response.length +
    Buffer.byteLength(response.message) +
    response.reason.length +
    response.leaderId.length +
    32
  );
}

/**
 * What goes in place of answer `id`, of `bytes`, larger than a message between nodes carries (sent,
 * it would fail the stream and every request on it). Only a read's answer gets that large
 * (ReadTimes over many paths); a write's is a few dozen bytes.
 */
function tooLargeForPeerMessage(id: number, bytes: number, bytesMax: number): ForwardedAnswer {
  return {
    id,
    response: failure(
      new NodeError(
        "RESOURCE_EXHAUSTED",
        `the answer of ${bytes} bytes is more than a message between nodes carries (${bytesMax})`,
      ),
    ),
  };
}

function failure(error: unknown): ForwardResponse {
  const mapped = mapError(error);
  return {
    response: new Uint8Array(0),
    code: mapped.code,
    message: mapped.message,
    reason: mapped.reason,
    leaderId: mapped.leaderHint ?? "",
  };
}
