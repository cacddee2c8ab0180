// How a node's Raft messages reach its peers. Best effort: Raft tolerates loss, duplication and
// reordering, so a transport may drop under pressure but must never block the sender.
// Implementations: InProcessNetwork (tests, the dev demo) and, in the server issue, mutual-TLS gRPC.

import type { Message } from "../core/index.js";

export interface Transport {
  send(messages: readonly Message[]): void;
  /** Registers the one handler for messages addressed to this node. */
  listen(handler: (message: Message) => void): void;
  close(): Promise<void>;
}
