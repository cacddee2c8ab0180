// Transports for nodes in one process, joined by an InProcessNetwork that can cut links, so tests
// and the dev demo can partition and heal a cluster. Delivery is asynchronous (a macrotask per
// batch), like a socket, so a sender never re-enters a receiver.

import type { Message, NodeId } from "../core/index.js";
import type { Transport } from "./transport.js";

export class InProcessNetwork {
  private readonly handlers = new Map<NodeId, (message: Message) => void>();
  private readonly cut = new Set<string>();
  delivered = 0;
  dropped = 0;
  /** Called with every message a node sends, before delivery (tests count them). */
  observe: ((message: Message) => void) | null = null;

  connect(id: NodeId): Transport {
    let closed = false;
    return {
      send: (messages) => {
        // A closed transport is gone from the network: it neither sends nor receives.
        if (!closed) this.send(messages);
      },
      listen: (handler) => {
        this.handlers.set(id, handler);
      },
      close: async () => {
        closed = true;
        this.handlers.delete(id);
      },
    };
  }

  /** Cuts every link to and from `id`. */
  isolate(id: NodeId): void {
    for (const other of this.handlers.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  cutLink(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
  }

  heal(): void {
    this.cut.clear();
  }

  private send(messages: readonly Message[]): void {
    if (messages.length === 0) return;
    if (this.observe !== null) for (const message of messages) this.observe(message);
    const batch = [...messages];
    setImmediate(() => {
      for (const message of batch) {
        const handler = this.handlers.get(message.to);
        if (handler === undefined || this.cut.has(`${message.from}>${message.to}`)) {
          this.dropped++;
          continue;
        }
        this.delivered++;
        handler(message);
      }
    });
  }
}
