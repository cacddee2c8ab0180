// The nodes the SDK talks to: one channel per endpoint, each behind its own circuit breaker
// (cockatiel: after `consecutiveFailures` connection failures the endpoint is skipped for
// `halfOpenAfterMs`, then tried with one call). Calls go first to the endpoint that answered last
// (reads) or to the leader when it is known (writes, saving the follower's forwarding hop); the
// leader is learned from the `strongroom-leader` trailer of any answer and mapped to an endpoint
// through Cluster.Status, which every node answers.

import { Client, Metadata } from "@grpc/grpc-js";
import { type CircuitBreakerPolicy, ConsecutiveBreaker, circuitBreaker, handleWhen } from "cockatiel";
import { ClusterService, type StatusResponse } from "../proto/gen/strongroom/v1/cluster.gen.js";
import type { EndpointTls } from "./credentials.js";
import { isEndpointFailure } from "./retry-policy.js";

function channelClient(address: string, tls: EndpointTls): Client {
  // channelz (gRPC's introspection service) is not served by the SDK: skip its per-call bookkeeping.
  return new Client(address, tls.credentials, { ...tls.options, "grpc.enable_channelz": 0 });
}

export interface Endpoint {
  readonly address: string;
  readonly client: Client;
  readonly breaker: CircuitBreakerPolicy;
  nodeId: string | null;
  /** The node's region, once Cluster.Status has said it (null: not known yet). */
  region: string | null;
  /** Why the last call here failed (null once one succeeds): what an open breaker stands for. */
  lastFailure: Error | null;
}

export interface BreakerOptions {
  readonly consecutiveFailures: number;
  readonly halfOpenAfterMs: number;
}

export class EndpointPool {
  readonly endpoints: readonly Endpoint[];
  private lastGood = 0;
  private leaderId: string | null = null;
  private discovering: Promise<void> | null = null;
  /** The first discovery, which calls wait for when the client has a region. */
  private locating: Promise<void> | null = null;

  constructor(
    addresses: readonly string[],
    /** Each endpoint's channel credentials and options (client/credentials.ts). */
    channelFor: (address: string) => EndpointTls,
    breaker: BreakerOptions,
    /** The client's region: its endpoints there are tried first (null: no preference). */
    private readonly region: string | null = null,
  ) {
    this.endpoints = addresses.map((address) => ({
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
    }));
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
   * leader); each group from the last endpoint that answered.
   */
  order(preferLeader: boolean): Endpoint[] {
    const first = preferLeader ? this.leaderEndpoint() : undefined;
    const start = first === undefined ? this.lastGood : this.endpoints.indexOf(first);
    const rotated = this.endpoints.map(
      (_, i) => this.endpoints[(start + i) % this.endpoints.length] as Endpoint,
    );
    if (this.region === null) return rotated;
    const rest = rotated.filter((endpoint) => endpoint !== first);
    return [
      ...(first === undefined ? [] : [first]),
      ...rest.filter((endpoint) => endpoint.region === this.region),
      ...rest.filter((endpoint) => endpoint.region !== this.region),
    ];
  }

  /** Notes an answer from `endpoint`, and the leader it named. */
  noteAnswer(endpoint: Endpoint, leaderId: string | null): void {
    this.lastGood = this.endpoints.indexOf(endpoint);
    if (leaderId === null || leaderId === this.leaderId) return;
    this.leaderId = leaderId;
    if (this.leaderEndpoint() === undefined) this.discover();
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
    this.discovering ??= Promise.all(
      this.endpoints.map(
        (endpoint) =>
          new Promise<void>((resolve) => {
            endpoint.client.makeUnaryRequest(
              ClusterService.status.path,
              ClusterService.status.requestSerialize,
              ClusterService.status.responseDeserialize,
              {},
              new Metadata(),
              { deadline: Date.now() + 2000 },
              (error, response?: StatusResponse) => {
                if (error === null && response !== undefined) {
                  endpoint.nodeId = response.nodeId;
                  endpoint.region = response.region;
                }
                resolve();
              },
            );
          }),
      ),
    ).then(() => {
      this.discovering = null;
    });
  }
}
