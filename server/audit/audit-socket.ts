// An audit sink that streams entries to a collector (a SIEM, a log shipper) over a Unix socket
// ("unix:/run/audit.sock") or TCP ("tcp:host:port"), one JSON line each with the node and a
// sequence number. An entry counts as taken once the kernel has accepted its write. A broken
// connection fails the entry (the trail counts the sink as failing) and is dialled again for the
// next one, within a bounded connect time, so a collector that is down costs each call at most that.
// The sequence is the trail's for this sink, from the node's start: an entry that could not be sent
// uses its number too, so a collector sees the entries it missed as a gap.

import { connect, type Socket } from "node:net";
import { type AuditRecord, auditFormatVersion } from "./audit-chain.js";

export interface AuditSocketOptions {
  /** "unix:<path>" or "tcp:<host>:<port>". */
  readonly address: string;
  readonly node: string;
  readonly connectTimeoutMs: number;
  /** The next sequence number of this sink (kept by the trail across reconnections). */
  readonly nextSeq: () => number;
}

const addressPattern = /^(?:unix:(.+)|tcp:(.+):(\d{1,5}))$/;

export function isAuditSocketAddress(address: string): boolean {
  return addressPattern.test(address);
}

export class AuditSocket {
  private socket: Socket | null = null;
  private connecting: Promise<Socket> | null = null;

  constructor(private readonly options: AuditSocketOptions) {
    if (!isAuditSocketAddress(options.address))
      throw new Error(`an audit socket is unix:<path> or tcp:<host>:<port>, got ${options.address}`);
  }

  async append(record: AuditRecord): Promise<void> {
    // Numbered and timed when offered, before the connection: a failed entry leaves its gap.
    const line = `${JSON.stringify({ v: auditFormatVersion, node: this.options.node, seq: this.options.nextSeq(), time: new Date().toISOString(), ...record })}\n`;
    const socket = await this.connected();
    await new Promise<void>((resolve, reject) => {
      socket.write(line, (error) => {
        if (error === undefined || error === null) resolve();
        else {
          this.drop();
          reject(error);
        }
      });
    });
  }

  close(): void {
    this.drop();
  }

  private connected(): Promise<Socket> {
    if (this.socket !== null && !this.socket.destroyed) return Promise.resolve(this.socket);
    this.connecting ??= new Promise<Socket>((resolve, reject) => {
      const match = addressPattern.exec(this.options.address);
      const socket =
        match?.[1] !== undefined
          ? connect({ path: match[1] })
          : connect({ host: match?.[2] ?? "", port: Number(match?.[3]) });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new Error(`the audit collector at ${this.options.address} did not accept a connection in time`),
        );
      }, this.options.connectTimeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        // Later errors surface on the next write; until then the socket is simply dropped.
        socket.on("error", () => this.drop());
        socket.on("close", () => {
          if (this.socket === socket) this.socket = null;
        });
        this.socket = socket;
        resolve(socket);
      });
      socket.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private drop(): void {
    this.socket?.destroy();
    this.socket = null;
  }
}
