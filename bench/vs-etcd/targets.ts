// The two systems under the same client: a generated @grpc/grpc-js client per endpoint (ts-proto,
// the same codec and HTTP/2 stack for both), one channel per endpoint per load worker, and a write
// and a linearizable read of one key. strongroom: Secrets.Put / Secrets.Get (linearizable) with
// the bearer token; etcd: KV.Put / KV.Range (serializable false: linearizable). With `viaSdk`,
// strongroom's requests go through its SDK instead (connectSdk), routing and retries included.

import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { type ChannelCredentials, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { createClient, type ReadRouting } from "../../client/index.js";
import { KVClient } from "../../proto/gen/etcd/etcdserverpb/kv.gen.js";
import { Consistency, SecretsClient } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import "../ip-servername-warning.js";

export type SystemName = "strongroom" | "etcd";

export interface TargetSpec {
  readonly system: SystemName;
  readonly endpoints: readonly string[];
  /** Where every write goes (one of `endpoints`), or null: writes go round-robin like reads. */
  readonly writeEndpoint: string | null;
  readonly tls: { readonly caFile: string; readonly certFile: string; readonly keyFile: string };
  /** strongroom's bearer token (etcd: none). */
  readonly token: string | null;
  /** strongroom's writes carry a request id each, as the SDK's do (etcd: never). */
  readonly requestIds: boolean;
  /**
   * strongroom's requests go through the SDK (createClient), which picks the endpoint itself:
   * writes to the leader it learned, reads as `sdkReadRouting` says.
   */
  readonly viaSdk: boolean;
  /** The SDK's readRouting (with `viaSdk`). */
  readonly sdkReadRouting: ReadRouting;
}

/** One endpoint's connection: write and read one key, rejecting with the gRPC error. */
export interface Connection {
  write(key: string, value: Uint8Array, deadline: number): Promise<void>;
  read(key: string, deadline: number): Promise<void>;
  close(): void;
}

const keyPrefix = "bench/";

export function connect(spec: TargetSpec, endpoint: string): Connection {
  const channel: ChannelCredentials = credentials.createSsl(
    readFileSync(spec.tls.caFile),
    readFileSync(spec.tls.keyFile),
    readFileSync(spec.tls.certFile),
  );
  const done =
    (resolve: () => void, reject: (error: ServiceError) => void) =>
    (error: ServiceError | null): void =>
      error === null ? resolve() : reject(error);
  if (spec.system === "etcd") {
    const client = new KVClient(endpoint, channel);
    return {
      write: (key, value, deadline) =>
        new Promise((resolve, reject) =>
          client.put(
            { key: Buffer.from(keyPrefix + key), value, lease: 0 },
            new Metadata(),
            { deadline },
            done(resolve, reject),
          ),
        ),
      read: (key, deadline) =>
        new Promise((resolve, reject) =>
          client.range(
            {
              key: Buffer.from(keyPrefix + key),
              rangeEnd: Buffer.alloc(0),
              limit: 1,
              revision: 0,
              serializable: false,
            },
            new Metadata(),
            { deadline },
            done(resolve, reject),
          ),
        ),
      close: () => client.close(),
    };
  }
  const client = new SecretsClient(endpoint, channel);
  const metadata = () => {
    const entries = new Metadata();
    if (spec.token !== null) entries.set("authorization", `Bearer ${spec.token}`);
    return entries;
  };
  return {
    write: (key, value, deadline) =>
      new Promise((resolve, reject) =>
        client.put(
          {
            path: keyPrefix + key,
            value,
            cas: undefined,
            requestId: spec.requestIds ? randomUUID() : undefined,
          },
          metadata(),
          { deadline },
          done(resolve, reject),
        ),
      ),
    read: (key, deadline) =>
      new Promise((resolve, reject) =>
        client.get(
          {
            path: keyPrefix + key,
            version: 0,
            consistency: Consistency.CONSISTENCY_LINEARIZABLE,
            maxStalenessMs: 0,
          },
          metadata(),
          { deadline },
          done(resolve, reject),
        ),
      ),
    close: () => client.close(),
  };
}

/**
 * strongroom through its SDK: one client whose endpoint list starts at `first` (modulo their
 * number), so that sticky reads of several such clients land on different members, as those of
 * applications given the members in different orders would. Writes carry request ids only with
 * `spec.requestIds` (the SDK's `requestIds` option), to compare like with like.
 */
export function connectSdk(spec: TargetSpec, first: number): Connection {
  const endpoints = spec.endpoints.map(
    (_, i) => spec.endpoints[(first + i) % spec.endpoints.length] as string,
  );
  const client = createClient({
    endpoints,
    // The rotation above, not a random order: each run puts the clients on the same members.
    endpointOrder: "given",
    tls: spec.tls,
    token: spec.token ?? "",
    requestIds: spec.requestIds,
    readRouting: spec.sdkReadRouting,
  });
  const within = (deadline: number) => ({ deadlineMs: Math.max(1, deadline - Date.now()) });
  return {
    write: async (key, value, deadline) => {
      await client.secrets.put(
        { path: keyPrefix + key, value, cas: undefined, requestId: undefined },
        within(deadline),
      );
    },
    read: async (key, deadline) => {
      await client.secrets.get(
        {
          path: keyPrefix + key,
          version: 0,
          consistency: Consistency.CONSISTENCY_LINEARIZABLE,
          maxStalenessMs: 0,
        },
        within(deadline),
      );
    },
    close: () => client.close(),
  };
}
