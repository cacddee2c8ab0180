// One-way network partitions between nodes on loopback, with nftables: every packet to a node's
// peer port is dropped, so it hears nothing from the other nodes (no votes, no acknowledgements,
// no forwarded calls) while they still hear it, and clients still reach every node's client port.
// It is the one-way partition of the Jepsen vocabulary, and it tests a leader's lease and read
// path: the cut-off leader must step down and never serve a stale read. (A symmetric partition
// needs each node's outgoing connections on its own address, as the netns driver gives them: on
// loopback they all leave from 127.0.0.1.) Each run has its own table, named after the addresses
// and port it runs on, removed at heal and at the end of the run; one an earlier run on the same
// addresses left (its harness killed before it could heal) is removed when the next one starts,
// or its drop rule would cut a node of the new cluster off. Needs root and the nft command
// (Debian's nftables).

import { execFile, execFileSync } from "node:child_process";

export class Partitions {
  private readonly table: string;
  private active = false;

  /** The partitions of the run whose nodes start at 127.0.0.<hostBase>, peer port `peerPort`. */
  constructor(hostBase: number, peerPort: number) {
    this.table = `strongroom_chaos_${hostBase}_${peerPort}`;
  }

  /** Removes the table an earlier run on these addresses left, if any (nft is asked only then). */
  removeLeftover(): void {
    if (!this.leftover()) return;
    nft(`delete table inet ${this.table}\n`);
  }

  /** Drops every packet to `host`'s peer port (the node hears no other node). */
  async cutInbound(host: string, peerPort: number): Promise<void> {
    await this.heal();
    await nftWithoutBlocking(`table inet ${this.table} {
  chain input {
    type filter hook input priority 0; policy accept;
    ip daddr ${host} tcp dport ${peerPort} drop
  }
}
`);
    this.active = true;
  }

  private leftover(): boolean {
    return nftTables().split("\n").includes(`table inet ${this.table}`);
  }

  /** Removes every partition this run made. */
  async heal(): Promise<void> {
    if (!this.active) return;
    this.active = false;
    await nftWithoutBlocking(`delete table inet ${this.table}\n`);
  }
}

function nftTables(): string {
  try {
    return execFileSync("nft", ["list", "tables"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return ""; // no nft, or not root: no run here could have made a table
  }
}

function nft(script: string): void {
  try {
    execFileSync("nft", ["-f", "-"], { input: script, stdio: ["pipe", "ignore", "pipe"] });
  } catch (error) {
    throw nftFailure(String((error as { stderr?: Buffer }).stderr ?? ""), error as Error);
  }
}

/** As nft(), without blocking the harness: its event loop runs the workload's clients meanwhile. */
function nftWithoutBlocking(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile("nft", ["-f", "-"], (error, _stdout, stderr) => {
      if (error === null) resolve();
      else reject(nftFailure(String(stderr), error));
    });
    child.stdin?.end(script);
  });
}

function nftFailure(stderr: string, error: Error): Error {
  return new Error(
    `nft failed (partitions need root and Debian's nftables: apt-get install -y nftables): ${stderr.trim() || error.message}`,
  );
}
