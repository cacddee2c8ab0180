// Secrets.Watch on the client port: a server stream of changes under a prefix (watch-hub.ts). The
// node must be initialized and unsealed, as for any secrets call; the stream follows gRPC flow
// control (it queues while the client does not read, up to the hub's bound, then ends the stream
// with RESOURCE_EXHAUSTED) and ends when the client cancels.

import type { handleServerStreamingCall } from "@grpc/grpc-js";
import type { WatchEvent, WatchRequest } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { type StateLimits, validatePrefix } from "../../storage/state/index.js";
import { toServiceError } from "../errors.js";
import { requireClientIdentity } from "../tls/identity.js";
import type { WatchHub, WatchSink } from "../watch-hub.js";

export function watchHandler(
  hub: WatchHub,
  requireServing: () => void,
  limits: StateLimits,
): handleServerStreamingCall<WatchRequest, WatchEvent> {
  return (call) => {
    const fail = (error: unknown) => call.emit("error", toServiceError(error));
    try {
      requireClientIdentity(call.getAuthContext()?.sslPeerCertificate);
      requireServing();
      if (call.request.prefix !== "") validatePrefix(call.request.prefix, limits);
    } catch (error) {
      fail(error);
      return;
    }
    let ended = false;
    const sink: WatchSink = {
      push: (event) => call.write(event),
      end: (error) => {
        ended = true;
        fail(error);
      },
    };
    let unsubscribe: () => void;
    try {
      unsubscribe = hub.subscribe(call.request.prefix, call.request.fromRevision, sink);
    } catch (error) {
      fail(error);
      return;
    }
    call.on("drain", () => {
      if (!ended) hub.drained(sink);
    });
    call.on("cancelled", () => unsubscribe());
    call.on("close", () => unsubscribe());
  };
}
