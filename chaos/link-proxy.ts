// A TCP proxy that delays what crosses it: the latency and jitter of a link between two nodes
// (this machine's kernel has no netem, so delay is added here, as toxiproxy does). Each direction
// of a connection is a queue: a chunk leaves `delay ± jitter` after it arrived, never before the
// chunk ahead of it (TCP keeps order). The delay can change while connections are open (a latency
// fault); what is queued keeps the time it was given.

import { connect, createServer, type Server, type Socket } from "node:net";

export interface LinkDelay {
  /** One way, milliseconds. */
  readonly delayMs: number;
  /** Each chunk's delay is drawn uniformly from delayMs ± jitterMs (never below 0). */
  readonly jitterMs: number;
}

export class LinkProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private delay: LinkDelay = { delayMs: 0, jitterMs: 0 };
  private extraDelayMs = 0;

  constructor(
    private readonly listen: { readonly host: string; readonly port: number },
    private readonly target: { readonly host: string; readonly port: number },
    /** Uniform in [0, 1), for the jitter: the run's seeded generator, so a seed replays it. */
    private readonly random: () => number,
  ) {}

  /** The link's own delay (its regions' distance). */
  setDelay(delay: LinkDelay): void {
    this.delay = delay;
  }

  /** Added to the link's own delay while a latency fault lasts; 0 heals it. */
  setExtraDelay(ms: number): void {
    this.extraDelayMs = ms;
  }

  async start(): Promise<void> {
    const server = createServer((downstream) => this.accept(downstream));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.listen.port, this.listen.host, () => resolve());
    });
    this.server = server;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise((resolve) => server.close(resolve));
  }

  private accept(downstream: Socket): void {
    const upstream = connect(this.target.port, this.target.host);
    for (const socket of [downstream, upstream]) {
      socket.setNoDelay(true);
      this.sockets.add(socket);
      socket.once("close", () => {
        this.sockets.delete(socket);
        // One side gone: the other goes too (a reset, as the far end would see it).
        downstream.destroy();
        upstream.destroy();
      });
      socket.on("error", () => {
        // Reported through "close"; an unhandled error event would crash the harness.
      });
    }
    this.relay(downstream, upstream);
    this.relay(upstream, downstream);
  }

  /** Moves `from`'s bytes to `to`, each chunk after its delay, in order. */
  private relay(from: Socket, to: Socket): void {
    const queue: { readonly chunk: Buffer; readonly dueAt: number }[] = [];
    let timer: NodeJS.Timeout | null = null;
    let lastDueAt = 0;
    let ended = false;
    const flush = () => {
      timer = null;
      const now = performance.now();
      while (queue.length > 0 && (queue[0]?.dueAt ?? 0) <= now) {
        const next = queue.shift();
        if (next !== undefined && !to.destroyed) to.write(next.chunk);
      }
      if (queue.length > 0) timer = setTimeout(flush, Math.max(0, (queue[0]?.dueAt ?? now) - now));
      else if (ended && !to.destroyed) to.end();
    };
    from.on("data", (chunk: Buffer) => {
      const { delayMs, jitterMs } = this.delay;
      const base = delayMs + this.extraDelayMs;
      const drawn = Math.max(0, base + (this.random() * 2 - 1) * jitterMs);
      lastDueAt = Math.max(performance.now() + drawn, lastDueAt);
      queue.push({ chunk, dueAt: lastDueAt });
      if (timer === null) timer = setTimeout(flush, Math.max(0, lastDueAt - performance.now()));
    });
    from.once("end", () => {
      ended = true;
      if (timer === null) flush();
    });
  }
}
