// The `netns` driver's network: each node in a network namespace of its own, joined to the others by
// a bridge in the harness's namespace, so every node has its own address and every connection
// between two nodes can be cut, made lossy or slowed, in either direction:
//
//   - partitions and loss are real packet drops, by nftables inside the sender's namespace (before
//     address translation, so they match the node a packet is for);
//   - latency and jitter come from a LinkProxy per ordered pair of nodes and port (peer, client),
//     in the harness's namespace: nftables in the dialing node's namespace redirects a connection
//     to the proxy of that link, which passes it on after the delay. Each connection's bytes cross
//     the proxy both ways, so a link of round trip R gets R/2 each way. (The kernel here has no
//     netem; TLS is end to end, the proxy sees only ciphertext.)
//
// Clients (the workload, in the harness's namespace) reach every node directly, without delay or
// drops: faults are between nodes. Needs root, iproute2 and nftables. Everything it creates is
// named after `tag` and removed by `destroy`, and removed first if an earlier run left it.

import { execFile, execFileSync } from "node:child_process";
import { LinkProxy } from "./link-proxy.js";

export interface NetnsNetworkOptions {
  readonly size: number;
  /** 1-250: names (sr<tag>...) and the subnet 10.77.<tag>.0/24. */
  readonly tag: number;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly httpPort: number;
  /** The first of the harness's proxy ports (2 per ordered pair of nodes). */
  readonly proxyBasePort: number;
  /** Uniform in [0, 1), for the links' jitter (the run's seeded generator). */
  readonly random: () => number;
}

/** What a node's outgoing packets to each other node suffer: dropped, or dropped at random. */
interface NodeFilter {
  /** Indexes of nodes this node's packets never reach. */
  readonly blocked: Set<number>;
  /** Per mille of this node's packets to each index lost. */
  readonly lossPerMille: Map<number, number>;
}

export class NetnsNetwork {
  readonly hosts: readonly string[];
  /** The harness's address on the bridge: clients' and proxies' connections to nodes leave from it. */
  readonly gateway: string;
  /**
   * The proxies listen on an address of their own, from which no connection ever leaves: a port
   * there cannot be taken by an outgoing connection's ephemeral port (nor by its TIME_WAIT).
   */
  private readonly proxyAddress: string;
  private readonly proxies = new Map<string, LinkProxy>();
  private readonly filters: NodeFilter[];
  private created = false;

  constructor(private readonly options: NetnsNetworkOptions) {
    if (!Number.isInteger(options.tag) || options.tag < 1 || options.tag > 250)
      throw new Error("the netns tag must be an integer from 1 to 250");
    this.hosts = Array.from({ length: options.size }, (_, i) => `10.77.${options.tag}.${i + 1}`);
    this.gateway = `10.77.${options.tag}.254`;
    this.proxyAddress = `10.77.${options.tag}.253`;
    this.filters = this.hosts.map(() => ({ blocked: new Set(), lossPerMille: new Map() }));
  }

  namespace(index: number): string {
    return `sr${this.options.tag}n${index + 1}`;
  }

  /** The command prefix that runs a node inside its namespace. */
  launcher(index: number): string[] {
    return ["ip", "netns", "exec", this.namespace(index)];
  }

  async create(): Promise<void> {
    this.destroyInterfaces();
    const bridge = this.bridge();
    run("ip", ["link", "add", bridge, "type", "bridge"]);
    run("ip", ["addr", "add", `${this.gateway}/24`, "dev", bridge]);
    run("ip", ["addr", "add", `${this.proxyAddress}/24`, "dev", bridge]);
    run("ip", ["link", "set", bridge, "up"]);
    this.created = true;
    for (const [index, host] of this.hosts.entries()) {
      const namespace = this.namespace(index);
      const outside = `sr${this.options.tag}v${index + 1}`;
      run("ip", ["netns", "add", namespace]);
      run("ip", ["link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace]);
      run("ip", ["link", "set", outside, "master", bridge, "up"]);
      run("ip", ["-n", namespace, "addr", "add", `${host}/24`, "dev", "eth0"]);
      run("ip", ["-n", namespace, "link", "set", "eth0", "up"]);
      run("ip", ["-n", namespace, "link", "set", "lo", "up"]);
      // A node's address is its namespace's only one, so its outgoing connections take their local
      // ports from the same address: kept off its listen ports, which sit in Linux's ephemeral
      // range (32768-60999), or a restarted node may find one taken (CI: "cannot listen on
      // ...:39002, the port is in use").
      const { clientPort, peerPort, httpPort } = this.options;
      run("ip", [
        "netns",
        "exec",
        namespace,
        "sh",
        "-c",
        `echo ${clientPort},${peerPort},${httpPort} > /proc/sys/net/ipv4/ip_local_reserved_ports`,
      ]);
    }
    for (const from of this.hosts.keys()) {
      for (const to of this.hosts.keys()) {
        if (from === to) continue;
        for (const [kind, port] of [
          ["peer", this.options.peerPort],
          ["client", this.options.clientPort],
        ] as const) {
          const proxy = new LinkProxy(
            { host: this.proxyAddress, port: this.proxyPort(from, to, kind) },
            { host: this.hosts[to] ?? "", port },
            this.options.random,
          );
          await proxy.start();
          this.proxies.set(`${from}>${to}>${kind}`, proxy);
        }
      }
    }
    await this.applyRules([...this.hosts.keys()]);
  }

  /** The round trip between two nodes (both directions of every connection between them). */
  setLinkLatency(a: number, b: number, rttMs: number, jitterMs: number): void {
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      for (const kind of ["peer", "client"] as const)
        this.proxies.get(`${from}>${to}>${kind}`)?.setDelay({ delayMs: rttMs / 2, jitterMs: jitterMs / 2 });
    }
  }

  /** A latency fault: `extraMs` more each way on every link of the node; 0 heals it. */
  slowNode(index: number, extraMs: number): void {
    for (const [key, proxy] of this.proxies) {
      const [from, to] = key.split(">").map(Number);
      if (from === index || to === index) proxy.setExtraDelay(extraMs);
    }
  }

  /** A symmetric partition: nodes in different groups reach nothing of each other. */
  async partition(groups: readonly (readonly number[])[]): Promise<void> {
    const groupOf = new Map<number, number>();
    for (const [group, members] of groups.entries()) for (const member of members) groupOf.set(member, group);
    for (const [index, filter] of this.filters.entries()) {
      filter.blocked.clear();
      for (const other of this.hosts.keys())
        if (other !== index && groupOf.get(other) !== groupOf.get(index)) filter.blocked.add(other);
    }
    await this.applyRules([...this.hosts.keys()]);
  }

  /**
   * A bridge: the two sides reach nothing of each other, and the node in the middle reaches both
   * (Jepsen's "bridge": each side alone is a minority, the middle node makes either a majority).
   */
  async partitionWithBridge(
    left: readonly number[],
    middle: number,
    right: readonly number[],
  ): Promise<void> {
    for (const [index, filter] of this.filters.entries()) {
      filter.blocked.clear();
      if (index === middle) continue;
      const other = left.includes(index) ? right : left;
      for (const node of other) filter.blocked.add(node);
    }
    await this.applyRules([...this.hosts.keys()]);
  }

  /** One way: no other node's packets reach `index`; its own still reach them. */
  async cutInbound(index: number): Promise<void> {
    const others = [...this.hosts.keys()].filter((other) => other !== index);
    for (const other of others) this.filters[other]?.blocked.add(index);
    await this.applyRules(others);
  }

  /** Loses `percent` of the packets on every link of the node, each way. */
  async lossy(index: number, percent: number): Promise<void> {
    const perMille = Math.round(percent * 10);
    for (const [other, filter] of this.filters.entries()) {
      if (other === index) {
        for (const peer of this.hosts.keys()) if (peer !== index) filter.lossPerMille.set(peer, perMille);
      } else {
        filter.lossPerMille.set(index, perMille);
      }
    }
    await this.applyRules([...this.hosts.keys()]);
  }

  /** Removes every partition, loss and latency fault (the links' own latency stays). */
  async heal(): Promise<void> {
    for (const filter of this.filters) {
      filter.blocked.clear();
      filter.lossPerMille.clear();
    }
    for (const proxy of this.proxies.values()) proxy.setExtraDelay(0);
    await this.applyRules([...this.hosts.keys()]);
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.proxies.values()].map((proxy) => proxy.close()));
    this.proxies.clear();
    if (this.created) this.destroyInterfaces();
    this.created = false;
  }

  private bridge(): string {
    return `sr${this.options.tag}br`;
  }

  private proxyPort(from: number, to: number, kind: "peer" | "client"): number {
    return this.options.proxyBasePort + (from * this.options.size + to) * 2 + (kind === "peer" ? 0 : 1);
  }

  /**
   * Rewrites each namespace's one table, every namespace at once (a partition lands at one moment,
   * not node by node), without blocking the harness: its event loop runs the workload's clients
   * and every link's proxy. (With one blocking nft call after another, each fault froze every link
   * and every client for 200-250 ms before it took effect.)
   */
  private async applyRules(indexes: readonly number[]): Promise<void> {
    await Promise.all(indexes.map((index) => this.applyNamespaceRules(index)));
  }

  /** Rewrites the namespace's one table in one transaction (create, delete, create). */
  private async applyNamespaceRules(index: number): Promise<void> {
    const filter = this.filters[index];
    if (filter === undefined) return;
    const redirects: string[] = [];
    for (const [to, host] of this.hosts.entries()) {
      if (to === index) continue;
      redirects.push(
        `ip daddr ${host} tcp dport ${this.options.peerPort} dnat to ${this.proxyAddress}:${this.proxyPort(index, to, "peer")}`,
        `ip daddr ${host} tcp dport ${this.options.clientPort} dnat to ${this.proxyAddress}:${this.proxyPort(index, to, "client")}`,
      );
    }
    const drops = [...filter.blocked].map((to) => `ip daddr ${this.hosts[to]} drop`);
    for (const [to, perMille] of filter.lossPerMille)
      if (perMille > 0) drops.push(`ip daddr ${this.hosts[to]} numgen random mod 1000 < ${perMille} drop`);
    // Drops run before address translation (priority -300 < -100): they see the node a packet is for.
    const script = `table ip strongroom_chaos {}
delete table ip strongroom_chaos
table ip strongroom_chaos {
  chain drops {
    type filter hook output priority -300; policy accept;
${drops.map((rule) => `    ${rule}`).join("\n")}
  }
  chain redirects {
    type nat hook output priority -100; policy accept;
${redirects.map((rule) => `    ${rule}`).join("\n")}
  }
}
`;
    await runWithoutBlocking("ip", ["netns", "exec", this.namespace(index), "nft", "-f", "-"], script);
  }

  private destroyInterfaces(): void {
    for (const index of this.hosts.keys()) {
      // Deleting the namespace deletes its end of the veth pair, and so the pair.
      runQuietly("ip", ["netns", "delete", this.namespace(index)]);
      runQuietly("ip", ["link", "delete", `sr${this.options.tag}v${index + 1}`]);
    }
    runQuietly("ip", ["link", "delete", this.bridge()]);
  }
}

function run(command: string, args: readonly string[]): void {
  try {
    execFileSync(command, args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (error) {
    throw commandFailure(command, args, String((error as { stderr?: Buffer }).stderr ?? ""), error as Error);
  }
}

/** As run(), without blocking the harness's event loop (see applyRules). */
function runWithoutBlocking(command: string, args: readonly string[], input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, (error, _stdout, stderr) => {
      if (error === null) resolve();
      else reject(commandFailure(command, args, String(stderr), error));
    });
    child.stdin?.end(input);
  });
}

function commandFailure(command: string, args: readonly string[], stderr: string, error: Error): Error {
  return new Error(
    `${command} ${args.join(" ")} failed (the netns driver needs root, iproute2 and nftables): ${stderr.trim() || error.message}`,
  );
}

function runQuietly(command: string, args: readonly string[]): void {
  try {
    execFileSync(command, args, { stdio: "ignore" });
  } catch {
    // Not there: nothing to remove.
  }
}
