// Nodes as child processes (`strongroom server --config FILE`), each on its own 127.0.0.x address,
// killed with real signals. The CLI is bundled once; each process starts as plain node.

import { type ChildProcess, spawn } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type NodeEntry, ProcessCluster } from "../../chaos/process-cluster.js";
import { type FailpointControl, failpointsReadMessage } from "../../server/failpoints.js";
import { bundleChild } from "../support/bundle-child.js";
import { eventually } from "../support/eventually.js";
import type { NodeSpec } from "./cluster-harness.js";

let cliScript: string | null = null;

export async function bundledCli(): Promise<string> {
  cliScript ??= await bundleChild(
    new URL("../../cli/main.ts", import.meta.url),
    "strongroom-cli",
    "packages",
  );
  return cliScript;
}

/**
 * Three initialized, unsealed node processes (the chaos harness's cluster: 20 ms ticks, test
 * failpoints on, warnings logged) under `root`, on 127.0.0.<hostBase>-<hostBase + 2> with ports
 * from `basePort`.
 */
export async function startFailpointCluster(
  root: string,
  hostBase: number,
  basePort: number,
): Promise<ProcessCluster> {
  const cluster = new ProcessCluster({
    directory: join(root, "cluster"),
    size: 3,
    tickMs: 20,
    hostBase,
    basePort,
    command: [process.execPath, await bundledCli()],
    failpoints: true,
    logLevel: "warn",
  });
  await cluster.start();
  return cluster;
}

/** The node of `cluster` that says it leads, once one does; fails after `timeoutMs`. */
export async function leaderOf(cluster: ProcessCluster, timeoutMs = 10_000): Promise<NodeEntry> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const leader = await cluster.leader();
    if (leader !== null) return leader;
    if (Date.now() > deadline) throw new Error(`no leader in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** How many of a node's last log lines (warn and above, the tests' level) are kept for a failure's message. */
const logLinesKept = 30;

export class NodeProcess {
  private child: ChildProcess | null = null;
  private exit: Promise<number | null> = Promise.resolve(null);
  readonly stderr: string[] = [];
  /** The node's last log lines (JSON, warn and above), for the message of an exit nobody asked for. */
  private readonly logLines: string[] = [];
  private partialLogLine = "";
  /** How many times the node logged that it read its test failpoints. */
  private failpointReads = 0;
  /** Set by kill(), terminate(), exited() and an armed crash: an exit the test asked for, not reported. */
  private exitRequested = false;
  /** How the last process ended (null while it runs). */
  private ended: { code: number | null; signal: NodeJS.Signals | null } | null = null;

  constructor(
    readonly spec: NodeSpec,
    private readonly configFile: string,
    private readonly env: NodeJS.ProcessEnv = {},
  ) {}

  async start(): Promise<void> {
    const script = await bundledCli();
    const child = spawn(process.execPath, [script, "server", "--config", this.configFile], {
      env: { ...process.env, ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.exitRequested = false;
    this.ended = null;
    this.partialLogLine = "";
    // Its log (at the tests' level, warn): what says it read its failpoints is counted; the last
    // lines are kept for the message of an exit nobody asked for.
    child.stdout?.on("data", (chunk: Buffer) => {
      const text = chunk.toString();
      this.failpointReads += text.split(failpointsReadMessage).length - 1;
      this.keepLogLines(text);
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      // Bounded: only the last lines are kept, for a failing test's message.
      this.stderr.push(chunk.toString());
      if (this.stderr.length > 50) this.stderr.shift();
    });
    this.child = child;
    this.exit = new Promise((resolve) =>
      child.on("exit", (code, signal) => {
        this.ended = { code, signal };
        // A node that died on its own (a crash, a fatal stop) shows in the test's output with what
        // it said last, whatever the test then fails on (a refused connection, a stream's end).
        if (!this.exitRequested) console.error(`${this.spec.id} exited on its own: ${this.describe()}`);
        resolve(code);
      }),
    );
    await this.waitForHealth();
  }

  /** How the process ended (if it did), and its last log and stderr lines: for a failure's message. */
  describe(): string {
    const how =
      this.ended === null
        ? `running (pid ${this.child?.pid ?? "none"})`
        : `exit code ${this.ended.code}, signal ${this.ended.signal}`;
    const log = [...this.logLines, this.partialLogLine].filter((line) => line !== "");
    return `${how}\nlast log lines:\n${log.join("\n") || "(none)"}\nstderr:\n${this.stderr.join("") || "(none)"}`;
  }

  /** The node's last log lines (JSON, warn and above; the last ones kept). */
  loggedLines(): readonly string[] {
    return this.logLines;
  }

  private keepLogLines(text: string): void {
    const lines = (this.partialLogLine + text).split("\n");
    this.partialLogLine = lines.pop() ?? "";
    for (const line of lines) {
      if (line === "") continue;
      this.logLines.push(line);
      if (this.logLines.length > logLinesKept) this.logLines.shift();
    }
  }

  /** Answers health at all (any status code): the process is up and serving. */
  async waitForHealth(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.child === null || this.ended !== null)
        throw new Error(`${this.spec.id} exited: ${this.describe()}`);
      try {
        await fetch(this.healthUrl(), { signal: AbortSignal.timeout(500) });
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    throw new Error(`${this.spec.id} did not answer health in ${timeoutMs} ms: ${this.describe()}`);
  }

  async healthStatus(): Promise<number> {
    const response = await fetch(this.healthUrl(), { signal: AbortSignal.timeout(1000) });
    return response.status;
  }

  /** Sends `signal` (SIGSTOP pauses the node, SIGCONT resumes it). */
  signal(signal: NodeJS.Signals): void {
    this.child?.kill(signal);
  }

  /**
   * Arms the node's test failpoints (its STRONGROOM_TEST_FAILPOINTS file), or disarms them with
   * `{}`: rewrites the file, sends SIGUSR2, and returns once the node has logged that it reread it.
   */
  async armFailpoints(control: FailpointControl): Promise<void> {
    const file = this.env.STRONGROOM_TEST_FAILPOINTS;
    if (file === undefined) throw new Error(`${this.spec.id} was started without test failpoints`);
    const before = this.failpointReads;
    // A crash armed is an exit the test asked for.
    if (Object.values(control).includes("crash")) this.exitRequested = true;
    writeFileSync(file, JSON.stringify(control));
    this.signal("SIGUSR2");
    await eventually(() => this.failpointReads > before, 10_000);
  }

  /** Resolves once the process has exited, with its code (null: ended by a signal): an exit the test awaits, not reported. */
  exited(): Promise<number | null> {
    this.exitRequested = true;
    return this.exit;
  }

  /** SIGKILL: no shutdown, no flush. */
  async kill(): Promise<void> {
    this.exitRequested = true;
    this.child?.kill("SIGKILL");
    await this.exit;
    this.child = null;
  }

  /** SIGTERM: the graceful shutdown; resolves with the exit code. */
  async terminate(): Promise<number | null> {
    this.exitRequested = true;
    this.child?.kill("SIGTERM");
    const code = await this.exit;
    this.child = null;
    return code;
  }

  /** The running process's id (null before the start and after the exit). */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get address(): string {
    return `${this.spec.host}:${this.spec.clientPort}`;
  }

  private healthUrl(): string {
    return `http://${this.spec.host}:${this.spec.httpPort}/v1/sys/health`;
  }
}

/**
 * The end of a test file's cluster of child processes: its clients closed, every node SIGKILLed
 * (paused ones too), its PKI and its directory removed.
 */
export async function tearDownProcessCluster(parts: {
  readonly clients: readonly { close(): void }[];
  readonly processes: readonly NodeProcess[];
  readonly pki: { cleanup(): void };
  readonly root: string;
}): Promise<void> {
  for (const client of parts.clients) client.close();
  await Promise.all(parts.processes.map((node) => node.kill()));
  parts.pki.cleanup();
  rmSync(parts.root, { recursive: true, force: true });
}
