// A Watch that survives failures: it follows changes under a prefix and, when its stream ends (the
// node went down, a leader change, a deploy, or a paused or cut-off node left unanswered the pings
// of the channel's keepalive: ClientOptions.keepalive), opens it again on the next endpoint from
// the last revision it delivered, with backoff, until it is closed. An event is delivered once even
// across reconnections. A history no node has any more (HISTORY_COMPACTED from every endpoint: too
// old, or from before the cluster was restored from a backup), or a revision the cluster has not
// reached (REVISION_AHEAD: the endpoints are another cluster's), is reported: the caller re-reads
// what it cares about, and the watch goes on from now.

import { type ClientReadableStream, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { ChangeKind, SecretsService, type WatchEvent } from "../proto/gen/strongroom/v1/secrets.gen.js";
import type { EndpointPool } from "./endpoint-pool.js";
import { fromServiceError, reasonTrailer, type StrongroomError } from "./errors.js";
import { backoffMs } from "./retry-policy.js";

/** The Watch response header with the revision the watch started after (server/api/watch-handler.ts). */
const revisionHeader = "strongroom-revision";

export interface WatchHandlers {
  readonly onEvent: (event: WatchEvent) => void;
  /**
   * The watch is up to date with `revision`: every change under the prefix up to it was delivered
   * (the nodes say so about every second while the cluster moves on elsewhere). A reconnection
   * resumes from here.
   */
  readonly onProgress?: (revision: number) => void;
  /** The stream is open on a node (at the start and after each reconnection): changes from here on arrive. */
  readonly onOpen?: () => void;
  /**
   * A failure it reconnects after; for logs and metrics. A refused token, identity or policy is
   * one: a new token (a token provider), an identity enabled or a policy changed lets it go on.
   */
  readonly onError?: (error: StrongroomError) => void;
  /**
   * Changes may have been missed: the history was compacted past the last revision seen (or the
   * cluster was restored from a backup since), or the cluster is behind it (another cluster's).
   */
  readonly onGap?: (error: StrongroomError) => void;
  /**
   * The watch ended for good, without reconnecting: its request can never succeed (a prefix that
   * is not a valid path prefix, INVALID_ARGUMENT). Without onEnd, onError is told.
   */
  readonly onEnd?: (error: StrongroomError) => void;
}

export interface Watch {
  close(): void;
}

export function startWatch(
  pool: EndpointPool,
  prefix: string,
  fromRevision: number,
  handlers: WatchHandlers,
  retry: { baseMs: number; maxMs: number },
): Watch {
  let closed = false;
  let revision = fromRevision;
  let stream: ClientReadableStream<WatchEvent> | null = null;
  let attempt = 0;
  let endpointIndex = 0;
  let timer: NodeJS.Timeout | null = null;
  /**
   * Once a node refused the revision as older than its history: the last such refusal, and every
   * endpoint tried since, whatever it answered. Each node keeps its own history (one restarted
   * lately keeps less), so every other endpoint is tried before a gap is reported; one that cannot
   * be reached counts as tried, or a node down would hold the gap back for as long as it is.
   */
  let compacted: { readonly error: StrongroomError; readonly tried: Set<string> } | null = null;

  const open = () => {
    if (closed) return;
    const all = pool.order(false);
    const untried = all.filter((candidate) => !compacted?.tried.has(candidate.address));
    const endpoints = untried.length > 0 ? untried : all;
    const endpoint = endpoints[endpointIndex % endpoints.length];
    if (endpoint === undefined) return;
    const opened = endpoint.client.makeServerStreamRequest(
      SecretsService.watch.path,
      SecretsService.watch.requestSerialize,
      SecretsService.watch.responseDeserialize,
      // Progress keeps the resume point near the cluster's revision: a quiet prefix's last change
      // would otherwise fall out of the nodes' history, and a reconnection report a gap.
      { prefix, fromRevision: revision, progressNotify: true },
      new Metadata(),
      {},
    ) as ClientReadableStream<WatchEvent>;
    stream = opened;
    // The node sends its headers once the watch is in place (a refusal comes as trailers alone),
    // with the revision it starts after: a watch "from now" resumes from there, not from a later
    // "now", so changes while it reconnects are not lost.
    opened.on("metadata", (metadata: Metadata) => {
      const startedAfter = Number(metadata.get(revisionHeader)[0] ?? 0);
      if (revision === 0 && Number.isSafeInteger(startedAfter)) revision = startedAfter;
      attempt = 0;
      compacted = null;
      handlers.onOpen?.();
    });
    opened.on("data", (event: WatchEvent) => {
      attempt = 0;
      if (event.revision <= revision && revision !== 0) return;
      revision = event.revision;
      if (event.kind === ChangeKind.CHANGE_KIND_PROGRESS) handlers.onProgress?.(event.revision);
      else handlers.onEvent(event);
    });
    opened.on("error", (error: ServiceError) => {
      if (closed || error.code === status.CANCELLED) return;
      const reason = String(error.metadata?.get(reasonTrailer)[0] ?? "");
      if (reason === "INVALID_ARGUMENT") {
        closed = true;
        (handlers.onEnd ?? handlers.onError)?.(fromServiceError(error, endpoint.address, attempt + 1));
        return;
      }
      const failure = fromServiceError(error, endpoint.address, attempt + 1);
      if (reason === "HISTORY_COMPACTED")
        compacted = { error: failure, tried: compacted?.tried ?? new Set() };
      compacted?.tried.add(endpoint.address);
      const everyEndpointTried =
        compacted !== null && pool.endpoints.every((candidate) => compacted?.tried.has(candidate.address));
      if (reason === "REVISION_AHEAD" || everyEndpointTried) {
        // Ahead is the cluster's answer (after a linearizable barrier); compacted, every node's.
        handlers.onGap?.(reason === "REVISION_AHEAD" || compacted === null ? failure : compacted.error);
        compacted = null;
        revision = 0;
      } else {
        handlers.onError?.(failure);
        endpointIndex++;
      }
      attempt++;
      timer = setTimeout(open, backoffMs(attempt, retry.baseMs, retry.maxMs) + retry.baseMs);
    });
  };
  open();
  return {
    close() {
      closed = true;
      if (timer !== null) clearTimeout(timer);
      stream?.cancel();
    },
  };
}
