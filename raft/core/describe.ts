// One-line, human-readable renderings of messages, for traces, logs and golden transcripts.

import type { Message } from "./types.js";

/** e.g. "append term 3 prev 5/2 +4 commit 7". */
export function describeMessage(message: Message): string {
  switch (message.type) {
    case "preVote":
    case "vote":
      return `${message.type} term ${message.term} last ${message.lastIndex}/${message.lastTerm}`;
    case "preVoteResponse":
    case "voteResponse":
      return `${message.type} term ${message.term} ${message.granted ? "granted" : "rejected"}`;
    case "append":
      return `append term ${message.term} prev ${message.prevIndex}/${message.prevTerm} +${message.entries.length} commit ${message.commit}${message.commitOnly ? " only" : ""}`;
    case "appendResponse":
      return `appendResponse term ${message.term} ${message.success ? `ok ${message.index}` : `reject ${message.index} hint ${message.hintIndex}/${message.hintTerm}`}`;
    case "heartbeat":
      return `heartbeat term ${message.term} commit ${message.commit}${message.readRound > 0 ? ` read ${message.readRound}` : ""}`;
    case "heartbeatResponse":
      return `heartbeatResponse term ${message.term}${message.readRound > 0 ? ` read ${message.readRound}` : ""}`;
    case "snapshotChunk":
      return `snapshotChunk ${message.meta.index}/${message.meta.term} bytes ${message.offset}-${message.offset + message.chunk.length}/${message.totalBytes}`;
    case "snapshotResponse":
      return `snapshotResponse ${message.snapshotIndex} next ${message.nextOffset}${message.installed ? " installed" : ""}`;
    case "timeoutNow":
      return `timeoutNow term ${message.term}`;
    case "readIndex":
      return `readIndex ${message.context}`;
    case "readIndexResponse":
      return `readIndexResponse ${message.context} at ${message.index}`;
    case "removed":
      return "removed";
  }
}
