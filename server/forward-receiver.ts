// The receiving side of forwarding (on the leader, or on the node a "peer" method was asked of):
// Peer.ForwardStream, many requests over one stream per forwarding node, and Peer.Forward, one
// call per request (what a follower not yet upgraded sends). Each request is decoded as the
// method it names (a known leader- or peer-routed one), run with the client's identity and token
// and the forwarder's deadline, and answered with the response or the mapped error. Only a peer
// certificate (cluster CA, naming a node) reaches this port.

import {
  type handleBidiStreamingCall,
  type handleUnaryCall,
  type ServerDuplexStream,
  status,
} from "@grpc/grpc-js";
import type {
  ForwardedAnswer,
  ForwardedCall,
  ForwardRequest,
  ForwardResponse,
} from "../proto/gen/strongroom/raft/v1/peer.gen.js";
import type { AnyApiMethod } from "./api/api-method.js";
import { mapError, NodeError } from "./errors.js";
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
}

const defaultInFlightPerStreamMax = 10_000;

/** What the peer listener serves forwarded requests with. */
export interface ForwardingHandlers {
  unary(): handleUnaryCall<ForwardRequest, ForwardResponse>;
  stream(): handleBidiStreamingCall<ForwardedCall, ForwardedAnswer>;
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

  /**
   * Peer.ForwardStream: answers each request as it completes, tagged with its id. When the
   * forwarder half-closes, the stream ends once every request it sent has been answered.
   */
  stream(): handleBidiStreamingCall<ForwardedCall, ForwardedAnswer> {
    const inFlightMax = this.options.inFlightPerStreamMax ?? defaultInFlightPerStreamMax;
    return (call: ServerDuplexStream<ForwardedCall, ForwardedAnswer>) => {
      const peer = nodeIdOf(call.getAuthContext()?.sslPeerCertificate);
      if (peer === null) {
        call.emit("error", { code: status.PERMISSION_DENIED, details: "the peer certificate names no node" });
        return;
      }
      let inFlight = 0;
      let halfClosed = false;
      let ended = false;
      const endWhenDone = (): void => {
        if (!halfClosed || inFlight > 0 || ended) return;
        ended = true;
        this.openStreams.delete(finish);
        if (!call.cancelled) call.end();
      };
      const finish = (): void => {
        halfClosed = true;
        endWhenDone();
      };
      this.openStreams.add(finish);
      call.on("data", (message: ForwardedCall) => {
        if (inFlight >= inFlightMax) {
          call.write({
            id: message.id,
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
        this.answer(peer, message.request).then((response) => {
          inFlight -= 1;
          if (!call.cancelled && !ended) call.write({ id: message.id, response });
          endWhenDone();
        });
      });
      call.on("end", finish);
      // A forwarder gone (cancelled, connection lost): its answers have nowhere to go.
      call.on("error", () => this.openStreams.delete(finish));
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
        deadline: workingDeadline(
          Date.now() + Math.min(forwarded.deadlineMs, this.options.deadlineMsMax),
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
