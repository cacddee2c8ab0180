// A TCP relay that can go silent: what a client whose host vanished (a crash, a cut link) looks
// like from the far end. Frozen, it moves no more bytes either way and closes nothing, so the
// connection stays open and nothing sent on it is ever answered.

import { connect, createServer, type Server, type Socket } from "node:net";

export class FreezableRelay {
  private readonly sockets = new Set<Socket>();
  private frozen = false;

  private constructor(
    private readonly server: Server,
    /** The port it listens on, on the target's host. */
    readonly port: number,
  ) {}

  /** Listens on `target.host` (a port of the kernel's choice) and relays to `target`. */
  static async start(target: { readonly host: string; readonly port: number }): Promise<FreezableRelay> {
    let relay: FreezableRelay | null = null;
    const server = createServer((downstream) => relay?.accept(downstream, target));
    const port = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, target.host, () => resolve((server.address() as { port: number }).port));
    });
    relay = new FreezableRelay(server, port);
    return relay;
  }

  /** From now on, bytes in either direction are dropped, and neither side's close is passed on. */
  freeze(): void {
    this.frozen = true;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(downstream: Socket, target: { readonly host: string; readonly port: number }): void {
    const upstream = connect(target.port, target.host);
    for (const [from, to] of [
      [downstream, upstream],
      [upstream, downstream],
    ] as const) {
      this.sockets.add(from);
      // Dropped, not held: a frozen relay never thaws, and the stream behind it is never read.
      from.on("data", (chunk: Buffer) => {
        if (!this.frozen) to.write(chunk);
      });
      from.once("close", () => {
        this.sockets.delete(from);
        // Frozen, the far side hears nothing of it either (close() ends what is left).
        if (!this.frozen) to.destroy();
      });
      from.on("error", () => {
        // Reported through "close".
      });
    }
  }
}
