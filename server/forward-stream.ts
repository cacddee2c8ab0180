// One follower's stream of forwarded requests to one node (Peer.ForwardBatches): opened on first
// use, kept while it works, opened again on the next request after it fails. Each request gets an
// id; the answer carrying that id settles it, in whatever order answers come. The requests made in
// one turn of the event loop leave as one message at its end (setImmediate), up to a batch's bytes
// (peer-transport.ts; a larger request goes alone): a gRPC message costs both nodes tens of
// microseconds whatever it holds, and a follower's clients' calls come in bursts.
// A request's deadline is kept here too (the stream itself has none). When the stream fails, every
// request still waiting fails: with NO_LEADER when no connection was ever made (nothing was sent,
// so retrying is safe), else FORWARD_FAILED (the node may have run it: the outcome is unknown).

import { type ClientDuplexStream, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import type {
  ForwardedAnswers,
  ForwardedCall,
  ForwardedCalls,
  ForwardRequest,
  ForwardResponse,
  PeerClient,
} from "../proto/gen/strongroom/raft/v1/peer.gen.js";
import type { NodeId } from "../raft/core/index.js";
import { NodeError } from "./errors.js";
import { msLeft } from "./request.js";

/** The node does not serve ForwardBatches (an older version): nothing sent on it was run. */
export class ForwardStreamUnimplemented extends Error {
  override readonly name = "ForwardStreamUnimplemented";
}

interface Waiting {
  readonly resolve: (response: ForwardResponse) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export class ForwardStream {
  private call: ClientDuplexStream<ForwardedCalls, ForwardedAnswers> | null = null;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();
  /** Requests made in this turn of the event loop, sent together at its end (flush). */
  private outgoing: ForwardedCall[] = [];
  private outgoingBytes = 0;
  private flushScheduled = false;

  constructor(
    private readonly client: PeerClient,
    private readonly target: NodeId,
    /** Bytes of requests in one message; a larger request goes alone. */
    private readonly batchBytesMax: number,
  ) {}

  /** Requests sent and not answered yet. */
  get inFlight(): number {
    return this.waiting.size;
  }

  /**
   * Sends `request` (about `bytes` in a message: forwardedRequestBytes) and resolves with the
   * node's answer, or rejects by `answerBy` (a performance.now() time).
   */
  send(request: ForwardRequest, bytes: number, answerBy: number): Promise<ForwardResponse> {
    if (this.call === null) this.open();
    const id = this.nextId++;
    return new Promise<ForwardResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(
          new NodeError("FORWARD_FAILED", `the leader ${this.target} did not answer before the deadline`, {
            leaderHint: this.target,
          }),
        );
      }, msLeft(answerBy));
      this.waiting.set(id, { resolve, reject, timer });
      if (this.outgoing.length > 0 && this.outgoingBytes + bytes > this.batchBytesMax) this.writeOutgoing();
      this.outgoing.push({ id, request });
      this.outgoingBytes += bytes;
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(this.flush);
      }
    });
  }

  /** At the end of the turn of the event loop that made requests: sends them. */
  private readonly flush = (): void => {
    this.flushScheduled = false;
    this.writeOutgoing();
  };

  /** Sends the requests made since the last message as one message. */
  private writeOutgoing(): void {
    const calls = this.outgoing;
    if (calls.length === 0 || this.call === null) return;
    this.outgoing = [];
    this.outgoingBytes = 0;
    this.call.write({ calls });
  }

  /** The id of the last request sent, or leaving at the end of this turn (0 before the first). */
  get lastSent(): number {
    return this.nextId - 1;
  }

  /**
   * Fails the requests up to id `through` still waiting for an answer with `error`, and keeps the
   * stream: an answer that comes later finds no one waiting and is dropped (as after a deadline).
   */
  abandon(through: number, error: Error): void {
    for (const [id, waiting] of this.waiting) {
      if (id > through) continue;
      clearTimeout(waiting.timer);
      waiting.reject(error);
      this.waiting.delete(id);
    }
  }

  /** Ends the stream; requests still waiting fail (FORWARD_FAILED). */
  close(): void {
    const call = this.call;
    if (call === null) return;
    this.fail(call, { code: status.CANCELLED, details: "the forwarder was closed" });
    call.cancel();
  }

  private open(): void {
    const call = this.client.forwardBatches(new Metadata());
    call.on("data", (message: ForwardedAnswers) => {
      for (const answer of message.answers) {
        const waiting = this.waiting.get(answer.id);
        if (waiting === undefined) continue; // its deadline passed: the caller was told already
        this.waiting.delete(answer.id);
        clearTimeout(waiting.timer);
        if (answer.response === undefined) {
          waiting.reject(
            new NodeError("FORWARD_FAILED", `the leader ${this.target} answered without a response`, {
              leaderHint: this.target,
            }),
          );
          continue;
        }
        waiting.resolve(answer.response);
      }
    });
    call.on("error", (error: ServiceError) => this.fail(call, error));
    call.on("end", () =>
      this.fail(call, { code: status.UNAVAILABLE, details: `the leader ${this.target} ended the stream` }),
    );
    this.call = call;
  }

  private fail(
    call: ClientDuplexStream<ForwardedCalls, ForwardedAnswers>,
    error: Pick<ServiceError, "code" | "details">,
  ): void {
    if (this.call !== call) return;
    this.call = null;
    // Their requests, not sent yet, fail with the rest (a stream opened later does not take them).
    this.outgoing = [];
    this.outgoingBytes = 0;
    const failure =
      error.code === status.UNIMPLEMENTED
        ? new ForwardStreamUnimplemented(`${this.target} does not serve ForwardBatches`)
        : forwardingFailure(this.target, error);
    for (const waiting of this.waiting.values()) {
      clearTimeout(waiting.timer);
      waiting.reject(failure);
    }
    this.waiting.clear();
  }
}

/**
 * What a forwarded request that failed in transport is to the executor: NO_LEADER when no
 * connection was made (nothing was sent, so retrying elsewhere is safe), else FORWARD_FAILED (it
 * may have reached the leader: its outcome is unknown).
 */
export function forwardingFailure(leader: NodeId, error: Pick<ServiceError, "code" | "details">): NodeError {
  const neverSent =
    error.code === status.UNAVAILABLE && /No connection established|ECONNREFUSED/.test(error.details);
  return new NodeError(
    neverSent ? "NO_LEADER" : "FORWARD_FAILED",
    `the leader ${leader} could not ${neverSent ? "be reached" : "answer"}: ${error.details}`,
    { leaderHint: leader },
  );
}

/** About how many bytes `request` takes in a message (its fields and their framing). */
export function forwardedRequestBytes(request: ForwardRequest): number {
  return (
    request.request.length +
    request.method.length +
    Buffer.byteLength(request.clientIdentity) +
    Buffer.byteLength(request.clientToken) +
    64
  );
}
