// The peer port: a gRPC server for strongroom.raft.v1.Peer over mutual TLS with the cluster CA
// only, so a client certificate (client CA) fails the handshake before any RPC. Separate from the
// client port, as etcd (2379/2380) and Vault (8200/8201) separate theirs.

import { Server } from "@grpc/grpc-js";
import { type PeerServer, PeerService } from "../../proto/gen/strongroom/raft/v1/peer.gen.js";
import type { ForwardingHandlers } from "../forward-receiver.js";
import { serverCredentials } from "../tls/credentials.js";
import type { TlsFiles } from "../tls/tls-files.js";
import {
  defaultPeerTransportLimits,
  type GrpcPeerTransport,
  type PeerTransportLimits,
  peerChannelOptions,
} from "./peer-transport.js";

export interface PeerListenerOptions {
  /** host:port to listen on (port 0: any free port). */
  readonly address: string;
  readonly tls: TlsFiles;
  readonly transport: GrpcPeerTransport;
  /** Serves requests other nodes forward here (Forward, ForwardStream and ForwardBatches). */
  readonly forwarding: ForwardingHandlers;
  readonly limits?: PeerTransportLimits;
}

export interface PeerListener {
  readonly port: number;
  close(): Promise<void>;
}

export async function startPeerListener(options: PeerListenerOptions): Promise<PeerListener> {
  const server = new Server(peerChannelOptions(options.limits ?? defaultPeerTransportLimits));
  const implementation: PeerServer = {
    stream: (call, callback) => options.transport.acceptStream(call, callback),
    forward: options.forwarding.unary(),
    forwardStream: options.forwarding.stream(),
    forwardBatches: options.forwarding.batches(),
  };
  server.addService(PeerService, implementation);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.address, serverCredentials(options.tls), (error, boundPort) =>
      error === null ? resolve(boundPort) : reject(error),
    );
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        // The transport answered the Raft streams from peers as it closed, and the forwarding
        // streams end once their requests are answered: forwarded calls in flight get a moment to
        // finish, then they are cut.
        options.forwarding.close();
        const timer = setTimeout(() => server.forceShutdown(), 1000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
