// Stand-in nodes for SDK tests: real gRPC servers on 127.0.0.1 over mutual TLS, with the node
// certificate of a test PKI, serving whatever handlers a test gives (a node that fails a stream
// midway, one that never answers, ...), where a real cluster cannot be made to; and a port where
// nothing listens, for a node that is down.

import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import {
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { TestPki } from "../server/pki-fixture.js";

export class StandInNodes {
  private readonly servers: Server[] = [];

  constructor(private readonly pki: TestPki) {}

  /** Starts a stand-in serving `service` with `handlers`; resolves to its address. */
  start(service: ServiceDefinition, handlers: UntypedServiceImplementation): Promise<string> {
    return this.startServing([[service, handlers]]);
  }

  /** Starts a stand-in serving each service with its handlers; resolves to its address. */
  async startServing(
    services: readonly (readonly [ServiceDefinition, UntypedServiceImplementation])[],
  ): Promise<string> {
    const files = this.pki.node("stand-in", ["127.0.0.1"]);
    const server = new Server();
    for (const [service, handlers] of services) server.addService(service, handlers);
    // As a node's client port: the caller's certificate must come from the client CA.
    const credentials = ServerCredentials.createSsl(
      readFileSync(this.pki.clientCaFile()),
      [{ cert_chain: readFileSync(files.certificateFile), private_key: readFileSync(files.privateKeyFile) }],
      true,
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", credentials, (error, bound) =>
        error === null ? resolve(bound) : reject(error),
      ),
    );
    this.servers.push(server);
    return `127.0.0.1:${port}`;
  }

  stopAll(): void {
    for (const server of this.servers) server.forceShutdown();
  }
}

/** A loopback port nothing listens on: a node that is down. */
export async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}
