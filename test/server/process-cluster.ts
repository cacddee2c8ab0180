// Nodes as child processes (`strongroom server --config FILE`), each on its own 127.0.0.x address,
// killed with real signals. The CLI is bundled once; each process starts as plain node.

import { type ChildProcess, spawn } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
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

export class NodeProcess {
  private child: ChildProcess | null = null;
  private exit: Promise<number | null> = Promise.resolve(null);
  readonly stderr: string[] = [];
  /** How many times the node logged that it read its test failpoints. */
  private failpointReads = 0;

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
    // Its log (at the tests' level, warn): only what says it read its failpoints is kept, counted.
    child.stdout?.on("data", (chunk: Buffer) => {
      this.failpointReads += chunk.toString().split(failpointsReadMessage).length - 1;
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      // Bounded: only the last lines are kept, for a failing test's message.
      this.stderr.push(chunk.toString());
      if (this.stderr.length > 50) this.stderr.shift();
    });
    this.child = child;
    this.exit = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
    await this.waitForHealth();
  }

  /** Answers health at all (any status code): the process is up and serving. */
  async waitForHealth(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.child?.exitCode !== null) throw new Error(`${this.spec.id} exited: ${this.stderr.join("")}`);
      try {
        await fetch(this.healthUrl(), { signal: AbortSignal.timeout(500) });
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    throw new Error(`${this.spec.id} did not answer health in ${timeoutMs} ms: ${this.stderr.join("")}`);
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
    writeFileSync(file, JSON.stringify(control));
    this.signal("SIGUSR2");
    await eventually(() => this.failpointReads > before, 10_000);
  }

  /** Resolves once the process has exited, with its code (null: ended by a signal). */
  exited(): Promise<number | null> {
    return this.exit;
  }

  /** SIGKILL: no shutdown, no flush. */
  async kill(): Promise<void> {
    this.child?.kill("SIGKILL");
    await this.exit;
    this.child = null;
  }

  /** SIGTERM: the graceful shutdown; resolves with the exit code. */
  async terminate(): Promise<number | null> {
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
