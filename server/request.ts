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
  /** When the request must be answered by (ms since the epoch). */
  readonly deadline: number;
  /** The node that forwarded this request to the leader, or null when the client came here. */
  readonly forwardedBy: string | null;
}

export type Handler<Request, Response> = (request: Request, context: RequestContext) => Promise<Response>;

/** What an interceptor knows of the method it runs around, besides its name (in the context). */
export interface MethodTraits {
  /** The method changes nothing (a read). */
  readonly readOnly: boolean;
}

/** Runs around a handler; calls `next` to continue (or throws to refuse). */
export type Interceptor = (
  context: RequestContext,
  request: unknown,
  next: () => Promise<unknown>,
  method: MethodTraits,
) => Promise<unknown>;

/** Wraps `handler`, a method with `traits`, in `interceptors`, the first outermost. */
export function intercepted<Request, Response>(
  interceptors: readonly Interceptor[],
  handler: Handler<Request, Response>,
  traits: MethodTraits,
): Handler<Request, Response> {
  return (request, context) => {
    const run = (position: number): Promise<unknown> => {
      const interceptor = interceptors[position];
      if (interceptor === undefined) return handler(request, context);
      return interceptor(context, request, () => run(position + 1), traits);
    };
    return run(0) as Promise<Response>;
  };
}

/** Milliseconds left before the request's deadline (never negative). */
export function remainingMs(context: RequestContext): number {
  return Math.max(0, context.deadline - Date.now());
}
