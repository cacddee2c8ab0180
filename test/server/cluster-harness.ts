// A small harness for end-to-end tests of real nodes: certificates from the test PKI, a config per
// node on its own 127.0.0.x address, and typed gRPC clients with a client certificate. Nodes run
// in this process (StrongroomNode.start) or as child processes (`strongroom server`), both over
// real sockets, real mutual TLS and real LevelDB directories.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChannelCredentials, ServiceError } from "@grpc/grpc-js";
import { stringify } from "yaml";
import { MetricsText } from "../../chaos/metrics-text.js";
import { unary } from "../../cli/client-connection.js";
import { withToken } from "../../client/credentials.js";
import { AccessClient } from "../../proto/gen/strongroom/v1/access.gen.js";
import { ClusterClient } from "../../proto/gen/strongroom/v1/cluster.gen.js";
import { LeasesClient } from "../../proto/gen/strongroom/v1/leases.gen.js";
import { PkiClient } from "../../proto/gen/strongroom/v1/pki.gen.js";
import { SecretsClient } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { SysClient } from "../../proto/gen/strongroom/v1/sys.gen.js";
import { type NodeConfig, parseNodeConfig } from "../../server/config.js";
import { type NodeStartOptions, StrongroomNode } from "../../server/node.js";
import { dialTls } from "../../server/tls/credentials.js";
import { TlsFiles } from "../../server/tls/tls-files.js";
import { eventually } from "../support/eventually.js";
import type { TestPki } from "./pki-fixture.js";

export interface NodeSpec {
  readonly id: string;
  readonly host: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly httpPort: number;
}

/** A metric without labels (a gauge's value, a counter's count) as the node reports it now. */
export async function metricOf(spec: NodeSpec, name: string): Promise<number> {
  const metrics = MetricsText.parse(
    await (await fetch(`http://${spec.host}:${spec.httpPort}/metrics`)).text(),
  );
  const value = metrics.value(name);
  if (value === undefined) throw new Error(`${spec.id} reports no ${name}`);
  return value;
}

/**
 * The samples on `spec`'s /metrics whose line starts with `prefix`: a name's beginning, or a name
 * and the first of its labels (`name{label="value"`), for metrics with labels.
 */
export async function metricLinesOf(spec: NodeSpec, prefix: string): Promise<string[]> {
  const metrics = await (await fetch(`http://${spec.host}:${spec.httpPort}/metrics`)).text();
  return metrics.split("\n").filter((line) => line.startsWith(prefix));
}

/**
 * Specs for n1..nN on 127.0.0.(offset+i), with ports from `basePort`. Every test file uses its own
 * range of loopback addresses, so fixed ports never collide between files running in parallel.
 */
export function nodeSpecs(count: number, basePort: number, hostOffset = 10): NodeSpec[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `n${i + 1}`,
    host: `127.0.0.${hostOffset + i + 1}`,
    clientPort: basePort,
    peerPort: basePort + 1,
    httpPort: basePort + 2,
  }));
}

/** A config for each node, written as YAML under `root/<id>/config.yaml` too (for child processes). */
export function writeConfigs(
  pki: TestPki,
  root: string,
  specs: readonly NodeSpec[],
  extra: (spec: NodeSpec) => Record<string, unknown> = () => ({}),
): Map<string, { config: NodeConfig; file: string }> {
  const configs = new Map<string, { config: NodeConfig; file: string }>();
  const members = specs.map((spec) => ({
    id: spec.id,
    peerAddress: `${spec.host}:${spec.peerPort}`,
    clientAddress: `${spec.host}:${spec.clientPort}`,
  }));
  for (const spec of specs) {
    const directory = join(root, spec.id);
    mkdirSync(directory, { recursive: true });
    const peer = pki.node(spec.id, [spec.host, "localhost"]);
    const document = {
      nodeId: spec.id,
      dataDir: join(directory, "data"),
      listen: {
        client: `${spec.host}:${spec.clientPort}`,
        peer: `${spec.host}:${spec.peerPort}`,
        http: `${spec.host}:${spec.httpPort}`,
      },
      // The client port shows clients the node certificate and trusts the client CA.
      tls: { peer, client: { ...peer, caFile: pki.clientCaFile() } },
      members,
      raft: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 },
      log: { level: process.env.STRONGROOM_TEST_LOG ?? "warn" },
      ...extra(spec),
    };
    const file = join(directory, "config.yaml");
    writeFileSync(file, stringify(document));
    configs.set(spec.id, { config: parseNodeConfig(document), file });
  }
  return configs;
}

export interface Clients {
  readonly secrets: SecretsClient;
  readonly sys: SysClient;
  readonly cluster: ClusterClient;
  readonly access: AccessClient;
  readonly pki: PkiClient;
  readonly leases: LeasesClient;
  /** Sends `token` with every later call (null: none). */
  useToken(token: string | null): void;
  close(): void;
}

export function clientsFor(
  address: string,
  pki: TestPki,
  name = "operator",
  token: string | null = null,
): Clients {
  const tls = new TlsFiles(pki.client(name));
  let current = token;
  const dial = dialTls(tls, address);
  const credentials: ChannelCredentials = withToken(dial.credentials, () => current);
  const secrets = new SecretsClient(address, credentials, dial.options);
  const sys = new SysClient(address, credentials, dial.options);
  const cluster = new ClusterClient(address, credentials, dial.options);
  const access = new AccessClient(address, credentials, dial.options);
  const pkiClient = new PkiClient(address, credentials, dial.options);
  const leases = new LeasesClient(address, credentials, dial.options);
  return {
    secrets,
    sys,
    cluster,
    access,
    pki: pkiClient,
    leases,
    useToken(next) {
      current = next;
    },
    close() {
      secrets.close();
      sys.close();
      cluster.close();
      access.close();
      pkiClient.close();
      leases.close();
      tls.close();
    },
  };
}

/** Calls a generated unary method as a promise, with a deadline (the CLI's own helper). */
export const call = unary;

/** The gRPC error of a call expected to fail, with its reason trailer. */
export async function callError<Request, Response>(
  method: Parameters<typeof unary<Request, Response>>[0],
  request: Request,
  timeoutMs?: number,
): Promise<{ code: number; details: string; reason: string; leader: string }> {
  try {
    await call(method, request, timeoutMs);
  } catch (error) {
    const serviceError = error as ServiceError;
    return {
      code: serviceError.code,
      details: serviceError.details,
      reason: String(serviceError.metadata?.get("strongroom-reason")[0] ?? ""),
      leader: String(serviceError.metadata?.get("strongroom-leader")[0] ?? ""),
    };
  }
  throw new Error("the call succeeded");
}

/** Nodes started in this process (StrongroomNode.start) with a client to each, and their clean-up. */
export class InProcessCluster {
  readonly nodes = new Map<string, StrongroomNode>();
  private readonly clients = new Map<string, Clients>();
  private token: string | null = null;

  constructor(private readonly pki: TestPki) {}

  /** Sends `token` (the root token from init, say) with every call of every client from now on. */
  useToken(token: string | null): void {
    this.token = token;
    for (const client of this.clients.values()) client.useToken(token);
  }

  /** Starts the node of `spec` with `config` and opens a client (identity "operator") to it. */
  async start(spec: NodeSpec, config: NodeConfig, options: NodeStartOptions = {}): Promise<StrongroomNode> {
    const node = await StrongroomNode.start(config, options);
    this.nodes.set(spec.id, node);
    this.clients.set(
      spec.id,
      clientsFor(`${spec.host}:${spec.clientPort}`, this.pki, "operator", this.token),
    );
    return node;
  }

  /** Starts the node of every spec, one after another, with its config from writeConfigs. */
  async startAll(
    specs: readonly NodeSpec[],
    configs: ReadonlyMap<string, { readonly config: NodeConfig }>,
  ): Promise<void> {
    for (const spec of specs) {
      const entry = configs.get(spec.id);
      if (entry === undefined) throw new Error(`no config for ${spec.id}`);
      await this.start(spec, entry.config);
    }
  }

  client(id: string): Clients {
    const found = this.clients.get(id);
    if (found === undefined) throw new Error(`no client for ${id}`);
    return found;
  }

  /**
   * Inits the running nodes with one Shamir share through `via`, unseals every node with it, and
   * sends the root token with every call from then on. Answers the share and the root token.
   */
  async initializeWithOneShare(via: string): Promise<{ share: string; rootToken: string }> {
    const initialized = await this.initializeSealed(via);
    for (const id of this.nodes.keys()) {
      const target = this.client(id).sys;
      await call(target.unseal.bind(target), { share: initialized.share, nonce: "", reset: false });
    }
    return initialized;
  }

  /**
   * Inits the running nodes with one Shamir share through `via` and leaves every node sealed;
   * sends the root token with every call from then on. Answers the share and the root token.
   */
  async initializeSealed(via: string): Promise<{ share: string; rootToken: string }> {
    await this.leaderId();
    const sys = this.client(via).sys;
    const init = await call(sys.init.bind(sys), {
      shamir: { count: 1, threshold: 1, operatorKeys: [] },
      hsm: false,
      generateHsmKey: false,
      recovery: undefined,
    });
    this.useToken(init.rootToken);
    return { share: init.unsealShares[0] ?? "", rootToken: init.rootToken };
  }

  /** The id of the node that leads, once one does. */
  async leaderId(timeoutMs = 10_000): Promise<string> {
    let leader = "";
    await eventually(() => {
      leader = [...this.nodes.entries()].find(([, node]) => node.isLeader())?.[0] ?? "";
      return leader !== "";
    }, timeoutMs);
    return leader;
  }

  async stop(): Promise<void> {
    for (const client of this.clients.values()) client.close();
    await Promise.all([...this.nodes.values()].map((node) => node.stop(500)));
  }
}
