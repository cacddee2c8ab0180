// The nodes the SDK talks to: one channel per endpoint, each behind its own circuit breaker
// (cockatiel: after `consecutiveFailures` connection failures the endpoint is skipped for
// `halfOpenAfterMs`, then tried with one call). Calls go first to the endpoint that answered last
// (reads) or to the leader when it is known (writes, saving the follower's forwarding hop); the
// leader is learned from the `strongroom-leader` trailer of any answer and mapped to an endpoint
// through Cluster.Status, which every node answers.

import { type ChannelCredentials, Client, Metadata } from "@grpc/grpc-js";
import { type CircuitBreakerPolicy, ConsecutiveBreaker, circuitBreaker, handleWhen } from "cockatiel";
import { ClusterService, type StatusResponse } from "../proto/gen/strongroom/v1/cluster.gen.js";
import { isEndpointFailure } from "./retry-policy.js";

export interface Endpoint {
  readonly address: string;
  readonly client: Client;
  readonly breaker: CircuitBreakerPolicy;
  nodeId: string | null;
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

  constructor(addresses: readonly string[], credentials: ChannelCredentials, breaker: BreakerOptions) {
    this.endpoints = addresses.map((address) => ({
      address,
      client: new Client(address, credentials),
      breaker: circuitBreaker(
        handleWhen((error) => isEndpointFailure(error as never)),
        {
          halfOpenAfter: breaker.halfOpenAfterMs,
          breaker: new ConsecutiveBreaker(breaker.consecutiveFailures),
        },
      ),
      nodeId: null,
    }));
  }

  /** Endpoints in the order to try them: the leader first for writes, else the last that answered. */
  order(preferLeader: boolean): Endpoint[] {
    const first = preferLeader ? this.leaderEndpoint() : undefined;
    const start = first === undefined ? this.lastGood : this.endpoints.indexOf(first);
    return this.endpoints.map((_, i) => this.endpoints[(start + i) % this.endpoints.length] as Endpoint);
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
                if (error === null && response !== undefined) endpoint.nodeId = response.nodeId;
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
