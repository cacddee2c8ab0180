// The nodes the SDK talks to: one channel per endpoint, each behind its own circuit breaker
// (cockatiel: after `consecutiveFailures` connection failures the endpoint is skipped for
// `halfOpenAfterMs`, then tried with one call). Writes go first to the leader when it is known
// (saving the follower's forwarding hop); the leader is learned from the `strongroom-leader`
// trailer of any answer and mapped to an endpoint through Cluster.Status, which every node
// answers. Other calls go first to the endpoint that answered last. Linearizable reads stick to
// their own endpoint, the last that answered one, which a write's answer from the leader does not
// move; unless the client balances them (readRouting "balanced") over the endpoints by their
// latency and the reads in flight (endpoint-load.ts): every node serves them, so spread they use
// every node's CPU, and a slow node gets few. Each client tries the endpoints in its own random
// order (endpointOrder "random", the default), so that many applications given the same list do
// not all start at its first. Cluster.Status also tells a stalled node (one that answers nothing,
// paused or hung) from a slow one: see stallTarget().

import { randomInt } from "node:crypto";
import { Client, Metadata } from "@grpc/grpc-js";
import {
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhen,
} from "cockatiel";
import { ClusterService, type StatusResponse } from "../proto/gen/strongroom/v1/cluster.gen.js";
import type { EndpointTls } from "./credentials.js";
import { cheaperOfTwo, EndpointLoad } from "./endpoint-load.js";
import { isEndpointFailure, uniform } from "./retry-policy.js";

function channelClient(address: string, tls: EndpointTls): Client {
  return new Client(address, tls.credentials, {
    ...tls.options,
    // channelz (gRPC's introspection service) is not served by the SDK: skip its per-call bookkeeping.
    "grpc.enable_channelz": 0,
    ...noServiceConfigFromDns,
  });
}

/**
 * gRPC looks up a TXT record beside a host name for a service config. The SDK sets its channels
 * itself: a DNS answer must not choose how a secret store's client balances or retries. And where
 * no server answers such a query (a closed network; Docker's DNS without an upstream) it stays
 * pending for about 20 s, which kept a CLI command's process alive that long after its work.
 */
const noServiceConfigFromDns = { "grpc.service_config_disable_resolution": 1 } as const;

export interface Endpoint {
  readonly address: string;
  readonly client: Client;
  readonly breaker: CircuitBreakerPolicy;
  nodeId: string | null;
  /** The node's region, once Cluster.Status has said it (null: not known yet). */
  region: string | null;
  /** Why the last call here failed (null once one succeeds): what an open breaker stands for. */
  lastFailure: Error | null;
  /** The Cluster.Status asked of it and not answered yet (one at a time), and since when. */
  statusAsked: { readonly since: number; readonly answer: Promise<StatusResponse | null> } | null;
  /** Its balanced reads: in flight, and their latency (what balancedOrder() weighs). */
  readonly load: EndpointLoad;
  /** Until when (Date.now()) its breaker, opened, refuses every call (0: not opened). */
  breakerRestsUntil: number;
}

/** What EndpointPool.endpointStats() tells of one endpoint. */
export interface EndpointStats {
  readonly address: string;
  /** The node's id, once Cluster.Status has said it ("" until then). */
  readonly nodeId: string;
  /** Balanced reads sent there and not yet answered. */
  readonly readsInFlight: number;
  /** Their latency estimate (peak EWMA, decaying while unused), in ms; 0 before the first. */
  readonly readLatencyMs: number;
  /** Whether balanced reads keep away for now, after one failed there. */
  readonly readsAvoided: boolean;
  /** Its circuit breaker: "closed" (calls go), "open" (skipped for now) or "half-open" (one tries). */
  readonly breaker: "closed" | "open" | "half-open";
}

export interface BreakerOptions {
  readonly consecutiveFailures: number;
  readonly halfOpenAfterMs: number;
}

/** The order in which a client tries its endpoints: ClientOptions.endpointOrder. */
export type EndpointOrder = "random" | "given";

export class EndpointPool {
  /** The endpoints as given. */
  readonly endpoints: readonly Endpoint[];
  /** The same in the order this client tries them (endpointOrder): the first is tried first. */
  private readonly preference: readonly Endpoint[];
  /** Where calls go first (the leader aside): the endpoint that answered last. */
  private lastGood: Endpoint;
  /** Where sticky linearizable reads go first: the endpoint that answered one last. */
  private readHome: Endpoint;
  private leaderId: string | null = null;
  private discovering: Promise<void> | null = null;
  /** The last Cluster.Status round of stallTarget(): when it began, and each endpoint's answer. */
  private statusRound: {
    readonly at: number;
    readonly answers: Map<Endpoint, Promise<StatusResponse | null>>;
  } | null = null;
  /** The first discovery, which calls wait for when the client has a region. */
  private locating: Promise<void> | null = null;

  constructor(
    addresses: readonly string[],
    /** Each endpoint's channel credentials and options (client/credentials.ts). */
    channelFor: (address: string) => EndpointTls,
    private readonly breaker: BreakerOptions,
    /** The client's region: its endpoints there are tried first (null: no preference). */
    private readonly region: string | null,
    endpointOrder: EndpointOrder,
  ) {
    this.endpoints = addresses.map((address) => newEndpoint(address, channelFor, breaker));
    // Each client its own order: applications given the same member list then spread their calls
    // over the members, as gRPC's pick_first does when told to shuffle (gRFC A62), instead of all
    // starting at the first member, and all moving to the second when it fails.
    this.preference = endpointOrder === "random" ? shuffled(this.endpoints) : this.endpoints;
    this.lastGood = this.preference[0] as Endpoint;
    this.readHome = this.lastGood;
    // Which endpoint is in which region is learned before the first call, not at a leader change.
    if (region !== null) {
      this.discover();
      this.locating = this.discovering;
    }
  }

  /** Resolves once the endpoints' regions are known (at once without a region, or after the first time). */
  async located(): Promise<void> {
    if (this.locating === null) return;
    await this.locating;
    this.locating = null;
  }

  /**
   * Endpoints in the order to try them: the leader first for writes; then, with a region, the
   * endpoints in it (a linearizable read is served by the nearest node, one round trip to the
   * leader); each group from the last endpoint that answered, in the client's order.
   */
  order(preferLeader: boolean): Endpoint[] {
    return this.orderFrom(this.lastGood, preferLeader ? this.leaderEndpoint() : undefined);
  }

  /**
   * Endpoints in the order to try them for a sticky linearizable read: as order(false), but from
   * the endpoint that answered such a read last. Any node serves it from the same committed state;
   * a client's reads stay on one connection (the cheapest way to send them, docs/sdk.md), and
   * after a write they stay where they were instead of all moving to the leader.
   */
  stickyReadOrder(): Endpoint[] {
    return this.orderFrom(this.readHome, undefined);
  }

  /**
   * The client's order rotated to start at `leader` if given, else at `from`; with a region, the
   * leader, then the endpoints in the region, then the rest.
   */
  private orderFrom(from: Endpoint, leader: Endpoint | undefined): Endpoint[] {
    const { preference } = this;
    const start = preference.indexOf(leader ?? from);
    const rotated = preference.map((_, i) => preference[(start + i) % preference.length] as Endpoint);
    if (this.region === null) return rotated;
    const rest = rotated.filter((endpoint) => endpoint !== leader);
    return [
      ...(leader === undefined ? [] : [leader]),
      ...rest.filter((endpoint) => endpoint.region === this.region),
      ...rest.filter((endpoint) => endpoint.region !== this.region),
    ];
  }

  /**
   * Endpoints in the order to try them for a linearizable read: first the cheaper of two picked at
   * random, by latency and reads in flight (endpoint-load.ts), among those that take calls (the
   * breaker closed, no read failed there lately) in the client's region if it has one and any
   * there does; then the rest: those that take calls first, those in the region first, each group
   * cheapest first. Any node serves such a read, from the same committed state: which one answers
   * changes its cost, not its answer.
   */
  balancedOrder(): Endpoint[] {
    const now = performance.now();
    const ranked = this.endpoints
      .map((endpoint) => ({
        endpoint,
        away: takesCalls(endpoint) && !endpoint.load.avoided(now) ? 0 : 1,
        far: this.region !== null && endpoint.region !== this.region ? 1 : 0,
        cost: endpoint.load.cost(now),
      }))
      .sort((a, b) => a.away - b.away || a.far - b.far || a.cost - b.cost);
    const ready = ranked.filter((ranking) => ranking.away === 0);
    const near = ready.filter((ranking) => ranking.far === 0);
    // Every endpoint avoided or resting: the usual order, which the breakers and retries work through.
    if (ready.length === 0) return this.order(false);
    const candidates = near.length > 0 ? near : ready;
    const first = cheaperOfTwo(candidates, (ranking) => ranking.cost, uniform).endpoint;
    return [first, ...ranked.map(({ endpoint }) => endpoint).filter((endpoint) => endpoint !== first)];
  }

  /**
   * `answer`, the attempt of a balanced read at `endpoint`, counted while in flight; once settled
   * its latency is noted, and after a failure that `retried` picks out (one the read goes on from)
   * balanced reads keep away from the endpoint for the breaker's rest (`halfOpenAfterMs`).
   */
  async measuredRead<T>(
    endpoint: Endpoint,
    answer: Promise<T>,
    retried: (error: unknown) => boolean,
  ): Promise<T> {
    const started = performance.now();
    endpoint.load.inFlight++;
    try {
      const settled = await answer;
      const now = performance.now();
      endpoint.load.observe(now - started, now);
      return settled;
    } catch (error) {
      const now = performance.now();
      endpoint.load.observe(now - started, now);
      if (retried(error)) endpoint.load.avoidUntil(now + this.breaker.halfOpenAfterMs);
      throw error;
    } finally {
      endpoint.load.inFlight--;
    }
  }

  /** Each endpoint's balanced reads and breaker, for a look at how calls are spread. */
  endpointStats(): EndpointStats[] {
    const now = performance.now();
    return this.endpoints.map((endpoint) => ({
      address: endpoint.address,
      nodeId: endpoint.nodeId ?? "",
      readsInFlight: endpoint.load.inFlight,
      readLatencyMs: endpoint.load.latencyMs(now),
      readsAvoided: endpoint.load.avoided(now),
      breaker: breakerState(endpoint.breaker.state),
    }));
  }

  /**
   * Notes an answer from `endpoint`, and the leader it named; `stickyRead`: the answer to a
   * sticky linearizable read, whose endpoint later such reads go to first.
   */
  noteAnswer(endpoint: Endpoint, leaderId: string | null, stickyRead = false): void {
    this.lastGood = endpoint;
    if (stickyRead) this.readHome = endpoint;
    if (leaderId === null || leaderId === this.leaderId) return;
    this.leaderId = leaderId;
    if (this.leaderEndpoint() === undefined) this.discover();
  }

  /**
   * Where an attempt that `stalled` has held for a while should go instead, or null to keep
   * waiting (the caller asks again a little later). A node is taken as stalled (paused, hung, its
   * event loop blocked) once a Cluster.Status asked of it has gone unanswered for `timeoutMs`: a
   * node that answers one, even with an error, is alive and may answer the call yet (and a refused
   * connection ends the question too: a node down fails its calls by itself). Every
   * endpoint is asked, in a round shared by every attempt that asks within half `timeoutMs` (many
   * slow calls cost a few rounds a second, not one each); a node still silent to an earlier
   * question is not asked again until that one ends. This waits for the other nodes' answers, not
   * the stalled node's. When it is stalled and another names a leader other than it (the newest
   * term's word), the attempt goes to that leader if `preferLeader` (a write; the leader is noted
   * for the calls after it), else to the node that named it. While the others still name the
   * stalled node, or none (an election), staying is no worse than moving; so too while they name
   * a node no endpoint is known to be, if the stalled one is not known.
   */
  async stallTarget(stalled: Endpoint, timeoutMs: number, preferLeader: boolean): Promise<Endpoint | null> {
    if (this.statusRound === null || Date.now() - this.statusRound.at >= timeoutMs / 2) {
      const asks = this.endpoints.map(
        (endpoint) => [endpoint, askStatus(endpoint, timeoutMs * statusAskChecks)] as const,
      );
      this.statusRound = { at: Date.now(), answers: new Map(asks) };
    }
    const { answers } = this.statusRound;
    const others = this.endpoints.filter((endpoint) => endpoint !== stalled);
    const statuses = await Promise.all(others.map((endpoint) => answers.get(endpoint) ?? null));
    const asked = stalled.statusAsked;
    if (asked === null || Date.now() - asked.since < timeoutMs) return null;
    let named: { readonly leader: string; readonly term: number; readonly by: Endpoint } | null = null;
    for (const [i, status] of statuses.entries()) {
      if (status === null) continue;
      const leader = status.role === "leader" ? status.nodeId : status.leaderId;
      if (leader !== "" && (named === null || Number(status.term) > named.term))
        named = { leader, term: Number(status.term), by: others[i] as Endpoint };
    }
    if (named === null) return null;
    const leader = this.endpoints.find((endpoint) => endpoint.nodeId === named.leader);
    // A stalled node never heard from may be the leader the others name, unless that is another endpoint.
    if (stalled.nodeId === null ? leader === undefined : named.leader === stalled.nodeId) return null;
    if (!preferLeader) return named.by;
    this.leaderId = named.leader;
    return leader ?? named.by;
  }

  close(): void {
    for (const endpoint of this.endpoints) endpoint.client.close();
  }

  private leaderEndpoint(): Endpoint | undefined {
    return this.leaderId === null
      ? undefined
      : this.endpoints.find((endpoint) => endpoint.nodeId === this.leaderId);
  }

  /** Learns which node each endpoint is (in the background; a node that does not answer stays unknown). */
  private discover(): void {
    this.discovering ??= Promise.all(this.endpoints.map((endpoint) => askStatus(endpoint, 2000))).then(() => {
      this.discovering = null;
    });
  }
}

/** `endpoints` in a random order (Fisher-Yates, node:crypto as everywhere in the project). */
function shuffled(endpoints: readonly Endpoint[]): Endpoint[] {
  const order = [...endpoints];
  for (let i = order.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [order[i], order[j]] = [order[j] as Endpoint, order[i] as Endpoint];
  }
  return order;
}

/** An endpoint's channel and breaker, nothing known of its node yet. */
function newEndpoint(
  address: string,
  channelFor: (address: string) => EndpointTls,
  breaker: BreakerOptions,
): Endpoint {
  const endpoint: Endpoint = {
    address,
    client: channelClient(address, channelFor(address)),
    breaker: circuitBreaker(
      handleWhen((error) => isEndpointFailure(error as never)),
      {
        halfOpenAfter: breaker.halfOpenAfterMs,
        breaker: new ConsecutiveBreaker(breaker.consecutiveFailures),
      },
    ),
    nodeId: null,
    region: null,
    lastFailure: null,
    statusAsked: null,
    load: new EndpointLoad(performance.now()),
    breakerRestsUntil: 0,
  };
  // cockatiel moves an open breaker to half-open only when a call comes after the rest: when
  // the rest ends is kept here, so that balancedOrder() picks the endpoint again after it.
  endpoint.breaker.onBreak(() => {
    endpoint.breakerRestsUntil = Date.now() + breaker.halfOpenAfterMs;
  });
  return endpoint;
}

/**
 * Whether a call here would go now: its breaker closed, or open with its rest over (the call
 * tries it, half-open). Half-open, one call is trying it already and the breaker refuses others.
 */
function takesCalls(endpoint: Endpoint): boolean {
  const { state } = endpoint.breaker;
  return (
    state === CircuitState.Closed || (state === CircuitState.Open && Date.now() >= endpoint.breakerRestsUntil)
  );
}

function breakerState(state: CircuitState): EndpointStats["breaker"] {
  if (state === CircuitState.Open || state === CircuitState.Isolated) return "open";
  return state === CircuitState.HalfOpen ? "half-open" : "closed";
}

/**
 * How long a Cluster.Status asked by stallTarget() may go unanswered, in stall checks: long enough
 * that a paused node stays known as silent through an election's checks, short enough that a node
 * that comes back is soon asked afresh.
 */
const statusAskChecks = 10;

/**
 * Asks `endpoint` for Cluster.Status within `timeoutMs` (or joins the question already asked of
 * it), and notes which node it is and where. Null for an error, no connection, or no answer in time.
 */
function askStatus(endpoint: Endpoint, timeoutMs: number): Promise<StatusResponse | null> {
  if (endpoint.statusAsked !== null) return endpoint.statusAsked.answer;
  const answer = new Promise<StatusResponse | null>((resolve) => {
    endpoint.client.makeUnaryRequest(
      ClusterService.status.path,
      ClusterService.status.requestSerialize,
      ClusterService.status.responseDeserialize,
      {},
      new Metadata(),
      { deadline: Date.now() + timeoutMs },
      (error, response?: StatusResponse) => {
        endpoint.statusAsked = null;
        if (error === null && response !== undefined) {
          endpoint.nodeId = response.nodeId;
          endpoint.region = response.region;
        }
        resolve(response ?? null);
      },
    );
  });
  endpoint.statusAsked = { since: Date.now(), answer };
  return answer;
}
