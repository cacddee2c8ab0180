// Secrets.Watch on the client port: a server stream of changes under a prefix (watch-hub.ts). The
// node must be initialized and unsealed, as for any secrets call; the stream follows gRPC flow
// control (it queues while the client does not read, up to the hub's bound, then ends the stream
// with RESOURCE_EXHAUSTED) and ends when the client cancels. One identity may hold a bounded number
// of watches on a node. The caller was authorized to read
// the prefix when the stream opened; each event is checked again against the access records of
// the moment, so an event under a denied sub-path is not sent, and a revoked or expired token
// ends the stream. A watch that asked for progress (progress_notify) is sent the revision it is up
// to date with now and then (watch-hub.ts), its token checked again each time.
//
// A resume from a revision this node has not applied yet waits for a linearizable read barrier
// first, so that a lagging follower replays nothing the client saw already. A revision the
// cluster itself has not reached (another cluster's) is refused: accepted, it would silently skip
// every change up to it. One from before this cluster was restored from a backup is below its
// history (snapshot-handlers.ts), and refused as too old.

import { Metadata } from "@grpc/grpc-js";
import {
  ChangeKind,
  Consistency,
  type WatchEvent,
  type WatchRequest,
} from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { type StateLimits, validatePrefix } from "../../storage/state/index.js";
import type { ServerStreamHandler } from "../client-listener.js";
import { NodeError, toServiceError } from "../errors.js";
import type { ReadBarrier } from "../read-barrier.js";
import type { RequestContext } from "../request.js";
import type { WatchHub, WatchSink } from "../watch-hub.js";

export interface WatchHandlerOptions {
  readonly hub: WatchHub;
  readonly requireServing: () => void;
  readonly limits: StateLimits;
  /** Whether the stream's caller may read `path` now (throws once its token is no longer valid). */
  readonly mayRead: (context: RequestContext, path: string) => boolean;
  /** Throws once the stream's token is no longer valid (before a progress event, which names no path). */
  readonly checkCaller: (context: RequestContext) => void;
  /** Watches one identity may hold open on this node. */
  readonly perIdentityMax: number;
  /** The revision this node has applied up to. */
  readonly appliedRevision: () => number;
  /** The revision of the change made by the entry at a Raft index. */
  readonly revisionOf: (index: number) => number;
  /** The barrier a resume from a revision not applied here yet waits for. */
  readonly reads: ReadBarrier;
  /** How long that barrier may wait (for a leader, say). */
  readonly timeoutMs: number;
}

/** The response header with the revision a watch started after. */
const revisionHeader = "strongroom-revision";

type WatchCall = Parameters<ServerStreamHandler<WatchRequest, WatchEvent>>[0];

export function watchHandler(options: WatchHandlerOptions): ServerStreamHandler<WatchRequest, WatchEvent> {
  const {
    hub,
    requireServing,
    limits,
    mayRead,
    checkCaller,
    perIdentityMax,
    appliedRevision,
    revisionOf,
    reads,
    timeoutMs,
  } = options;
  const openByIdentity = new Map<string, number>();
  return (call, context) => {
    const fail = (error: unknown) => call.emit("error", toServiceError(error));
    const fromRevision = call.request.fromRevision;
    try {
      requireServing();
      if (call.request.prefix !== "") validatePrefix(call.request.prefix, limits);
    } catch (error) {
      fail(error);
      return;
    }
    if (fromRevision <= appliedRevision()) {
      start(call, context, fail);
      return;
    }
    reads
      .wait(Consistency.CONSISTENCY_LINEARIZABLE, 0, { ...context, answerBy: performance.now() + timeoutMs })
      .then((index) => {
        const applied = revisionOf(index);
        if (fromRevision > applied) {
          throw new NodeError(
            "REVISION_AHEAD",
            `revision ${fromRevision} is ahead of this cluster (at ${applied}): it comes from another cluster; list, then watch from now`,
          );
        }
        if (!call.cancelled) start(call, context, fail);
      })
      .catch(fail);
  };

  function start(call: WatchCall, context: RequestContext, fail: (error: unknown) => void): void {
    try {
      if ((openByIdentity.get(context.identity) ?? 0) >= perIdentityMax) {
        throw new NodeError(
          "RESOURCE_EXHAUSTED",
          `${context.identity} holds ${perIdentityMax} watches on this node, its limit`,
        );
      }
    } catch (error) {
      fail(error);
      return;
    }
    let ended = false;
    /**
     * Runs `check` on the access records of the moment; if it throws (the token was revoked or
     * expired, the node sealed), ends the stream and leaves the hub once subscribe() has returned
     * (this may run inside it, replaying history). Answers whether the check passed.
     */
    const stillAllowed = (check: () => boolean): boolean => {
      try {
        return check();
      } catch (error) {
        if (!ended) sink.end(error as NodeError);
        queueMicrotask(() => unsubscribe());
        return false;
      }
    };
    const sink: WatchSink = {
      push: (event) => {
        // An event under a sub-path the caller may no longer read is skipped, not sent.
        if (ended || !stillAllowed(() => mayRead(context, event.path))) return true;
        return call.write(event);
      },
      progress: (revision) => {
        const tokenValid = () => {
          checkCaller(context);
          return true;
        };
        if (ended || !stillAllowed(tokenValid)) return true;
        return call.write({ revision, path: "", kind: ChangeKind.CHANGE_KIND_PROGRESS, version: 0 });
      },
      end: (error) => {
        ended = true;
        fail(error);
      },
    };
    let unsubscribe: () => void = () => {};
    try {
      const leave = hub.subscribe(
        call.request.prefix,
        call.request.fromRevision,
        sink,
        call.request.progressNotify,
      );
      openByIdentity.set(context.identity, (openByIdentity.get(context.identity) ?? 0) + 1);
      let left = false;
      unsubscribe = () => {
        if (left) return;
        left = true;
        leave();
        const open = (openByIdentity.get(context.identity) ?? 1) - 1;
        if (open === 0) openByIdentity.delete(context.identity);
        else openByIdentity.set(context.identity, open);
      };
    } catch (error) {
      fail(error);
      return;
    }
    // The response headers tell the client that its watch is in place, and from which revision
    // (a watch "from now" resumes after it, so a reconnection loses nothing even before the first
    // event). When history was replayed they went with the first event (a second send is ignored).
    // Not once the replay ended the stream (its token used up or revoked): its status went out
    // as trailers alone, and headers after them would be a second response.
    if (!ended) {
      const headers = new Metadata();
      headers.set(revisionHeader, String(appliedRevision()));
      call.sendMetadata(headers);
    }
    call.on("drain", () => {
      if (!ended) hub.drained(sink);
    });
    call.on("cancelled", () => unsubscribe());
    call.on("close", () => unsubscribe());
  }
}
