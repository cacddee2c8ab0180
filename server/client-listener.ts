// The client port: Secrets, Sys, Cluster and Access (and gRPC health and reflection) over mutual
// TLS 1.3, trusting only the client CA (a peer certificate fails the handshake). Each call gets its
// context here - the identity from the verified certificate, the token from the `authorization`
// metadata, a deadline no later than the node's cap - and is run by the executor; streaming calls
// are audited and authorized here. Every error leaves through the one error table (errors.ts).

import {
  type handleClientStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  Metadata,
  Server,
  type ServiceDefinition,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { AccessService } from "../proto/gen/strongroom/v1/access.gen.js";
import {
  ClusterService,
  type RestoreSnapshotResponse,
  type SaveSnapshotRequest,
  type SnapshotChunk,
} from "../proto/gen/strongroom/v1/cluster.gen.js";
import { LeasesService } from "../proto/gen/strongroom/v1/leases.gen.js";
import { PkiService } from "../proto/gen/strongroom/v1/pki.gen.js";
import {
  SecretsService,
  type WatchEvent,
  type WatchRequest,
} from "../proto/gen/strongroom/v1/secrets.gen.js";
import { SysService } from "../proto/gen/strongroom/v1/sys.gen.js";
import { tokenOfAuthorization } from "./access/token-ids.js";
import type { AnyApiMethod } from "./api/api-method.js";
import type { AuditTrail } from "./audit/audit-trail.js";
import { leaderTrailer, NodeError, toServiceError } from "./errors.js";
import type { Executor } from "./executor.js";
import type { GrpcMetrics } from "./grpc-metrics.js";
import type { StandardServices } from "./grpc-standard-services.js";
import { type RequestContext, workingDeadline } from "./request.js";
import { serverCredentials } from "./tls/credentials.js";
import { type IdentitySource, requireClientIdentity } from "./tls/identity.js";
import type { TlsFiles } from "./tls/tls-files.js";

/** How long a stop waits for grpc-js to report its sessions gone after forcing them closed. */
const forcedShutdownWaitMs = 1000;
/**
 * How long a stop leaves connections to close after their GOAWAY (a client's request already on its
 * way is then refused, which grpc-js retries elsewhere, rather than cut) before, with no call in
 * flight, it closes whatever is left.
 */
const idleCloseAfterMs = 250;

export interface ClientListenerOptions {
  readonly address: string;
  readonly tls: TlsFiles;
  readonly executor: Executor;
  readonly secrets: Record<string, AnyApiMethod>;
  readonly sys: Record<string, AnyApiMethod>;
  readonly cluster: Record<string, AnyApiMethod>;
  readonly access: Record<string, AnyApiMethod>;
  readonly pki: Record<string, AnyApiMethod>;
  readonly leases: Record<string, AnyApiMethod>;
  readonly identitySource: IdentitySource;
  readonly timeoutMs: number;
  /** How long before a call's deadline the node stops waiting, to answer in time (request.ts workingDeadline). */
  readonly answerReserveMs: number;
  readonly messageBytesMax: number;
  /** Health and reflection. */
  readonly standard: StandardServices;
  /** The streaming methods: Secrets.Watch, Cluster.SaveSnapshot and Cluster.RestoreSnapshot. */
  readonly watch: ServerStreamHandler<WatchRequest, WatchEvent>;
  readonly saveSnapshot: ServerStreamHandler<SaveSnapshotRequest, SnapshotChunk>;
  readonly restoreSnapshot: ClientStreamHandler<SnapshotChunk, RestoreSnapshotResponse>;
  readonly metrics: GrpcMetrics;
  /** The leader this node knows of, sent with every answer so a client can go there next time. */
  readonly leaderId: () => string | null;
  /** Records the streaming calls too (unary ones are recorded by the executor's interceptors). */
  readonly audit: AuditTrail;
  /** Authorizes the streaming calls (unary ones are authorized by the executor's interceptors). */
  readonly authorize: (context: RequestContext, request: unknown) => Promise<void>;
  /** Calls (HTTP/2 streams) one connection may have open at once. */
  readonly streamsPerConnectionMax: number;
  /** How often each connection is pinged, and how long an answer may take before it is closed. */
  readonly keepalive: { readonly intervalMs: number; readonly timeoutMs: number };
}

/** A server-streaming handler, given the call's context (audited and authorized already). */
export type ServerStreamHandler<Request, Response> = (
  call: Parameters<handleServerStreamingCall<Request, Response>>[0],
  context: RequestContext,
) => void;

/** A client-streaming handler, given the call's context (audited and authorized already). */
export type ClientStreamHandler<Request, Response> = (
  call: Parameters<handleClientStreamingCall<Request, Response>>[0],
  callback: Parameters<handleClientStreamingCall<Request, Response>>[1],
  context: RequestContext,
) => void;

export interface ClientListener {
  readonly port: number;
  /** Stops taking calls; calls in flight get until `graceMs` to finish. */
  close(graceMs: number): Promise<void>;
}

/**
 * The calls being served (strongroom's services; health and reflection are not counted, and a
 * stop does not wait for them): what a stop waits for. grpc-js's tryShutdown also waits for every
 * connection to close, and one accepted as the shutdown began it never closes: such an idle
 * connection held a stop for its whole grace (5 s, seen in chaos runs when a client reconnected
 * to a node that had just been handed the leadership as it stopped).
 */
class CallsInFlight {
  private count = 0;

  /** Counts a call until the returned function is first called. */
  begin(): () => void {
    this.count += 1;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.count -= 1;
    };
  }

  none(): boolean {
    return this.count === 0;
  }
}

export async function startClientListener(options: ClientListenerOptions): Promise<ClientListener> {
  const inFlight = new CallsInFlight();
  const server = new Server({
    // An oversized request is refused by gRPC (RESOURCE_EXHAUSTED) before it is decoded.
    "grpc.max_receive_message_length": options.messageBytesMax,
    "grpc.max_send_message_length": options.messageBytesMax,
    "grpc.max_concurrent_streams": options.streamsPerConnectionMax,
    // Every connection, busy or idle, is pinged: one whose client is gone without a word (its host
    // crashed, its link was cut) is closed, and its streams end, freeing its watches' places.
    "grpc.keepalive_time_ms": options.keepalive.intervalMs,
    "grpc.keepalive_timeout_ms": options.keepalive.timeoutMs,
    // channelz stays on for servers: grpc-js 1.14 tracks a server's sessions for forceShutdown
    // only with it, so without it a stop waited out every open stream (a Watch) to its deadline.
  });
  const services: [ServiceDefinition, Record<string, AnyApiMethod>][] = [
    [SecretsService, options.secrets],
    [SysService, options.sys],
    [ClusterService, options.cluster],
    [AccessService, options.access],
    [PkiService, options.pki],
    [LeasesService, options.leases],
  ];
  for (const [definition, methods] of services) {
    const implementation: UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(methods))
      implementation[name] = unary(method, options, inFlight);
    if (definition === SecretsService) {
      implementation.watch = auditedServerStream(SecretsService.watch.path, options.watch, options, inFlight);
    }
    if (definition === ClusterService) {
      implementation.saveSnapshot = auditedServerStream(
        ClusterService.saveSnapshot.path,
        options.saveSnapshot,
        options,
        inFlight,
      );
      implementation.restoreSnapshot = auditedClientStream(
        ClusterService.restoreSnapshot.path,
        options.restoreSnapshot,
        options,
        inFlight,
      );
    }
    server.addService(definition, implementation);
  }
  options.standard.addTo(server);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.address, serverCredentials(options.tls), (error, bound) =>
      error === null ? resolve(bound) : reject(error),
    );
  });
  return {
    port,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        // forceShutdown ends every session grpc-js tracks, which lets tryShutdown's callback come;
        // a session it lost track of would hold that callback, and the node's stop, forever (a CI
        // run once waited 30 s here after a client's connection had gone silent): a second after
        // forcing, the stop goes on anyway.
        // Calls in flight get the grace; idle connections left after idleCloseAfterMs are closed.
        let giveUp: NodeJS.Timeout | null = null;
        const force = () => {
          clearTimeout(graceOver);
          clearInterval(idleCheck);
          if (giveUp !== null) return;
          server.forceShutdown();
          giveUp = setTimeout(resolve, forcedShutdownWaitMs);
        };
        const graceOver = setTimeout(force, graceMs);
        const closingSince = performance.now();
        const idleCheck = setInterval(() => {
          if (performance.now() - closingSince >= idleCloseAfterMs && inFlight.none()) force();
        }, 20);
        server.tryShutdown(() => {
          clearTimeout(graceOver);
          clearInterval(idleCheck);
          if (giveUp !== null) clearTimeout(giveUp);
          resolve();
        });
      }),
  };
}

function unary(
  method: AnyApiMethod,
  options: ClientListenerOptions,
  inFlight: CallsInFlight,
): handleUnaryCall<unknown, unknown> {
  return (call, rawCallback) => {
    const ended = inFlight.begin();
    const done = options.metrics.start(method.definition.path);
    const callback: typeof rawCallback = (error, response) => {
      ended();
      done(error === null ? status.OK : (error.code ?? status.UNKNOWN));
      if (error !== null) {
        rawCallback(error, response);
        return;
      }
      const trailer = new Metadata();
      const leader = options.leaderId();
      if (leader !== null) trailer.set(leaderTrailer, leader);
      rawCallback(null, response, trailer);
    };
    let context: RequestContext;
    try {
      context = callContext(method.definition.path, call, options);
    } catch (error) {
      callback(toServiceError(error));
      return;
    }
    options.executor.execute(method, call.request, context).then(
      (response) => callback(null, response),
      (error: unknown) => callback(toServiceError(error)),
    );
  };
}

/** What the node knows of a call: who (certificate identity, token), what, and until when. */
function callContext(
  method: string,
  call: {
    getAuthContext(): { sslPeerCertificate?: Parameters<typeof requireClientIdentity>[0] } | null;
    getDeadline(): Date | number;
    metadata: Metadata;
  },
  options: ClientListenerOptions,
): RequestContext {
  const identity = requireClientIdentity(call.getAuthContext()?.sslPeerCertificate, options.identitySource);
  // Two values are joined, so the authorizer refuses them as one malformed token.
  const authorization = call.metadata.get("authorization").map(String).join(",");
  const token = tokenOfAuthorization(authorization);
  // grpc-js gives the caller's deadline as a wall-clock time; the node counts what is left of it
  // on the monotonic clock from here on.
  const clientDeadline = call.getDeadline();
  const givenMs = (clientDeadline instanceof Date ? clientDeadline.getTime() : clientDeadline) - Date.now();
  return {
    method,
    identity,
    token,
    answerBy: workingDeadline(Math.min(givenMs, options.timeoutMs), options.answerReserveMs),
    forwardedBy: null,
    authorization: { caller: null, tokenUseSpent: false },
  };
}

/** A server-streaming handler with its request entry before it starts and its response entry when it ends. */
function auditedServerStream<Request, Response>(
  method: string,
  handler: ServerStreamHandler<Request, Response>,
  options: ClientListenerOptions,
  inFlight: CallsInFlight,
): handleServerStreamingCall<Request, Response> {
  return (call) => {
    const ended = inFlight.begin();
    for (const event of ["finish", "cancelled", "error", "close"]) call.once(event, ended);
    let context: RequestContext;
    try {
      // A stream lives as long as the client keeps it: its deadline is for the set-up only.
      context = callContext(method, call, options);
    } catch (error) {
      call.emit("error", toServiceError(error));
      return;
    }
    options.audit.begin(context, call.request).then(
      async (finish) => {
        try {
          await options.authorize(context, call.request);
        } catch (error) {
          await finish(error).catch(() => {});
          call.emit("error", toServiceError(error));
          return;
        }
        let finished = false;
        const once = (error: unknown) => {
          if (finished) return;
          finished = true;
          finish(error).catch(() => {});
        };
        call.on("error", (error: unknown) => once(error));
        call.on("finish", () => once(null));
        call.on("cancelled", () =>
          once(new NodeError("DEADLINE_EXCEEDED", "the client cancelled the stream")),
        );
        handler(call, context);
      },
      (error: unknown) => call.emit("error", toServiceError(error)),
    );
  };
}

/** A client-streaming handler with its request entry when it starts and its response entry with the answer. */
function auditedClientStream<Request, Response>(
  method: string,
  handler: ClientStreamHandler<Request, Response>,
  options: ClientListenerOptions,
  inFlight: CallsInFlight,
): handleClientStreamingCall<Request, Response> {
  return (call, rawCallback) => {
    const ended = inFlight.begin();
    call.once("cancelled", ended);
    const callback: typeof rawCallback = (error, value) => {
      ended();
      rawCallback(error, value);
    };
    let context: RequestContext;
    try {
      context = callContext(method, call, options);
    } catch (error) {
      callback(toServiceError(error));
      return;
    }
    // The request entry must be on disk, and the caller authorized, before the stream's data is
    // taken: pause it until then.
    call.pause();
    options.audit.begin(context, {}).then(
      async (finish) => {
        try {
          await options.authorize(context, {});
        } catch (error) {
          await finish(error).catch(() => {});
          callback(toServiceError(error));
          return;
        }
        handler(
          call,
          (error, value) => {
            finish(error ?? null).catch(() => {});
            callback(error, value);
          },
          context,
        );
        call.resume();
      },
      (error: unknown) => callback(toServiceError(error)),
    );
  };
}
