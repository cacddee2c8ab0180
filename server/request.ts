// What every request carries through the node, and the one place where cross-cutting concerns
// plug in: an interceptor chain around every handler (audit, authorization, rate limits),
// whether the request came from a client or was forwarded by a follower.

export interface RequestContext {
  /** The full gRPC method, e.g. "/strongroom.v1.Secrets/Put". */
  readonly method: string;
  /** The client's identity, from its verified certificate (on the node it first reached). */
  readonly identity: string;
  /** The token the client presented in its `authorization` metadata, or null. Never logged. */
  readonly token: string | null;
  /**
   * When the request must be answered by, a performance.now() time: every wait of the call (for a
   * leader, a read index, a forwarded answer) counts down on the monotonic clock, so a step of the
   * wall clock neither stretches nor cuts it. Converted from the caller's deadline once, as the
   * call arrives (workingDeadline).
   */
  readonly answerBy: number;
  /** The node that forwarded this request to the leader, or null when the client came here. */
  readonly forwardedBy: string | null;
  /** What the authorizer learned of the call, for the rest of it on this node. */
  readonly authorization: CallAuthorization;
}

/**
 * Kept on the call's context, not in a WeakMap keyed by it: an entry per call cost reads 2-4%
 * (docs/performance.md, eighteenth session).
 */
export interface CallAuthorization {
  /** The caller as the authorizer checked it (its `Caller`, server/access/authorizer.ts), or null. */
  caller: object | null;
  /**
   * Whether the caller's use-limited token has spent its use on this call, here or on the node
   * that forwarded it (it began running the call as leader, then lost the lead): a call spends
   * one use, where it runs (the authorizer's spendUse).
   */
  tokenUseSpent: boolean;
}

export type Handler<Request, Response> = (request: Request, context: RequestContext) => Promise<Response>;

/** What an interceptor knows of the method it runs around, besides its name (in the context). */
export interface MethodTraits {
  /** The method changes nothing (a read). */
  readonly readOnly: boolean;
}

/**
 * Runs around a handler; calls `next` to continue (or throws to refuse). An interceptor that lets
 * the call go on before its own work is done (the audit, while the request entry is written) hands
 * that work to `next` as `actAfter`: the end of the chain lets it settle before it acts on the call
 * on this node, and fails the call if it rejects.
 */
export type Interceptor = (
  context: RequestContext,
  request: unknown,
  next: (actAfter?: Promise<unknown>) => Promise<unknown>,
  method: MethodTraits,
) => Promise<unknown>;

/**
 * The end of an interceptor chain: runs the call, awaiting `actAfter` (what the interceptors handed
 * `next`, or null) before anything it does to the call here. Routing (server/executor.ts) forwards
 * a call to the leader without it: the leader records the call before it acts.
 */
export type ChainEnd<Request, Response> = (
  request: Request,
  context: RequestContext,
  actAfter: Promise<unknown> | null,
) => Promise<Response>;

/** Wraps `end`, a method with `traits`, in `interceptors`, the first outermost. */
export function intercepted<Request, Response>(
  interceptors: readonly Interceptor[],
  end: ChainEnd<Request, Response>,
  traits: MethodTraits,
): Handler<Request, Response> {
  return (request, context) => {
    const run = (position: number, actAfter: Promise<unknown> | null): Promise<unknown> => {
      const interceptor = interceptors[position];
      if (interceptor === undefined) return end(request, context, actAfter);
      return interceptor(
        context,
        request,
        (more) => run(position + 1, more === undefined ? actAfter : bothOf(actAfter, more)),
        traits,
      );
    };
    return run(0, null) as Promise<Response>;
  };
}

function bothOf(first: Promise<unknown> | null, second: Promise<unknown>): Promise<unknown> {
  const both = first === null ? second : Promise.all([first, second]);
  // A call forwarded to the leader does not await it (the interceptor that handed it over does):
  // its rejection must not surface as an unhandled one.
  both.catch(() => {});
  return both;
}

/**
 * The deadline a node works to (a performance.now() time: RequestContext.answerBy) when its caller
 * waits `givenMs` more: earlier by a reserve, at most a quarter of the time given, so that a
 * give-up (NO_LEADER after an election that did not end, a read no quorum confirmed) is answered -
 * its audit entries on disk, the answer sent and on its way back - while the caller still waits
 * for it, rather than the caller's own deadline ending the call with no reason. (Gave up 20 ms
 * before it, an answer behind an audit write on a loaded machine came too late: the client saw
 * DEADLINE_EXCEEDED, not NO_LEADER.)
 */
export function workingDeadline(givenMs: number, reserveMs: number): number {
  const given = Math.max(0, givenMs);
  return performance.now() + given - Math.min(reserveMs, Math.floor(given / 4));
}

/** The milliseconds left until `answerBy` (RequestContext.answerBy), whole and at least `least`. */
export function msLeft(answerBy: number, least = 0): number {
  return Math.max(least, Math.ceil(answerBy - performance.now()));
}
