// The TypeScript SDK: createClient({ endpoints, tls, token }) gives a typed method for every unary
// RPC of the six services (client.secrets.put, client.sys.sealStatus, client.cluster.members,
// client.access.createToken, client.pki.issue, client.leases.revoke, ...), each with a deadline, retries where they are safe
// (retry-policy.ts), per-endpoint circuit breakers and leader preference (endpoint-pool.ts); a
// Watch that reconnects (watcher.ts); and an opt-in read cache (read-cache.ts).

import { randomUUID } from "node:crypto";
import { type Client, type ClientReadableStream, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { BrokenCircuitError } from "cockatiel";
import { AccessService } from "../proto/gen/strongroom/v1/access.gen.js";
import {
  ClusterService,
  type RestoreSnapshotResponse,
  type SnapshotChunk,
} from "../proto/gen/strongroom/v1/cluster.gen.js";
import { LeasesService } from "../proto/gen/strongroom/v1/leases.gen.js";
import { PkiService } from "../proto/gen/strongroom/v1/pki.gen.js";
import {
  Consistency,
  type GetRequest,
  type GetResponse,
  SecretsService,
} from "../proto/gen/strongroom/v1/secrets.gen.js";
import { SysService } from "../proto/gen/strongroom/v1/sys.gen.js";
import { type ClientTls, type ClientTlsFiles, tlsCredentials, withToken } from "./credentials.js";
import { type Endpoint, type EndpointOrder, EndpointPool, type EndpointStats } from "./endpoint-pool.js";
import { fromServiceError, leaderTrailer, StrongroomError } from "./errors.js";
import { ReadCache, type ReadCacheOptions, type ReadCacheStats } from "./read-cache.js";
import { backoffMs, decide, isEndpointFailure, nextWait, refusesUntilOperatorActs } from "./retry-policy.js";
import { startWatch, type Watch, type WatchHandlers } from "./watcher.js";

/** Where the SDK sends linearizable reads first: ClientOptions.readRouting. */
export type ReadRouting = "balanced" | "sticky";

export interface ClientOptions {
  /** Node client addresses, "host:port": a list, or one string with commas. */
  readonly endpoints: readonly string[] | string;
  readonly tls: ClientTls | ClientTlsFiles;
  /** The token to send, or a function read at every call (null: none). */
  readonly token?: string | null | (() => string | null);
  /** Each call's deadline, retries included (default 10 s). */
  readonly deadlineMs?: number;
  /**
   * Reads, and writes with a request id (every Secrets write): how long one attempt may wait
   * before the next endpoint is tried (default 2 s). A paused or stalled node would otherwise hold
   * the call to its deadline. Other writes are not retried once they may have been sent (their
   * outcome is unknown), so they wait out the deadline.
   */
  readonly attemptTimeoutMs?: number;
  /**
   * The same calls, while one attempt waits longer than this (default 250 ms): the client asks
   * every endpoint for Cluster.Status, and again every half of it. Once the attempt's node has
   * left that question unanswered this long, and another node names a leader other than it, the
   * node is taken as stalled (paused, hung) and the call goes on there at once; else it waits on,
   * up to `attemptTimeoutMs`. A paused leader then holds a write for about the election that
   * replaces it, not `attemptTimeoutMs`. A node that is only slow answers Cluster.Status and
   * keeps the call.
   */
  readonly stallCheckMs?: number;
  /**
   * While a call is open on a node's connection (a Watch, above all), the client pings the node
   * every `intervalMs` (default 5 s) and drops the connection when a ping is not answered within
   * `timeoutMs` (default 5 s). A stream's node that is paused, hung or cut off answers nothing and
   * closes nothing: without the pings a Watch there would wait, silent, for as long as that lasts;
   * with them it moves to another endpoint within their sum, from the last revision it delivered.
   * An idle connection is not pinged.
   */
  readonly keepalive?: { readonly intervalMs?: number; readonly timeoutMs?: number };
  /** Backoff between attempts: full jitter up to base·2^attempt, capped (default 50 ms, 2 s). */
  readonly retry?: { readonly baseMs?: number; readonly maxMs?: number };
  /**
   * The order in which this client tries its endpoints. "random" (the default): its own random
   * order, so that applications given the same list spread their calls, and their failovers, over
   * the members instead of all starting at the first. "given": the list's order, for a list already
   * in order of preference.
   */
  readonly endpointOrder?: EndpointOrder;
  /**
   * Where linearizable reads (Secrets, Access, PKI and Leases reads) go first. "sticky" (the
   * default): to the endpoint that answered such a read last (at first, the first endpoint in the
   * client's order), which a write's answer from the leader does not change. "balanced": to the
   * cheaper of two endpoints picked at random, by their reads' latency (peak EWMA) times the reads
   * in flight there, so that reads use every node and a slow node gets few; they then travel on
   * every endpoint's connection, and on a cluster whose nodes share one machine that cost about
   * twice the CPU per read, on the nodes and in the client (docs/sdk.md). Stale reads
   * (`CONSISTENCY_STALE`) go where other calls go either way, to the endpoint that answered last:
   * a node's local state may be behind another's, and moving between them would let a value go
   * back in time more often.
   */
  readonly readRouting?: ReadRouting;
  /** Per endpoint (default: open after 5 connection failures in a row, try again after 5 s). */
  readonly breaker?: { readonly consecutiveFailures?: number; readonly halfOpenAfterMs?: number };
  /**
   * The client's region: calls go first to endpoints whose node is in it (learned from
   * Cluster.Status), writes to the leader first wherever it is (docs/multi-region.md).
   */
  readonly region?: string;
  /**
   * Whether Secrets writes get a request id, which makes them safe to retry after any failure
   * (default true). Remembering the ids costs the cluster CPU on every write (docs/performance.md,
   * twenty-first session); without them a write whose outcome is unknown fails with
   * `outcomeUnknown` instead of being retried. A `requestId` the caller gives is always sent.
   */
  readonly requestIds?: boolean;
  /** The read cache for secrets.get of the newest version; off unless given (see docs/sdk.md). */
  readonly cache?: Partial<ReadCacheOptions> & {
    /** Prefixes to watch for changes, dropping cached entries as they change (needs read on each). */
    readonly watchPrefixes?: readonly string[];
  };
}

/** A watch that drops the read cache's entries as their secrets change (cache.watchPrefixes). */
export interface CacheWatchState {
  readonly prefix: string;
  /** The stream is in place: changes under the prefix drop their entries as they happen. */
  open: boolean;
  /** Why it last failed (a token without read on the prefix, say), until it opens again. */
  lastError: string | null;
}

/** The read cache's counters and its watches: while one is not open, entries live out their TTL. */
export interface CacheStats extends ReadCacheStats {
  readonly watches: readonly CacheWatchState[];
}

export interface CallOptions {
  readonly deadlineMs?: number;
  /**
   * One of the client's endpoints (host:port, as given): the call goes there and nowhere else (an
   * attempt that may be retried is retried there, inside the deadline). For calls about one node
   * on a client with several endpoints: `sys.unseal` and `sys.seal` act on the node they reach,
   * `sys.sealStatus` and `cluster.status` describe it. A read cache is not asked for such a call.
   */
  readonly endpoint?: string;
}

interface UnaryDefinition {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestSerialize: (value: never) => Buffer;
  readonly requestDeserialize: (value: Buffer) => unknown;
  readonly responseDeserialize: (value: Buffer) => unknown;
}

/**
 * A promise-returning method for every unary RPC of a generated service definition. A request's
 * fields may be left out: they take the proto defaults (version 0 is the newest, consistency 0 is
 * linearizable, ...).
 */
export type UnaryMethods<Service> = {
  [Name in keyof Service as Service[Name] extends {
    readonly requestStream: false;
    readonly responseStream: false;
  }
    ? Name
    : never]: Service[Name] extends {
    readonly requestSerialize: (value: infer Request) => Buffer;
    readonly responseDeserialize: (value: Buffer) => infer Response;
  }
    ? (request: Partial<Request>, options?: CallOptions) => Promise<Response>
    : never;
};

/** Calls that change nothing: retried after any transient failure, on any node. */
const readOnly = new Set<string>([
  SecretsService.get.path,
  SecretsService.list.path,
  SecretsService.getMetadata.path,
  SecretsService.history.path,
  SysService.sealStatus.path,
  SysService.auditHash.path,
  SysService.auditKey.path,
  ClusterService.status.path,
  ClusterService.members.path,
  AccessService.readPolicy.path,
  AccessService.listPolicies.path,
  AccessService.listBindings.path,
  AccessService.lookupToken.path,
  AccessService.capabilities.path,
  AccessService.readTokenRole.path,
  AccessService.listTokenRoles.path,
  AccessService.listDisabledIdentities.path,
  PkiService.getCa.path,
  PkiService.getCrl.path,
  PkiService.readRole.path,
  PkiService.listRoles.path,
  LeasesService.list.path,
  LeasesService.lookup.path,
]);

/** Reads about the node that answers them (its seal, its audit file, its view of the cluster). */
const aboutTheNode = new Set<string>([
  SysService.sealStatus.path,
  SysService.auditHash.path,
  SysService.auditKey.path,
  ClusterService.status.path,
  ClusterService.members.path,
]);

/**
 * Reads of the replicated state, which every node answers alike when linearizable: balanced over
 * the endpoints with readRouting "balanced", else sticky to their own endpoint. Reads about the
 * node go where other calls go.
 */
const stateReads = new Set<string>([...readOnly].filter((path) => !aboutTheNode.has(path)));

/** Calls that only make sense on the node they are sent to: never moved to another endpoint. */
const nodeLocal = new Set<string>([SysService.unseal.path, SysService.seal.path]);

/** Reads sent to the leader first when it is known: only the leader knows the members' progress. */
const leaderFirst = new Set<string>([ClusterService.members.path]);

export class StrongroomClient {
  readonly secrets: UnaryMethods<typeof SecretsService>;
  readonly sys: UnaryMethods<typeof SysService>;
  readonly cluster: UnaryMethods<typeof ClusterService>;
  readonly access: UnaryMethods<typeof AccessService>;
  /** The PKI engine: the internal CA, roles, issued certificates and the revocation list. */
  readonly pki: UnaryMethods<typeof PkiService>;
  /** Leases of tokens and issued certificates. */
  readonly leases: UnaryMethods<typeof LeasesService>;
  private readonly pool: EndpointPool;
  private readonly deadlineMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly stallCheckMs: number;
  private readonly requestIds: boolean;
  private readonly balanceReads: boolean;
  private readonly retry: { baseMs: number; maxMs: number };
  private readonly cache: ReadCache<GetResponse> | null;
  /** The state of each watch that keeps the cache's entries fresh (cache.watchPrefixes). */
  private readonly cacheWatches: CacheWatchState[] = [];
  /** Every watch open (the cache's too): close() ends them, as gRPC leaves a stream open past its channel's close. */
  private readonly watches = new Set<Watch>();
  /** Set by close(): every later call fails with a message that says so. */
  private closed = false;

  constructor(options: ClientOptions) {
    const endpoints = (
      typeof options.endpoints === "string" ? options.endpoints.split(",") : [...options.endpoints]
    )
      .map((endpoint) => endpoint.trim())
      .filter((endpoint) => endpoint !== "");
    if (endpoints.length === 0) throw new TypeError("createClient: give at least one endpoint (host:port)");
    for (const endpoint of endpoints) {
      if (!/^[^\s:]+:\d{1,5}$/.test(endpoint) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(endpoint))
        throw new TypeError(`createClient: ${JSON.stringify(endpoint)} is not host:port`);
    }
    const token = options.token;
    const tokenOf = typeof token === "function" ? token : () => token ?? null;
    this.deadlineMs = positive(options.deadlineMs ?? 10_000, "deadlineMs");
    this.attemptTimeoutMs = positive(options.attemptTimeoutMs ?? 2000, "attemptTimeoutMs");
    this.stallCheckMs = positive(options.stallCheckMs ?? 250, "stallCheckMs");
    this.requestIds = options.requestIds ?? true;
    const readRouting = options.readRouting ?? "sticky";
    if (readRouting !== "balanced" && readRouting !== "sticky")
      throw new TypeError(
        `createClient: readRouting is "balanced" or "sticky", not ${JSON.stringify(readRouting)}`,
      );
    this.balanceReads = readRouting === "balanced";
    const endpointOrder = options.endpointOrder ?? "random";
    if (endpointOrder !== "random" && endpointOrder !== "given")
      throw new TypeError(
        `createClient: endpointOrder is "random" or "given", not ${JSON.stringify(endpointOrder)}`,
      );
    this.retry = {
      baseMs: positive(options.retry?.baseMs ?? 50, "retry.baseMs"),
      maxMs: positive(options.retry?.maxMs ?? 2000, "retry.maxMs"),
    };
    const tlsFor = tlsCredentials(options.tls);
    const keepalive = {
      "grpc.keepalive_time_ms": positive(options.keepalive?.intervalMs ?? 5000, "keepalive.intervalMs"),
      "grpc.keepalive_timeout_ms": positive(options.keepalive?.timeoutMs ?? 5000, "keepalive.timeoutMs"),
    };
    this.pool = new EndpointPool(
      endpoints,
      (address) => {
        const tls = tlsFor(address);
        return {
          credentials: withToken(tls.credentials, tokenOf),
          options: { ...tls.options, ...keepalive },
        };
      },
      {
        consecutiveFailures: positive(
          options.breaker?.consecutiveFailures ?? 5,
          "breaker.consecutiveFailures",
        ),
        halfOpenAfterMs: positive(options.breaker?.halfOpenAfterMs ?? 5000, "breaker.halfOpenAfterMs"),
      },
      options.region === undefined || options.region === "" ? null : options.region,
      endpointOrder,
    );
    this.cache =
      options.cache === undefined
        ? null
        : new ReadCache<GetResponse>({
            ttlMs: positive(options.cache.ttlMs ?? 30_000, "cache.ttlMs"),
            jitter: fraction(options.cache.jitter ?? 0.1, "cache.jitter"),
            maxEntries: positive(options.cache.maxEntries ?? 1000, "cache.maxEntries"),
            staleIfError: options.cache.staleIfError ?? true,
          });
    this.secrets = this.methods(SecretsService);
    this.sys = this.methods(SysService);
    this.cluster = this.methods(ClusterService);
    this.access = this.methods(AccessService);
    this.pki = this.methods(PkiService);
    this.leases = this.methods(LeasesService);
    if (this.cache !== null && options.cache !== undefined) {
      const get = this.secrets.get;
      const cache = this.cache;
      this.secrets = {
        ...this.secrets,
        get: (request: Partial<GetRequest>, callOptions?: CallOptions) =>
          (request.version ?? 0) !== 0 || request.path === undefined || callOptions?.endpoint !== undefined
            ? get(request, callOptions)
            : cache.get(request.path, () => get(request, callOptions).then(withOwnValue), isUnreachable),
      };
      for (const prefix of options.cache.watchPrefixes ?? []) {
        // Kept for cacheStats(): a watch the token may not open fails quietly, and entries then
        // live out their TTL however their secrets change.
        const state: CacheWatchState = { prefix, open: false, lastError: null };
        this.cacheWatches.push(state);
        const failed = (error: StrongroomError) => {
          state.open = false;
          state.lastError = error.message;
        };
        this.watch(prefix, 0, {
          onEvent: (event) => cache.invalidate(event.path),
          onOpen: () => {
            state.open = true;
            state.lastError = null;
          },
          onError: failed,
          onEnd: failed,
          onGap: () => cache.clear(),
        });
      }
    }
  }

  /** Follows changes under `prefix` (from now, or after `fromRevision`), reconnecting as needed. */
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Watch {
    this.requireOpen();
    const started = startWatch(this.pool, prefix, fromRevision, handlers, this.retry);
    const watch: Watch = {
      close: () => {
        this.watches.delete(watch);
        started.close();
      },
    };
    this.watches.add(watch);
    return watch;
  }

  /**
   * A consistent copy of the whole state (ciphertext only), chunk by chunk, from the first node
   * that serves it; `onChunk` may be async (the stream waits for it). Resolves when the last chunk,
   * with its SHA-256, has arrived. A node that fails before its first chunk is passed over for the
   * next; one that fails after it fails the save (the caller starts again).
   */
  async saveSnapshot(onChunk: (chunk: SnapshotChunk) => void | Promise<void>): Promise<void> {
    this.requireOpen();
    let lastError: unknown = null;
    for (const endpoint of this.pool.order(false)) {
      let delivered = false;
      try {
        const stream = endpoint.client.makeServerStreamRequest(
          ClusterService.saveSnapshot.path,
          ClusterService.saveSnapshot.requestSerialize,
          ClusterService.saveSnapshot.responseDeserialize,
          {},
          new Metadata(),
          {},
        ) as ClientReadableStream<SnapshotChunk>;
        for await (const chunk of stream) {
          delivered = true;
          await onChunk(chunk as SnapshotChunk);
        }
        return;
      } catch (error) {
        const failure =
          typeof (error as ServiceError).code === "number"
            ? fromServiceError(error as ServiceError, endpoint.address, 1)
            : error;
        // Another node may serve it; a refusal (permission, sealed) is the answer. Once chunks
        // were handed on, another node's would follow them as if one snapshot: the caller starts
        // again instead.
        if (!(failure instanceof StrongroomError) || failure.code !== status.UNAVAILABLE || delivered)
          throw failure;
        lastError = failure;
      }
    }
    throw lastError;
  }

  /**
   * Loads a saved snapshot into a new, uninitialized cluster, through its leader. `chunks` is the
   * snapshot's chunks, or what reads them from the start (called again for each node tried, so a
   * large snapshot streams from its file instead of being held).
   */
  async restoreSnapshot(
    chunks: readonly SnapshotChunk[] | (() => AsyncIterable<SnapshotChunk>),
  ): Promise<RestoreSnapshotResponse> {
    this.requireOpen();
    const source = typeof chunks === "function" ? chunks : () => chunks;
    let lastError: unknown = null;
    for (const endpoint of this.pool.order(true)) {
      try {
        return await new Promise<RestoreSnapshotResponse>((resolve, reject) => {
          let answered = false;
          // Wakes a send waiting for "drain" once the answer is in (no drain comes then).
          let wake: (() => void) | null = null;
          const call = endpoint.client.makeClientStreamRequest(
            ClusterService.restoreSnapshot.path,
            ClusterService.restoreSnapshot.requestSerialize,
            ClusterService.restoreSnapshot.responseDeserialize,
            new Metadata(),
            { deadline: Date.now() + Math.max(this.deadlineMs, 60_000) },
            (error, response) => {
              answered = true;
              wake?.();
              if (error === null) resolve(response as RestoreSnapshotResponse);
              else reject(error);
            },
          );
          const send = async () => {
            for await (const chunk of source()) {
              // Refused early (not the leader, too large): the answer is in, stop sending.
              if (answered) return;
              if (!call.write(chunk) && !answered)
                await new Promise<void>((drained) => {
                  wake = drained;
                  call.once("drain", drained);
                });
            }
            call.end();
          };
          send().catch((error: unknown) => {
            // Reading the snapshot failed: the node gets a cancellation, the caller the error.
            call.cancel();
            reject(new SnapshotSourceError(error));
          });
        });
      } catch (error) {
        if (error instanceof SnapshotSourceError) throw error.cause;
        const failure = fromServiceError(error as ServiceError, endpoint.address, 1);
        // Only the leader takes a restore: the others answer NO_LEADER (with a hint).
        if (failure.reason !== "NO_LEADER" && failure.code !== status.UNAVAILABLE) throw failure;
        lastError = failure;
      }
    }
    throw lastError;
  }

  /** The read cache's counters (all zero when the cache is off), and its watches' state. */
  cacheStats(): CacheStats {
    const counters = this.cache?.stats() ?? {
      hits: 0,
      misses: 0,
      staleServed: 0,
      hitRatio: 0,
      entries: 0,
      lastStaleAgeMs: 0,
    };
    return { ...counters, watches: this.cacheWatches.map((state) => ({ ...state })) };
  }

  /**
   * Each endpoint's address, node id (once known), balanced reads in flight, their latency
   * estimate and its circuit breaker's state: how this client spreads its reads, and why.
   */
  endpointStats(): EndpointStats[] {
    return this.pool.endpointStats();
  }

  close(): void {
    this.closed = true;
    for (const watch of [...this.watches]) watch.close();
    this.pool.close();
  }

  /** A call on a closed client fails saying so (grpc-js's own words: "Channel has been shut down"). */
  private requireOpen(): void {
    if (this.closed)
      throw new StrongroomError(
        "this client is closed (close() was called): make a new one",
        status.CANCELLED,
        "",
      );
  }

  private methods<Service extends object>(service: Service): UnaryMethods<Service> {
    const methods: Record<string, (request: unknown, options?: CallOptions) => Promise<unknown>> = {};
    for (const [name, definition] of Object.entries(service) as [string, UnaryDefinition][]) {
      if (definition.requestStream || definition.responseStream) continue;
      // The proto defaults, as an empty message decodes.
      const defaults = definition.requestDeserialize(Buffer.alloc(0)) as object;
      // A write whose message has a request id gets one (unless the caller gave it, or the client
      // was made with requestIds: false), the same in every attempt: the cluster applies it once
      // however often it is sent, so it is retried as a read is, and its outcome is never left
      // unknown while the deadline allows another attempt.
      const takesRequestId = "requestId" in defaults;
      methods[name] = (request, options) => {
        const deadlineMs = options?.deadlineMs ?? this.deadlineMs;
        // 0 or less used to fail DEADLINE_EXCEEDED "after 0.001s", as if a node were slow.
        if (!Number.isFinite(deadlineMs) || deadlineMs <= 0)
          return Promise.reject(
            new TypeError(`${name}: deadlineMs must be a positive number of milliseconds, got ${deadlineMs}`),
          );
        let only: Endpoint | null = null;
        if (options?.endpoint !== undefined) {
          only = this.pool.endpoints.find((endpoint) => endpoint.address === options.endpoint) ?? null;
          if (only === null)
            return Promise.reject(
              new TypeError(
                `${name}: endpoint ${JSON.stringify(options.endpoint)} is not one of this client's (${this.pool.endpoints.map((endpoint) => endpoint.address).join(", ")})`,
              ),
            );
        }
        const full: Record<string, unknown> = { ...defaults, ...(request as object) };
        if (takesRequestId && full.requestId === undefined && this.requestIds) full.requestId = randomUUID();
        const withRequestId = takesRequestId && full.requestId !== undefined;
        const called = this.invoke(definition, full, deadlineMs, withRequestId, only);
        if (!withRequestId) return called;
        return called.catch((error: unknown) => {
          if (error instanceof StrongroomError) error.requestId = String(full.requestId);
          throw error;
        });
      };
    }
    return methods as UnaryMethods<Service>;
  }

  /**
   * One call: attempts on the endpoints in order, retrying what is safe to retry (a read, or a
   * write with a request id), inside the deadline; on `only` alone when the caller named it.
   */
  private async invoke(
    definition: UnaryDefinition,
    request: unknown,
    deadlineMs: number,
    withRequestId = false,
    only: Endpoint | null = null,
  ): Promise<unknown> {
    this.requireOpen();
    const deadline = Date.now() + deadlineMs;
    const write = !readOnly.has(definition.path);
    const idempotent = !write || withRequestId;
    await this.pool.located();
    // A call sent to one endpoint (CallOptions.endpoint) neither measures nor moves the reads.
    const stateRead = only === null && stateReads.has(definition.path) && !asksStale(request);
    const balanced = stateRead && this.balanceReads;
    const sticky = stateRead && !this.balanceReads;
    const endpoints =
      only !== null
        ? [only]
        : balanced
          ? this.pool.balancedOrder()
          : sticky
            ? this.pool.stickyReadOrder()
            : this.pool.order(write || leaderFirst.has(definition.path));
    const movable = only === null && !nodeLocal.has(definition.path);
    let index = 0;
    let attempt = 0;
    let brokenInARow = 0;
    // Endpoints moved on from since the last pause: the next untried one is asked at once.
    let movesInARow = 0;
    // The last failure a node explained (NO_LEADER, ...): when the deadline ends the call, it says
    // more than the last endpoint tried being down.
    let explained: StrongroomError | null = null;
    // Why each endpoint this call could not reach could not (refused, not trusted, ...): when the
    // deadline ends an attempt still waiting for a connection there, that says why; the deadline
    // does not. (Made at the first such failure.)
    let unreached: Map<Endpoint, StrongroomError> | null = null;
    // Endpoints that said they serve nothing until an operator acts (sealed, removed). Another
    // endpoint may serve; once every one has said so, waiting out the deadline would only delay
    // the answer (a CLI pointed at one sealed node said "sealed" after 10 s of retries).
    // (Made at the first such refusal: not every call pays for it.)
    let refusing: Set<Endpoint> | null = null;
    for (;;) {
      const endpoint = endpoints[index % endpoints.length] as Endpoint;
      attempt++;
      try {
        // A read (or a write with a request id) that another endpoint can serve does not wait on
        // one node for its whole deadline: a paused leader, say.
        const mayMove = idempotent && movable && endpoints.length > 1;
        const attemptDeadline = mayMove ? Math.min(deadline, Date.now() + this.attemptTimeoutMs) : deadline;
        const { response, leader } = await endpoint.breaker.execute(() => {
          const call = startUnaryCall(endpoint.client, definition, request, attemptDeadline);
          const answer = mayMove ? this.unlessStalled(call, endpoint, write) : call.answer;
          if (!balanced) return answer;
          return this.pool.measuredRead(endpoint, answer, retriedAfter);
        });
        this.pool.noteAnswer(endpoint, leader, sticky);
        endpoint.lastFailure = null;
        return response;
      } catch (error) {
        let wait: number;
        if (error instanceof StalledEndpoint) {
          // Given up on a stalled node: on to where the others say, at once (each such move waited
          // stallCheckMs at least, inside the deadline).
          const next = endpoints.indexOf(error.next);
          index = next >= 0 ? next : index + 1;
          brokenInARow = 0;
          movesInARow = 0;
          continue;
        }
        if (error instanceof BrokenCircuitError) {
          // This endpoint is resting; the next one, and a pause once every one is.
          index++;
          brokenInARow++;
          if (brokenInARow < endpoints.length && movable) continue;
          wait = backoffMs(attempt, this.retry.baseMs, this.retry.maxMs) + this.retry.baseMs;
          brokenInARow = 0;
          movesInARow = 0;
          if (Date.now() + wait >= deadline) {
            if (explained !== null) throw explained;
            // What opened them: a node down, a certificate not trusted, ... is what a person acts on.
            const causes = endpoints.flatMap(({ address, lastFailure }) => {
              if (lastFailure === null) return [];
              return lastFailure.message.includes(address)
                ? [lastFailure.message]
                : [`${address}: ${lastFailure.message}`];
            });
            throw new StrongroomError(
              `every endpoint's circuit breaker is open${causes.length === 0 ? "" : `; the last failures: ${causes.join("; ")}`}`,
              status.UNAVAILABLE,
              "",
              { attempts: attempt },
            );
          }
        } else {
          brokenInARow = 0;
          const serviceError = error as ServiceError;
          if (typeof serviceError.code !== "number") throw error;
          const decision = decide(serviceError, idempotent);
          const failure = fromServiceError(serviceError, endpoint.address, attempt);
          const waitedOutDeadline = serviceError.code === status.DEADLINE_EXCEEDED;
          if (isEndpointFailure(serviceError)) {
            endpoint.lastFailure = failure;
            if (!waitedOutDeadline) {
              unreached ??= new Map();
              unreached.set(endpoint, failure);
            }
          } else if (failure.reason !== "") explained = failure;
          if (!decision.retry) throw failure;
          if (refusesUntilOperatorActs(failure.reason)) {
            refusing ??= new Set();
            refusing.add(endpoint);
            if (refusing.size === endpoints.length || !movable) throw failure;
          }
          const moves = decision.switchEndpoint && movable;
          const next = nextWait({ ...decision, switchEndpoint: moves }, movesInARow, endpoints.length, () =>
            backoffMs(attempt, this.retry.baseMs, this.retry.maxMs),
          );
          if (moves) index++;
          movesInARow = next.movesInARow;
          wait = next.waitMs;
          if (Date.now() + wait >= deadline) {
            // Never in place of a failure whose outcome is unknown (a write that may have applied).
            // A read has no outcome to be unknown: the reason a node gave (NO_LEADER from one cut
            // off, say) says more than the timeout of its last attempt, often one begun with
            // milliseconds left.
            if (failure.reason !== "" || (write && failure.outcomeUnknown)) throw failure;
            throw explained ?? (waitedOutDeadline ? unreached?.get(endpoint) : undefined) ?? failure;
          }
        }
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  /**
   * The attempt's answer, unless its node stalls first (see `stallCheckMs`): then the attempt is
   * cancelled and this rejects with StalledEndpoint, naming where the call goes on. Only for calls
   * that may be sent again whatever became of this attempt.
   */
  private async unlessStalled(attempt: UnaryAttempt, endpoint: Endpoint, write: boolean) {
    const settled = attempt.answer.then(
      () => true,
      () => true,
    );
    // The first check after stallCheckMs, then twice as often: a node is stalled once silent to
    // Cluster.Status for stallCheckMs, and the move follows the others' naming a leader soon.
    let waitMs = this.stallCheckMs;
    while (!(await settlesWithin(settled, waitMs))) {
      waitMs = this.stallCheckMs / 2;
      const next = await Promise.race([
        settled.then(() => null),
        this.pool.stallTarget(endpoint, this.stallCheckMs, write),
      ]);
      if (next !== null) {
        attempt.cancel();
        throw new StalledEndpoint(endpoint, next);
      }
    }
    return attempt.answer;
  }
}

/** Whether a read asks for a stale answer (CONSISTENCY_STALE): such reads are not balanced. */
function asksStale(request: unknown): boolean {
  return (request as { consistency?: unknown }).consistency === Consistency.CONSISTENCY_STALE;
}

/** Whether a read is tried again after this failed attempt (a stall, a node down, sealed, overloaded, ...). */
function retriedAfter(error: unknown): boolean {
  if (error instanceof StalledEndpoint) return true;
  const serviceError = error as ServiceError;
  return typeof serviceError.code === "number" && decide(serviceError, true).retry;
}

/** An attempt given up because its node stalled (unlessStalled); the call goes on at `next`. */
class StalledEndpoint extends Error {
  override readonly name = "StalledEndpoint";
  constructor(
    readonly stalled: Endpoint,
    readonly next: Endpoint,
  ) {
    super(`${stalled.address} stalled: the call moved to ${next.address}`);
  }
}

export function createClient(options: ClientOptions): StrongroomClient {
  return new StrongroomClient(options);
}

/**
 * A client configured as the CLI is: STRONGROOM_ADDR, STRONGROOM_CACERT, STRONGROOM_CLIENT_CERT,
 * STRONGROOM_CLIENT_KEY and (optional) STRONGROOM_TOKEN; `options` add to or override them.
 */
export function clientFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  options: Partial<ClientOptions> = {},
): StrongroomClient {
  const need = (name: string): string => {
    const value = env[name];
    if (value === undefined || value === "") throw new TypeError(`clientFromEnv: ${name} is not set`);
    return value;
  };
  return createClient({
    endpoints: options.endpoints ?? need("STRONGROOM_ADDR"),
    tls: options.tls ?? {
      caFile: need("STRONGROOM_CACERT"),
      certFile: need("STRONGROOM_CLIENT_CERT"),
      keyFile: need("STRONGROOM_CLIENT_KEY"),
    },
    token: env.STRONGROOM_TOKEN ?? null,
    ...(env.STRONGROOM_REGION === undefined ? {} : { region: env.STRONGROOM_REGION }),
    ...options,
  });
}

/** One attempt of a unary call: its answer (and the leader its trailers named), and its cancel. */
interface UnaryAttempt {
  readonly answer: Promise<{ response: unknown; leader: string | null }>;
  readonly cancel: () => void;
}

function startUnaryCall(
  client: Client,
  definition: UnaryDefinition,
  request: unknown,
  deadline: number,
): UnaryAttempt {
  let cancel = () => {};
  const answer = new Promise<{ response: unknown; leader: string | null }>((resolve, reject) => {
    // The leader a node names comes in the trailers, which grpc-js hands to the "status" event
    // after the callback: an answer settles once both are in (a failure at once; its error
    // carries the trailers itself).
    let answered: { response: unknown } | null = null;
    let leader: string | null | undefined;
    const call = client.makeUnaryRequest(
      definition.path,
      definition.requestSerialize as (value: unknown) => Buffer,
      definition.responseDeserialize,
      request,
      new Metadata(),
      { deadline },
      (error, response) => {
        if (error !== null) return reject(error);
        answered = { response };
        if (leader !== undefined) resolve({ response, leader });
      },
    );
    call.on("status", (callStatus) => {
      const named = callStatus.metadata.get(leaderTrailer)[0];
      leader = named === undefined ? null : String(named);
      if (answered !== null) resolve({ response: answered.response, leader });
    });
    cancel = () => call.cancel();
  });
  return { answer, cancel };
}

/** Whether `settled` settles within `ms`. */
function settlesWithin(settled: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    settled.then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * The answer with its value copied out of the response message it was decoded from: decoded bytes
 * are a view of that message, which for a small one is a slice of one of Node's 8 KiB pool slabs,
 * kept whole for as long as the cache keeps the entry.
 */
function withOwnValue(response: GetResponse): GetResponse {
  return { ...response, value: Uint8Array.prototype.slice.call(response.value) };
}

/** A failure that says the cluster could not be reached (a cached value may be served instead). */
function isUnreachable(error: unknown): boolean {
  return (
    error instanceof StrongroomError &&
    (error.code === status.UNAVAILABLE ||
      error.code === status.DEADLINE_EXCEEDED ||
      error.reason === "SEALED")
  );
}

function positive(value: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0)
    throw new TypeError(`createClient: ${name} must be a positive number`);
  return value;
}

function fraction(value: number, name: string): number {
  if (!Number.isFinite(value) || value < 0 || value > 1)
    throw new TypeError(`createClient: ${name} must be between 0 and 1`);
  return value;
}

/** A failure of the caller's snapshot source during a restore, told apart from the node's answer. */
class SnapshotSourceError extends Error {
  constructor(override readonly cause: unknown) {
    super("reading the snapshot to restore failed");
  }
}
