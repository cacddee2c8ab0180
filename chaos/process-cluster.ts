// The `process` cluster driver: each node a `strongroom server` child process on its own
// 127.0.0.x address, with a fresh development PKI and data directories under the run's directory.
// Faults are real signals: SIGKILL (no shutdown, no flush), SIGSTOP and SIGCONT. A killed node is
// restarted from its data directory and unsealed again, as an operator would.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { createClient, type ReadRouting, type StrongroomClient } from "../client/index.js";
import { prepareSoftHsmToken, type SoftHsmToken } from "../hsm/pkcs11/softhsm-token.js";
import { type FailpointControl, failpointsReadMessage } from "../server/failpoints.js";
import {
  createCertificateAuthority,
  issueClientCertificate,
  issueNodeCertificate,
  type PemPair,
} from "../server/tls/dev-pki.js";
import { MetricsText } from "./metrics-text.js";

/** How long a running node may take to reread its test failpoints after SIGUSR2 (a loaded machine). */
const failpointsReadWaitMs = 10_000;

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
  /**
   * How a signal reaches a node (the docker driver's: `docker kill`, `docker pause`); default: to
   * its child process.
   */
  readonly signaller?: (nodeIndex: number, signal: NodeJS.Signals) => void;
  /** Test failpoints on (server/failpoints.ts): crash points and disk stalls can be armed. */
  readonly failpoints?: boolean;
  /** libfaketime's library: each node's wall clock can be set off (`skewClock`); monotonic time is not. */
  readonly faketimeLibrary?: string;
  /** The Raft log is compacted after this many entries (default: the node's). */
  readonly snapshotEveryEntries?: number;
  /** The nodes' raft.snapshotLogToStateRatio (default: the node's; 0: every snapshotEveryEntries). */
  readonly snapshotLogToStateRatio?: number;
  /** The nodes' raft.leaseReads (default: off). */
  readonly leaseReads?: boolean;
  /** Entries kept behind a snapshot (default: the node's). */
  readonly retainEntries?: number;
  /** shamir (default): one unseal share, entered at every start; hsm: a SoftHSM token, auto-unseal. */
  readonly seal?: "shamir" | "hsm";
  /** More of every node's config (top-level sections, e.g. a benchmark's `auth.rateLimits`). */
  readonly nodeConfig?: Readonly<Record<string, unknown>>;
  /** The nodes' log level (default info). */
  readonly logLevel?: "error" | "warn" | "info";
  /** Each node's region, by address slot: in its config and in every member list. */
  readonly regions?: readonly string[];
  /**
   * Each node's data directory on a tmpfs of its own of this many MiB (root), so that a nemesis
   * can fill one node's disk (fillDisk) and no other's. Unmounted when the cluster closes.
   */
  readonly dataDiskMiB?: number;
  /**
   * Where each node's audit trail goes: "data" (default), its data directory's audit/; "own",
   * `<directory>/audit/<id>`, off the data disk (a full data disk then stops the node at its next
   * state or Raft log write, its audit still writing).
   */
  readonly auditDisk?: "data" | "own";
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
  /** The members now (a replaced node leaves this list for `retired`). */
  readonly nodes: NodeEntry[] = [];
  /** Nodes removed from the cluster by a membership change (their trails are still checked). */
  readonly retired: NodeEntry[] = [];
  readonly tls: { caFile: string; certFile: string; keyFile: string };
  /** The SoftHSM token that seals the cluster (seal: hsm), or null (one Shamir share). */
  readonly hsm: SoftHsmToken | null;
  private share = "";
  private token: string | null = null;
  private readonly clusterCa: PemPair;
  private readonly files: { readonly clusterCa: string; readonly clientCa: string };
  /** The next new node's number (n<k>): never reused (addresses are). */
  private nextIdNumber = 0;
  /** Set by close(): no node starts after it. */
  private closed = false;

  constructor(private readonly options: ProcessClusterOptions) {
    // Every run starts from nothing: a directory left by an earlier run is cleared (its data
    // disks first, if a run stopped by SIGKILL left them mounted).
    unmountUnder(options.directory);
    rmSync(options.directory, { recursive: true, force: true });
    mkdirSync(options.directory, { recursive: true });
    this.clusterCa = createCertificateAuthority("chaos cluster CA");
    const clientCa = createCertificateAuthority("chaos client CA");
    this.files = {
      clusterCa: this.write("cluster-ca.pem", this.clusterCa.certificatePem),
      clientCa: this.write("client-ca.pem", clientCa.certificatePem),
    };
    const client = this.pair("workload", issueClientCertificate(clientCa, { name: "chaos-workload" }));
    this.tls = {
      caFile: this.files.clusterCa,
      certFile: client.certificateFile,
      keyFile: client.privateKeyFile,
    };
    if (options.seal === "hsm") {
      this.hsm = prepareSoftHsmToken(options.directory, "strongroom-chaos");
      if (this.hsm === null)
        throw new Error(
          "seal: hsm needs SoftHSM2: apt-get install -y softhsm2 libsofthsm2 (Debian's packages)",
        );
    } else {
      this.hsm = null;
    }
    const founders = Array.from({ length: options.size }, (_, i) => this.memberAt(i));
    try {
      for (const member of founders) this.nodes.push(this.createNode(member, founders, "new"));
    } catch (error) {
      // The data disks mounted before the one that failed go too.
      unmountUnder(options.directory);
      throw error;
    }
    this.nextIdNumber = options.size + 1;
  }

  /**
   * A new node's entry, for a membership change: a new id, its certificate and config (joining
   * the cluster through the current members), not started. It takes the address of the node it
   * replaces, as a replacement behind the same DNS name would, so that clients configured with the
   * cluster's addresses keep reaching it. Process driver only.
   */
  newMember(replacing: NodeEntry): NodeEntry {
    if (this.options.hosts !== undefined) throw new Error("membership changes need the process driver");
    const member = this.memberAt(replacing.index, this.nextIdNumber++);
    const known = this.nodes.map((node) => this.memberAt(node.index, Number(node.id.slice(1))));
    return this.createNode(member, [...known, member], "existing");
  }

  /** Moves a node removed from the membership out of `nodes`. */
  retire(node: NodeEntry): void {
    const position = this.nodes.indexOf(node);
    if (position >= 0) this.nodes.splice(position, 1);
    this.retired.push(node);
  }

  /** Adds a started joiner to `nodes`. */
  admit(node: NodeEntry): void {
    this.nodes.push(node);
  }

  /**
   * The operator's way in for a replacement (docs/operations.md): a new node at `replacing`'s
   * address (newMember) added to the membership as a learner, admitted and started, not unsealed.
   */
  async addLearner(replacing: NodeEntry): Promise<NodeEntry> {
    const joiner = this.newMember(replacing);
    await this.changeMembership(
      (client) =>
        client.cluster.addMember({
          nodeId: joiner.id,
          peerAddress: `${joiner.host}:${this.peerPort}`,
          clientAddress: `${joiner.host}:${this.clientPort}`,
          voter: false,
        }),
      (members) => members.some((member) => member.nodeId === joiner.id),
    );
    this.admit(joiner);
    await this.launch(joiner);
    return joiner;
  }

  /** Node n<idNumber> on address slot `index`. */
  private memberAt(index: number, idNumber = index + 1) {
    const host = this.options.hosts?.[index] ?? `127.0.0.${this.options.hostBase + index}`;
    return {
      id: `n${idNumber}`,
      index,
      host,
      peerAddress: `${host}:${this.options.basePort + 1}`,
      clientAddress: `${host}:${this.options.basePort}`,
      region: this.options.regions?.[index] ?? "",
    };
  }

  private createNode(
    member: ReturnType<ProcessCluster["memberAt"]>,
    members: readonly ReturnType<ProcessCluster["memberAt"]>[],
    clusterState: "new" | "existing",
  ): NodeEntry {
    const { id, host } = member;
    const { options } = this;
    const files = this.pair(id, issueNodeCertificate(this.clusterCa, { nodeId: id, hosts: [host] }));
    if (options.dataDiskMiB !== undefined) {
      const dataDir = join(options.directory, "data", id);
      mkdirSync(dataDir, { recursive: true });
      try {
        execFileSync(
          "mount",
          ["-t", "tmpfs", "-o", `size=${options.dataDiskMiB}m,mode=0700`, "tmpfs", dataDir],
          {
            stdio: ["ignore", "ignore", "pipe"],
          },
        );
      } catch (error) {
        const said = String((error as { stderr?: Buffer }).stderr ?? "")
          .trim()
          .split("\n")[0];
        throw new Error(
          `cluster.dataDiskMiB mounts a tmpfs per node, which needs root: ${said || (error as Error).message}`,
        );
      }
    }
    const configFile = this.write(
      `${id}.yaml`,
      stringify({
        nodeId: id,
        dataDir: join(options.directory, "data", id),
        listen: {
          client: `${host}:${options.basePort}`,
          peer: `${host}:${options.basePort + 1}`,
          http: `${host}:${options.basePort + 2}`,
        },
        tls: {
          peer: { caFile: this.files.clusterCa, ...files },
          client: { caFile: this.files.clientCa, ...files },
        },
        members: members.map(({ id, peerAddress, clientAddress, region }) => ({
          id,
          peerAddress,
          clientAddress,
          ...(region === "" ? {} : { region }),
        })),
        ...(member.region === "" ? {} : { region: member.region }),
        clusterState,
        raft: {
          tickMs: options.tickMs,
          electionTicks: 10,
          heartbeatTicks: 1,
          ...(options.snapshotEveryEntries === undefined
            ? {}
            : { snapshotEveryEntries: options.snapshotEveryEntries }),
          ...(options.snapshotLogToStateRatio === undefined
            ? {}
            : { snapshotLogToStateRatio: options.snapshotLogToStateRatio }),
          ...(options.retainEntries === undefined ? {} : { retainEntries: options.retainEntries }),
          ...(options.leaseReads === true ? { leaseReads: true } : {}),
        },
        // A node whose HSM was away tries again within 5 s of its return, not the default 30 s,
        // and abandons a call on a hung HSM after 3 s, not 10: an experiment's faults come on a
        // schedule.
        ...(this.hsm === null
          ? {}
          : { seal: { pkcs11: { ...this.hsm.pkcs11, callTimeoutMs: 3000 }, autoUnsealRetryMaxMs: 5000 } }),
        ...(options.auditDisk === "own" ? { audit: { directories: [this.ownAuditDirectory(id)] } } : {}),
        ...options.nodeConfig,
        // Every start appends to <id>.log beside the config: what to read when a run fails.
        log: { level: options.logLevel ?? "info" },
      }),
    );
    return {
      id,
      index: member.index,
      host,
      configFile,
      failpointFile: this.write(`${id}.failpoints.json`, "{}\n"),
      clockFile: this.write(`${id}.clock`, "+0\n"),
      child: null,
      paused: false,
    };
  }

  private write(name: string, content: string, mode = 0o644): string {
    const file = join(this.options.directory, name);
    writeFileSync(file, content, { mode });
    return file;
  }

  private pair(name: string, issued: PemPair) {
    return {
      certificateFile: this.write(`${name}.pem`, issued.certificatePem),
      privateKeyFile: this.write(`${name}-key.pem`, issued.privateKeyPem, 0o600),
    };
  }

  /** The port every node's client listener is on (on its own address). */
  get clientPort(): number {
    return this.options.basePort;
  }

  /** Whether the node says it is sealed (false when it does not answer). */
  async sealed(node: NodeEntry): Promise<boolean> {
    const client = this.client([`${node.host}:${this.options.basePort}`]);
    try {
      return (await client.cluster.status({}, { deadlineMs: 2000 })).sealed;
    } catch {
      return false;
    } finally {
      client.close();
    }
  }

  /** The node's last auto-unseal failure (SealStatus.hsm_last_error), or "" when it does not say. */
  async hsmLastError(node: NodeEntry): Promise<string> {
    const client = this.client([`${node.host}:${this.options.basePort}`]);
    try {
      return (await client.sys.sealStatus({}, { deadlineMs: 2000 })).hsmLastError;
    } catch {
      return "";
    } finally {
      client.close();
    }
  }

  /**
   * A membership change through the members (it goes to the leader), until `done` says the
   * membership shows it: a change whose outcome is unknown (the leader changed under it, as in an
   * experiment that kills leaders) is looked for, and made again if it did not happen.
   */
  async changeMembership(
    change: (client: StrongroomClient) => Promise<unknown>,
    done: (members: readonly { readonly nodeId: string; readonly voter: boolean }[]) => boolean,
    timeoutMs = 30_000,
  ): Promise<void> {
    const client = this.client(this.endpoints());
    const deadline = performance.now() + timeoutMs;
    try {
      for (;;) {
        let failure: unknown = null;
        try {
          await change(client);
          return;
        } catch (error) {
          failure = error;
        }
        try {
          if (done((await client.cluster.members({}, { deadlineMs: 2000 })).members)) return;
        } catch {
          // No answer yet: the change is tried again.
        }
        if (performance.now() > deadline) throw failure;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    } finally {
      client.close();
    }
  }

  /**
   * Waits until the node has applied what the leader had committed when the wait began; resolves
   * with how long that took.
   */
  async catchUp(node: NodeEntry, timeoutMs: number): Promise<number> {
    const started = performance.now();
    const leader = await this.leader();
    const target = leader === null ? 0 : await this.commitIndexOf(leader);
    const client = this.client([`${node.host}:${this.options.basePort}`]);
    try {
      for (;;) {
        try {
          const status = await client.cluster.status({}, { deadlineMs: 1000 });
          if (status.appliedIndex >= target) return performance.now() - started;
        } catch {
          // Busy installing a snapshot: asked again below.
        }
        if (performance.now() - started > timeoutMs)
          throw new Error(`${node.id} did not catch up to index ${target} in ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      client.close();
    }
  }

  /**
   * Waits until the leader's log starts after `index` (strongroom_raft_log_first_index), so that
   * a node whose log ends at `index` can only catch up by a snapshot. False after `timeoutMs`.
   */
  async compactedPast(index: number, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const leader = await this.leader();
      if (leader !== null && (await this.metricOf(leader, "strongroom_raft_log_first_index")) > index + 1)
        return true;
      if (performance.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** The node's /metrics now; empty when it does not answer within a second. */
  async metricsOf(node: NodeEntry): Promise<MetricsText> {
    const text = await fetch(`http://${node.host}:${this.options.basePort + 2}/metrics`, {
      signal: AbortSignal.timeout(1000),
    }).then(
      (response) => response.text(),
      () => "",
    );
    return MetricsText.parse(text);
  }

  /** A metric of the node without labels, from its /metrics; 0 when it does not answer within a second or lacks it. */
  async metricOf(node: NodeEntry, name: string): Promise<number> {
    return (await this.metricsOf(node)).value(name) ?? 0;
  }

  async commitIndexOf(node: NodeEntry): Promise<number> {
    const client = this.client([`${node.host}:${this.options.basePort}`]);
    try {
      return (await client.cluster.status({}, { deadlineMs: 2000 })).commitIndex;
    } finally {
      client.close();
    }
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
    // A node left running by an earlier run (on the same addresses) would answer in our nodes'
    // place: refuse to start rather than test it.
    for (const node of this.nodes) {
      const health = `http://${node.host}:${this.options.basePort + 2}/v1/sys/live`;
      const answered = await fetch(health, { signal: AbortSignal.timeout(500) }).then(
        () => true,
        () => false,
      );
      if (answered)
        throw new Error(
          `something already answers on ${node.host}:${this.options.basePort + 2} (a node left by an earlier run?); stop it or choose other --host-base/--port`,
        );
    }
    await Promise.all(this.nodes.map((node) => this.spawnNode(node)));
    const client = this.client(this.endpoints());
    try {
      const oneShare = { count: 1, threshold: 1, operatorKeys: [] };
      const init = await client.sys.init(
        this.hsm === null
          ? { shamir: oneShare, hsm: false, generateHsmKey: false }
          : { hsm: true, generateHsmKey: true, recovery: oneShare },
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
    return this.options.auditDisk === "own"
      ? this.ownAuditDirectory(node.id)
      : join(this.options.directory, "data", node.id, "audit");
  }

  /** A node's audit directory with auditDisk "own": beside the data directories, not on them. */
  private ownAuditDirectory(id: string): string {
    return join(this.options.directory, "audit", id);
  }

  kill(node: NodeEntry): void {
    if (node.child !== null) this.killed.add(node.id);
    this.signal(node, "SIGKILL");
    node.child = null;
    node.paused = false;
  }

  pause(node: NodeEntry): void {
    this.signal(node, "SIGSTOP");
    node.paused = true;
  }

  resume(node: NodeEntry): void {
    this.signal(node, "SIGCONT");
    node.paused = false;
  }

  /** Sends `signal` to a running node, the driver's way. */
  private signal(node: NodeEntry, signal: NodeJS.Signals): void {
    if (node.child === null) return;
    if (this.options.signaller === undefined) node.child.kill(signal);
    else this.options.signaller(node.index, signal);
  }

  /** SIGTERM: the graceful shutdown (a leader hands over first); resolves once it exited. */
  async terminate(node: NodeEntry): Promise<void> {
    const child = node.child;
    if (child === null) return;
    this.signal(node, "SIGTERM");
    if (!(await this.exited(node, 30_000))) this.signal(node, "SIGKILL");
    await this.exited(node, 10_000);
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
        if (node.paused) this.signal(node, "SIGCONT");
        this.signal(node, "SIGTERM");
        if (!(await this.exited(node, graceMs))) {
          forced.push(node.id);
          this.signal(node, "SIGKILL");
          await this.exited(node, graceMs);
        }
        node.child = null;
      }),
    );
    return forced;
  }

  /** Kills every node, as stop(), and starts none after it: a heal still under way restarts nothing. */
  async close(): Promise<void> {
    this.closed = true;
    await this.stop();
    // The data disks go with their data (the logs and the report are beside them, on disk).
    if (this.options.dataDiskMiB !== undefined) unmountUnder(this.options.directory);
  }

  /**
   * Fills the file system of `node`'s data directory (its own tmpfs: dataDiskMiB) with a file of
   * zeros until a write fails ENOSPC; answers the file, to remove at the heal.
   */
  fillDisk(node: NodeEntry): string {
    if (this.options.dataDiskMiB === undefined) throw new Error("filling a disk needs cluster.dataDiskMiB");
    const filler = join(this.options.directory, "data", node.id, "chaos-filler");
    const descriptor = openSync(filler, "w", 0o600);
    const chunk = Buffer.alloc(1024 * 1024);
    try {
      // Bounded: the tmpfs holds dataDiskMiB, and a write that takes only part is the last.
      for (let i = 0; i <= this.options.dataDiskMiB; i++)
        if (writeSync(descriptor, chunk) < chunk.length) break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
    } finally {
      closeSync(descriptor);
    }
    return filler;
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (node) => {
        const child = node.child;
        if (child === null) return;
        if (node.paused) this.signal(node, "SIGCONT");
        this.signal(node, "SIGKILL");
        // A process that already exited (at start, say) has no exit event to come.
        await this.exited(node, 10_000);
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

  /**
   * Seals a running node as its operator would (Sys.Seal with the root token); a leader hands its
   * leadership over first. `unseal` undoes it.
   */
  async seal(node: NodeEntry): Promise<void> {
    const client = this.client([`${node.host}:${this.options.basePort}`]);
    try {
      await client.sys.seal({}, { deadlineMs: 10_000 });
    } finally {
      client.close();
    }
  }

  /**
   * An SDK client with the root token (for the workload and the checks), reads routed as
   * `readRouting`, trying `endpoints` in the order given: a run's clients reach the same nodes when
   * it is replayed from its seed (the SDK's default order is random).
   */
  client(endpoints: readonly string[], readRouting: ReadRouting = "sticky"): StrongroomClient {
    return createClient({
      endpoints,
      endpointOrder: "given",
      tls: this.tls,
      token: () => this.token,
      deadlineMs: 10_000,
      readRouting,
    });
  }

  /**
   * Arms test failpoints in a node (or disarms them with `{}`): rewrites its control file and, when
   * it runs, tells it to reread it and returns once its log says it did (or it died: a crash point
   * hit at once). A node that is down reads the file when it starts; one paused, when it resumes.
   */
  async armFailpoints(node: NodeEntry, control: FailpointControl): Promise<void> {
    if (this.options.failpoints !== true) throw new Error("this cluster was started without test failpoints");
    const log = join(this.options.directory, `${node.id}.log`);
    const logged = statSync(log, { throwIfNoEntry: false })?.size ?? 0;
    writeFileSync(node.failpointFile, `${JSON.stringify(control)}\n`);
    if (node.child === null) return;
    this.signal(node, "SIGUSR2");
    // At level error the node does not log that it reread them.
    if (this.options.logLevel === "error") return;
    const deadline = Date.now() + failpointsReadWaitMs;
    while (this.running().includes(node) && !textSince(log, logged).includes(failpointsReadMessage)) {
      if (Date.now() > deadline)
        throw new Error(`${node.id} did not reread its test failpoints in ${failpointsReadWaitMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
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
    if (this.hsm !== null) env.SOFTHSM2_CONF = this.hsm.configPath;
    if (this.options.faketimeLibrary !== undefined) {
      env.LD_PRELOAD = this.options.faketimeLibrary;
      env.FAKETIME_TIMESTAMP_FILE = node.clockFile;
      env.FAKETIME_CACHE_DURATION = "1";
      env.DONT_FAKE_MONOTONIC = "1";
    }
    return env;
  }

  private async spawnNode(node: NodeEntry): Promise<void> {
    if (this.closed) throw new Error(`the cluster was closed: ${node.id} is not started`);
    const logFile = openSync(join(this.options.directory, `${node.id}.log`), "a");
    const [executable, ...args] = [
      ...(this.options.launcher?.(node.index) ?? []),
      ...this.options.command,
      "server",
      "--config",
      node.configFile,
    ];
    const child = spawn(executable ?? process.execPath, args, {
      env: this.nodeEnv(node),
      stdio: ["ignore", logFile, logFile],
    });
    // The child has its own copy of the descriptor.
    closeSync(logFile);
    node.child = child;
    const health = `http://${node.host}:${this.options.basePort + 2}/v1/sys/live`;
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null)
        throw new Error(`${node.id} exited at start (code ${child.exitCode}): ${this.lastLogLine(node)}`);
      try {
        await fetch(health, { signal: AbortSignal.timeout(500) });
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`${node.id} did not start in 20 s`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  /** The last line of a node's log: what a node that exited at start said (`strongroom server: …`). */
  private lastLogLine(node: NodeEntry): string {
    const lines = readFileSync(join(this.options.directory, `${node.id}.log`), "utf8")
      .trim()
      .split("\n");
    return lines.at(-1) ?? "";
  }

  /**
   * Starts a node's process and waits for its health endpoint, without unsealing it (a joiner, or
   * a node that is to crash before it could be unsealed).
   */
  async launch(node: NodeEntry): Promise<void> {
    await this.spawnNode(node);
  }

  /**
   * Unseals a started node: with the share (Shamir), or by waiting for it to unseal itself from
   * the HSM (within `timeoutMs`: its auto-unsealer retries with backoff while the HSM is away).
   */
  async unseal(node: NodeEntry, timeoutMs = 30_000): Promise<void> {
    const client = this.client([`${node.host}:${this.options.basePort}`]);
    try {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        if (this.hsm === null) {
          // As an operator would: a share that did not arrive (a connection dropped while the node
          // starts) is handed in again, until the node says it is unsealed.
          try {
            await client.sys.unseal({ share: this.share, nonce: "", reset: false }, { deadlineMs: 5000 });
            return;
          } catch (error) {
            if (performance.now() > deadline) throw error;
            const sealed = await client.cluster
              .status({}, { deadlineMs: 1000 })
              .then((status) => status.sealed)
              .catch(() => true);
            if (!sealed) return;
            await new Promise((resolve) => setTimeout(resolve, 100));
            continue;
          }
        }
        try {
          if (!(await client.cluster.status({}, { deadlineMs: 1000 })).sealed) return;
        } catch {
          // Starting, or busy: asked again below.
        }
        if (performance.now() > deadline)
          throw new Error(`${node.id} did not unseal itself in ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      client.close();
    }
  }
}

/** What a file holds past `offset` (a node's log since the harness asked it something). */
function textSince(file: string, offset: number): string {
  const descriptor = openSync(file, "r");
  try {
    const buffer = Buffer.alloc(Math.max(0, fstatSync(descriptor).size - offset));
    readSync(descriptor, buffer, 0, buffer.length, offset);
    return buffer.toString("utf8");
  } finally {
    closeSync(descriptor);
  }
}

/** Unmounts every file system mounted under `directory` (the nodes' data disks), deepest first. */
function unmountUnder(directory: string): void {
  let mounts: string;
  try {
    mounts = readFileSync("/proc/mounts", "utf8");
  } catch {
    return;
  }
  const prefix = `${directory.replace(/\/+$/, "")}/`;
  const under = mounts
    .split("\n")
    // Fields: device, mount point (spaces as \040), type, ...
    .map((line) => (line.split(" ")[1] ?? "").replaceAll("\\040", " "))
    .filter((point) => point.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
  // Lazy: a process the harness lost track of may still hold a file there.
  for (const point of under) execFileSync("umount", ["-l", point]);
}
