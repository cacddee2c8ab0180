// One API method as the node serves it: the generated gRPC definition (path and serialization),
// where it runs (on the leader, forwarded there by a follower; or on the node that received it),
// and its handler. The same table serves the client port and forwarded requests, so a forwarded
// request runs exactly the code a direct one does.

import type { Handler } from "../request.js";

/** The part of a ts-proto grpc-js method definition the node needs. */
export interface MethodDefinition<Request, Response> {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestSerialize: (value: Request) => Buffer;
  readonly requestDeserialize: (value: Buffer) => Request;
  readonly responseSerialize: (value: Response) => Buffer;
  readonly responseDeserialize: (value: Buffer) => Response;
}

/**
 * "leader": writes and operations that propose (a follower forwards them to the leader); "local":
 * reads and status, run on the node that took the call; "peer": asked of one particular node by
 * another (over the peer channel, like a forwarded call) and run there.
 */
export type Route = "leader" | "local" | "peer";

export interface ApiMethod<Request, Response> {
  readonly definition: MethodDefinition<Request, Response>;
  readonly route: Route;
  /**
   * Changes nothing (a read; a Get notes itself in this node's read tracker, nothing else): it
   * runs while its audit request entry is written, and is answered once that entry is written
   * (audit-trail.ts).
   */
  readonly readOnly: boolean;
  readonly handler: Handler<Request, Response>;
  /** Checked on the node the client reached, before the request is routed (e.g. "not sealed"). */
  readonly guard?: () => void;
}

// biome-ignore lint/suspicious/noExplicitAny: a table holds methods of many request and response types.
export type AnyApiMethod = ApiMethod<any, any>;

export function method<Request, Response>(
  definition: MethodDefinition<Request, Response>,
  route: Route,
  handler: Handler<Request, Response>,
  guard?: () => void,
): ApiMethod<Request, Response> {
  const readOnly = false;
  return guard === undefined
    ? { definition, route, readOnly, handler }
    : { definition, route, readOnly, handler, guard };
}

/** A read: runs on the node that took the call ("local") and changes nothing. */
export function readMethod<Request, Response>(
  definition: MethodDefinition<Request, Response>,
  handler: Handler<Request, Response>,
  guard: () => void,
): ApiMethod<Request, Response> {
  return { definition, route: "local", readOnly: true, handler, guard };
}
