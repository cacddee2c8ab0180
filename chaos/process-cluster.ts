// The `process` cluster driver: each node a `strongroom server` child process on its own
// 127.0.0.x address, with a fresh development PKI and data directories under the run's directory.
// Faults are real signals: SIGKILL (no shutdown, no flush), SIGSTOP and SIGCONT. A killed node is
// restarted from its data directory and unsealed again, as an operator would.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { createClient, type StrongroomClient } from "../client/index.js";
import type { FailpointControl } from "../server/failpoints.js";
import {
  createCertificateAuthority,
  issueClientCertificate,
  issueNodeCertificate,
  type PemPair,
} from "../server/tls/dev-pki.js";

export interface ProcessClusterOptions {
  readonly directory: string;
  readonly size: number;
  readonly tickMs: number;
  /** 127.0.0.<hostBase + i> for node i; ports from `basePort`. */
  readonly hostBase: number;
  readonly basePort: number;
  /** How to run the strongroom CLI: the node executable's arguments before "server". */
  readonly command: readonly string[];
  /** Extra environment of the node processes (a test's STRONGROOM_TEST_FAULTS). */
  readonly env?: Readonly<Record<string, string>>;
  /** Each node's address (the netns driver's); default 127.0.0.<hostBase + i>. */
  readonly hosts?: readonly string[];
  /** What a node's command runs inside (the netns driver's `ip netns exec NAME`); default nothing. */
  readonly launcher?: (nodeIndex: number) => readonly string[];
  /** Test failpoints on (server/failpoints.ts): crash points and disk stalls can be armed. */
  readonly failpoints?: boolean;
  /** libfaketime's library: each node's wall clock can be set off (`skewClock`); monotonic time is not. */
  readonly faketimeLibrary?: string;
  /** The Raft log is compacted after this many entries (default: the node's). */
  readonly snapshotEveryEntries?: number;
}

export interface NodeEntry {
  readonly id: string;
  readonly index: number;
  readonly host: string;
  readonly configFile: string;
  /** The node's failpoint control file (read at start and on SIGUSR2). */
  readonly failpointFile: string;
  /** libfaketime's offset file for this node ("+0" when its clock is right). */
  readonly clockFile: string;
  child: ChildProcess | null;
  paused: boolean;
}

export class ProcessCluster {
  readonly nodes: NodeEntry[];
  readonly tls: { caFile: string; certFile: string; keyFile: string };
  private share = "";
  private token: string | null = null;

  constructor(private readonly options: ProcessClusterOptions) {
    // Every run starts from nothing: a directory left by an earlier run is cleared.
    rmSync(options.directory, { recursive: true, force: true });
    mkdirSync(options.directory, { recursive: true });
    const write = (name: string, content: string, mode = 0o644) => {
      const file = join(options.directory, name);
      writeFileSync(file, content, { mode });
      return file;
    };
    const clusterCa = createCertificateAuthority("chaos cluster CA");
    const clientCa = createCertificateAuthority("chaos client CA");
    const clusterCaFile = write("cluster-ca.pem", clusterCa.certificatePem);
    const clientCaFile = write("client-ca.pem", clientCa.certificatePem);
    const pair = (name: string, issued: PemPair) => ({
      certificateFile: write(`${name}.pem`, issued.certificatePem),
      privateKeyFile: write(`${name}-key.pem`, issued.privateKeyPem, 0o600),
    });
    const client = pair("workload", issueClientCertificate(clientCa, { name: "chaos-workload" }));
    this.tls = { caFile: clusterCaFile, certFile: client.certificateFile, keyFile: client.privateKeyFile };
    const ids = Array.from({ length: options.size }, (_, i) => `n${i + 1}`);
    const host = (i: number) => options.hosts?.[i] ?? `127.0.0.${options.hostBase + i}`;
    const members = ids.map((id, i) => ({
      id,
      peerAddress: `${host(i)}:${options.basePort + 1}`,
      clientAddress: `${host(i)}:${options.basePort}`,
    }));
    this.nodes = ids.map((id, i) => {
      const files = pair(id, issueNodeCertificate(clusterCa, { nodeId: id, hosts: [host(i)] }));
      const configFile = write(
        `${id}.yaml`,
        stringify({
          nodeId: id,
          dataDir: join(options.directory, "data", id),
          listen: {
            client: `${host(i)}:${options.basePort}`,
            peer: `${host(i)}:${options.basePort + 1}`,
            http: `${host(i)}:${options.basePort + 2}`,
          },
          tls: { peer: { caFile: clusterCaFile, ...files }, client: { caFile: clientCaFile, ...files } },
          members,
          raft: {
            tickMs: options.tickMs,
            electionTicks: 10,
            heartbeatTicks: 1,
            ...(options.snapshotEveryEntries === undefined
              ? {}
              : { snapshotEveryEntries: options.snapshotEveryEntries }),
          },
          log: { level: "error" },
        }),
      );
      const failpointFile = write(`${id}.failpoints.json`, "{}\n");
      const clockFile = write(`${id}.clock`, "+0\n");
      return {
        id,
        index: i,
        host: host(i),
        configFile,
        failpointFile,
        clockFile,
        child: null,
        paused: false,
      };
    });
  }

  /** The port every node's peer listener is on (on its own address). */
  get peerPort(): number {
    return this.options.basePort + 1;
  }

  /** Every node's client address, for the workload's SDK clients. */
  endpoints(): string[] {
    return this.nodes.map((node) => `${node.host}:${this.options.basePort}`);
  }

  /** Starts every node, initializes the cluster (one Shamir share) and unseals every node. */
  async start(): Promise<string> {
    await Promise.all(this.nodes.map((node) => this.spawnNode(node)));
    const client = this.client(this.endpoints());
    try {
      const init = await client.sys.init(
        { shamir: { count: 1, threshold: 1, operatorKeys: [] }, hsm: false, generateHsmKey: false },
        { deadlineMs: 30_000 },
      );
      this.share = init.unsealShares[0] ?? "";
      this.token = init.rootToken;
    } finally {
      client.close();
    }
    for (const node of this.nodes) await this.unseal(node);
    return this.token ?? "";
  }

  /** The node that leads now, if any answers so (asking each node). */
  async leader(): Promise<NodeEntry | null> {
    for (const node of this.nodes) {
      if (node.child === null || node.paused) continue;
      const client = this.client([`${node.host}:${this.options.basePort}`]);
      try {
        const status = await client.cluster.status({}, { deadlineMs: 500 });
        if (status.role === "leader") return node;
      } catch {
        // Down or slow: not the leader we are looking for.
      } finally {
        client.close();
      }
    }
    return null;
  }

  /** The nodes whose process runs and is not paused. */
  running(): NodeEntry[] {
    return this.nodes.filter(
      (node) =>
        node.child !== null && !node.paused && node.child.exitCode === null && node.child.signalCode === null,
    );
  }

  /** The ids of nodes the harness killed at least once (SIGKILL or a crash point). */
  readonly killed = new Set<string>();

  /** Where a node writes its audit trail (the default: its data directory's audit/). */
  auditDirectory(node: NodeEntry): string {
    return join(this.options.directory, "data", node.id, "audit");
  }

  kill(node: NodeEntry): void {
    if (node.child !== null) this.killed.add(node.id);
    node.child?.kill("SIGKILL");
    node.child = null;
    node.paused = false;
  }

  pause(node: NodeEntry): void {
    node.child?.kill("SIGSTOP");
    node.paused = true;
  }

  resume(node: NodeEntry): void {
    node.child?.kill("SIGCONT");
    node.paused = false;
  }

  /** SIGTERM: the graceful shutdown (a leader hands over first); resolves once it exited. */
  async terminate(node: NodeEntry): Promise<void> {
    const child = node.child;
    if (child === null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
    node.child = null;
  }

  /** Brings a killed node back from its data directory, unsealed. */
  async restart(node: NodeEntry): Promise<void> {
    await this.spawnNode(node);
    await this.unseal(node);
  }

  /** Whether every node process is still running (a node that died by itself is a finding). */
  crashed(): string[] {
    return this.nodes
      .filter(
        (node) => node.child !== null && (node.child.exitCode !== null || node.child.signalCode !== null),
      )
      .map((node) => node.id);
  }

  /**
   * SIGTERM to every node (each closes its audit trail with a checkpoint), SIGKILL to any not gone
   * after `graceMs`. Returns the nodes that had to be killed.
   */
  async stopGracefully(graceMs = 10_000): Promise<string[]> {
    const forced: string[] = [];
    await Promise.all(
      this.nodes.map(async (node) => {
        const child = node.child;
        if (child === null || child.exitCode !== null || child.signalCode !== null) {
          node.child = null;
          return;
        }
        if (node.paused) child.kill("SIGCONT");
        child.kill("SIGTERM");
        if (!(await this.exited(node, graceMs))) {
          forced.push(node.id);
          child.kill("SIGKILL");
          await this.exited(node, graceMs);
        }
        node.child = null;
      }),
    );
    return forced;
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (node) => {
        const child = node.child;
        if (child === null) return;
        if (node.paused) child.kill("SIGCONT");
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGKILL");
        await exited;
        node.child = null;
      }),
    );
  }

  /** The cluster's audit key (for checking the nodes' trails' checkpoints). */
  async auditKey(): Promise<Uint8Array> {
    const client = this.client(this.endpoints());
    try {
      return (await client.sys.auditKey({}, { deadlineMs: 30_000 })).key;
    } finally {
      client.close();
    }
  }

  /** An SDK client with the root token (for the workload and the checks). */
  client(endpoints: readonly string[]): StrongroomClient {
    return createClient({ endpoints, tls: this.tls, token: () => this.token, deadlineMs: 10_000 });
  }

  /**
   * Arms test failpoints in a running node (or disarms them with `{}`): the control file is
   * rewritten and the node told to reread it.
   */
  armFailpoints(node: NodeEntry, control: FailpointControl): void {
    if (this.options.failpoints !== true) throw new Error("this cluster was started without test failpoints");
    writeFileSync(node.failpointFile, `${JSON.stringify(control)}\n`);
    node.child?.kill("SIGUSR2");
  }

  /** Resolves true once the node's process exited (a crash point hit), false after `timeoutMs`. */
  async exited(node: NodeEntry, timeoutMs: number): Promise<boolean> {
    const child = node.child;
    if (child === null) return true;
    if (child.exitCode !== null || child.signalCode !== null) return true;
    return await new Promise((resolve) => {
      const timer = setTimeout(() => {
        child.off("exit", onExit);
        resolve(false);
      }, timeoutMs);
      const onExit = () => {
        clearTimeout(timer);
        resolve(true);
      };
      child.once("exit", onExit);
    });
  }

  /** Forgets a process the harness made exit (a crash point), so it is not reported as a crash. */
  forget(node: NodeEntry): void {
    this.killed.add(node.id);
    node.child = null;
    node.paused = false;
  }

  /**
   * Sets a node's wall clock off by `offsetMs` (libfaketime rereads the file every second); its
   * monotonic clock, which Raft's timers use, is left alone, as a real clock step would.
   */
  skewClock(node: NodeEntry, offsetMs: number): void {
    if (this.options.faketimeLibrary === undefined)
      throw new Error("this cluster was started without libfaketime (clock skew)");
    const sign = offsetMs < 0 ? "-" : "+";
    writeFileSync(node.clockFile, `${sign}${Math.abs(offsetMs) / 1000}s\n`);
  }

  private nodeEnv(node: NodeEntry): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, ...this.options.env };
    if (this.options.failpoints === true) env.STRONGROOM_TEST_FAILPOINTS = node.failpointFile;
    if (this.options.faketimeLibrary !== undefined) {
      env.LD_PRELOAD = this.options.faketimeLibrary;
      env.FAKETIME_TIMESTAMP_FILE = node.clockFile;
      env.FAKETIME_CACHE_DURATION = "1";
      env.DONT_FAKE_MONOTONIC = "1";
    }
    return env;
  }

  private async spawnNode(node: NodeEntry): Promise<void> {
    const [executable, ...args] = [
      ...(this.options.launcher?.(node.index) ?? []),
      ...this.options.command,
      "server",
      "--config",
      node.configFile,
    ];
    const child = spawn(executable ?? process.execPath, args, {
      env: this.nodeEnv(node),
      stdio: ["ignore", "ignore", "ignore"],
    });
    node.child = child;
    const health = `http://${node.host}:${this.options.basePort + 2}/v1/sys/live`;
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${node.id} exited at start (code ${child.exitCode})`);
      try {
        await fetch(health, { signal: AbortSignal.timeout(500) });
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`${node.id} did not start in 20 s`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  private async unseal(node: NodeEntry): Promise<void> {
    const client = this.client([`${node.host}:${this.options.basePort}`]);
    try {
      await client.sys.unseal({ share: this.share, nonce: "", reset: false }, { deadlineMs: 30_000 });
    } finally {
      client.close();
    }
  }
}
