// Requests a follower cannot serve (writes, operations that propose) go to the leader over the
// peer channel (Peer.Forward, mutual TLS with the cluster CA): the request as the client sent it,
// the client's identity and token (the leader authorizes it again) and the time left. The leader runs it as its own and answers with the
// response or the error (status, reason, leader hint), which the follower passes on unchanged.
// The leader never forwards again: a leader that lost its role answers NOT_LEADER.

import { Metadata, type ServerUnaryCall, type sendUnaryData, status } from "@grpc/grpc-js";
import {
  type ForwardRequest,
  type ForwardResponse,
  PeerClient,
} from "../proto/gen/strongroom/raft/v1/peer.gen.js";
import type { NodeId } from "../raft/core/index.js";
import type { AnyApiMethod } from "./api/api-method.js";
import { ForwardedError, mapError, NodeError } from "./errors.js";
import { defaultPeerTransportLimits, peerChannelOptions } from "./peer/peer-transport.js";
import type { RequestContext } from "./request.js";
import { channelCredentials } from "./tls/credentials.js";
import { nodeIdOf } from "./tls/identity.js";
import type { TlsFiles } from "./tls/tls-files.js";

export class Forwarder {
  private readonly clients = new Map<NodeId, { address: string; client: PeerClient }>();
  private readonly stopWatchingTls: () => void;

  constructor(
    private readonly peers: ReadonlyMap<NodeId, string>,
    private readonly tls: TlsFiles,
  ) {
    this.stopWatchingTls = tls.onChange(() => this.closeClients());
  }

  /** Runs `method` on `leader` and returns its response, or throws the leader's error. */
  async forward<Request, Response>(
    leader: NodeId,
    method: AnyApiMethod,
    request: Request,
    context: RequestContext,
  ): Promise<Response> {
    const client = this.clientFor(leader);
    const forwardRequest: ForwardRequest = {
      method: method.definition.path,
      request: method.definition.requestSerialize(request),
      clientIdentity: context.identity,
      clientToken: context.token ?? "",
      deadlineMs: Math.max(1, context.deadline - Date.now()),
    };
    const answer = await new Promise<ForwardResponse>((resolve, reject) => {
      client.forward(forwardRequest, new Metadata(), { deadline: context.deadline }, (error, response) => {
        if (error === null) {
          resolve(response);
          return;
        }
        // No connection means the request was never sent: safe to retry elsewhere. Any other
        // failure may have happened after the leader received it: its outcome is unknown.
        const neverSent =
          error.code === status.UNAVAILABLE && /No connection established|ECONNREFUSED/.test(error.details);
        reject(
          new NodeError(
            neverSent ? "NO_LEADER" : "FORWARD_FAILED",
            `the leader ${leader} could not ${neverSent ? "be reached" : "answer"}: ${error.details}`,
            { leaderHint: leader },
          ),
        );
      });
    });
    if (answer.code !== status.OK) {
      throw new ForwardedError(
        answer.code,
        answer.reason,
        answer.message,
        answer.leaderId === "" ? null : answer.leaderId,
      );
    }
    return method.definition.responseDeserialize(Buffer.from(answer.response)) as Response;
  }

  close(): void {
    this.stopWatchingTls();
    this.closeClients();
  }

  private clientFor(leader: NodeId): PeerClient {
    const address = this.peers.get(leader);
    if (address === undefined) throw new NodeError("NO_LEADER", `the leader ${leader} has no known address`);
    const known = this.clients.get(leader);
    if (known !== undefined && known.address === address) return known.client;
    known?.client.close();
    const client = new PeerClient(
      address,
      channelCredentials(this.tls, (certificate) =>
        nodeIdOf(certificate) === leader
          ? undefined
          : `the certificate at ${address} does not name node ${leader}`,
      ),
      peerChannelOptions(defaultPeerTransportLimits),
    );
    this.clients.set(leader, { address, client });
    return client;
  }

  private closeClients(): void {
    for (const { client } of this.clients.values()) client.close();
    this.clients.clear();
  }
}

/**
 * The receiving side of Peer.Forward (on the leader, or on the node a "peer" method was asked
 * of): decodes the request of a known leader- or peer-routed method, runs it
 * with the client's identity and the forwarder's deadline, and answers with the response or the
 * mapped error. Only a peer certificate (cluster CA, naming a node) reaches this port.
 */
export function forwardHandler(
  methods: ReadonlyMap<string, AnyApiMethod>,
  execute: (method: AnyApiMethod, request: unknown, context: RequestContext) => Promise<unknown>,
  deadlineMsMax: number,
) {
  return (
    call: ServerUnaryCall<ForwardRequest, ForwardResponse>,
    callback: sendUnaryData<ForwardResponse>,
  ): void => {
    const peer = nodeIdOf(call.getAuthContext()?.sslPeerCertificate);
    const failed = (error: unknown): void => {
      const mapped = mapError(error);
      callback(null, {
        response: new Uint8Array(0),
        code: mapped.code,
        message: mapped.message,
        reason: mapped.reason,
        leaderId: mapped.leaderHint ?? "",
      });
    };
    const method = methods.get(call.request.method);
    if (peer === null) {
      callback({ code: status.PERMISSION_DENIED, details: "the peer certificate names no node" });
      return;
    }
    if (method === undefined || method.route === "local") {
      failed(new NodeError("INVALID_ARGUMENT", `${call.request.method} is not a method that is forwarded`));
      return;
    }
    let request: unknown;
    try {
      request = method.definition.requestDeserialize(Buffer.from(call.request.request));
    } catch {
      failed(
        new NodeError("INVALID_ARGUMENT", `the forwarded ${call.request.method} request does not decode`),
      );
      return;
    }
    const context: RequestContext = {
      method: method.definition.path,
      identity: call.request.clientIdentity,
      token: call.request.clientToken === "" ? null : call.request.clientToken,
      deadline: Date.now() + Math.min(call.request.deadlineMs, deadlineMsMax),
      forwardedBy: peer,
    };
    execute(method, request, context).then(
      (response) =>
        callback(null, {
          response: method.definition.responseSerialize(response),
          code: status.OK,
          message: "",
          reason: "",
          leaderId: "",
        }),
      failed,
    );
  };
}
