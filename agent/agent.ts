// The agent (the sidecar pattern): keeps files rendered from secrets, fresh through a Watch on each
// secret's path plus a periodic re-read, runs a reload command when any file changed, and when the
// cluster cannot be reached leaves the last good files in place (they are only ever replaced by a
// newer rendering). Health says whether every file has been rendered and which refreshes fail.
// A watch that fails (a revoked token, a node gone) is logged once per kind of failure and shown
// in health until it is open again: meanwhile its files are only as fresh as the periodic re-read.

import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { Counter, Gauge, type Registry } from "prom-client";
import type { StrongroomClient, Watch } from "../client/index.js";
import type { AgentSecret } from "./agent-config.js";
import { renderSecret, writeFileAtomically } from "./render.js";

export interface AgentOptions {
  readonly client: StrongroomClient;
  readonly secrets: readonly AgentSecret[];
  readonly reload: { readonly command: readonly string[]; readonly timeoutMs: number } | null;
  readonly refreshIntervalMs: number;
  readonly registry: Registry;
  readonly log: (message: string) => void;
}

export interface SecretState {
  readonly path: string;
  readonly file: string;
  /** The version in the file, or null before the first rendering. */
  version: number | null;
  renderedAt: number | null;
  lastError: string | null;
  digest: string | null;
}

export class Agent {
  private readonly states: SecretState[];
  private readonly watches: Watch[] = [];
  private timer: NodeJS.Timeout | null = null;
  private reloadTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private refreshing = false;
  private readonly renders: Counter;
  private readonly failures: Counter;
  private readonly reloads: Counter<"outcome">;
  private readonly watchFailures: Counter;
  /** By secret path: the failure of its watch, until the watch is open again. */
  private readonly watchErrors = new Map<string, { kind: string; message: string }>();

  constructor(private readonly options: AgentOptions) {
    this.states = options.secrets.map((secret) => ({
      path: secret.path,
      file: secret.file,
      version: null,
      renderedAt: null,
      lastError: null,
      // A file left by an earlier run counts as written: rewritten (and reloaded) only if it differs.
      digest: existsSync(secret.file)
        ? createHash("sha256").update(readFileSync(secret.file)).digest("hex")
        : null,
    }));
    const registers = [options.registry];
    this.renders = new Counter({
      name: "strongroom_agent_renders_total",
      help: "Files written with a changed secret.",
      registers,
    });
    this.failures = new Counter({
      name: "strongroom_agent_refresh_failures_total",
      help: "Secret reads or file writes that failed (the last good file stays).",
      registers,
    });
    this.reloads = new Counter({
      name: "strongroom_agent_reloads_total",
      help: "Reload commands run, by outcome (ok, failed).",
      labelNames: ["outcome"],
      registers,
    });
    this.watchFailures = new Counter({
      name: "strongroom_agent_watch_failures_total",
      help: "Watch streams that failed (each reconnects; meanwhile files follow the periodic re-read).",
      registers,
    });
    const states = this.states;
    new Gauge({
      name: "strongroom_agent_secrets_failing",
      help: "Secrets whose last refresh failed (their files are the last good ones).",
      registers,
      collect() {
        this.set(states.filter((state) => state.lastError !== null).length);
      },
    });
  }

  /** Renders every file once, then keeps them fresh. */
  async start(): Promise<void> {
    for (const path of new Set(this.options.secrets.map((secret) => secret.path))) {
      // The watch prefix is the path itself; events for longer paths under it are not ours.
      this.watches.push(
        this.options.client.watch(path, 0, {
          onEvent: (event) => {
            if (event.path === path) void this.refresh(path);
          },
          onGap: () => void this.refresh(path),
          onOpen: () => {
            if (this.watchErrors.delete(path)) this.options.log(`watch of ${path} is open again`);
          },
          onError: (error) => {
            this.watchFailures.inc();
            // Once per kind of failure: a reconnecting watch fails every few seconds while it lasts.
            const kind = `${error.code}/${error.reason}`;
            if (this.watchErrors.get(path)?.kind !== kind) {
              this.options.log(
                `watch of ${path} failed (it reconnects; meanwhile its files are re-read every ${this.options.refreshIntervalMs} ms): ${error.message}`,
              );
            }
            this.watchErrors.set(path, { kind, message: error.message });
          },
          onEnd: (error) => {
            this.options.log(
              `watch of ${path} ended (its files are re-read every ${this.options.refreshIntervalMs} ms): ${error.message}`,
            );
            this.watchErrors.set(path, { kind: "ended", message: error.message });
          },
        }),
      );
    }
    await this.refreshAll();
    this.timer = setInterval(() => void this.refreshAll(), this.options.refreshIntervalMs);
  }

  /** Every file's state, with the failure of its secret's watch (null while it is open), for health. */
  status(): { ready: boolean; secrets: readonly (SecretState & { watchError: string | null })[] } {
    return {
      ready: this.states.every((state) => state.renderedAt !== null),
      secrets: this.states.map((state) => ({
        ...state,
        watchError: this.watchErrors.get(state.path)?.message ?? null,
      })),
    };
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    if (this.reloadTimer !== null) clearTimeout(this.reloadTimer);
    for (const watch of this.watches) watch.close();
  }

  /** Re-reads every secret; a round still running (the cluster slow or down) is not doubled. */
  private async refreshAll(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      for (const path of new Set(this.options.secrets.map((secret) => secret.path))) await this.refresh(path);
    } finally {
      this.refreshing = false;
    }
  }

  /** Reads `path` and rewrites each of its files whose content changed. */
  private async refresh(path: string): Promise<void> {
    if (this.stopped) return;
    const targets = this.options.secrets.filter((secret) => secret.path === path);
    let secret: { version: number; value: Uint8Array };
    try {
      secret = await this.options.client.secrets.get({ path });
    } catch (error) {
      this.failed(targets, error);
      return;
    }
    let changed = false;
    for (const target of targets) {
      const state = this.states.find((candidate) => candidate.file === target.file) as SecretState;
      try {
        const content = renderSecret(target.template, { path, version: secret.version, value: secret.value });
        const digest = createHash("sha256").update(content).digest("hex");
        if (digest !== state.digest) {
          writeFileAtomically(target.file, content, target.mode);
          this.renders.inc();
          changed ||= state.digest !== null;
          state.digest = digest;
          this.options.log(`wrote ${target.file} (${path} version ${secret.version})`);
        }
        state.version = secret.version;
        state.renderedAt = Date.now();
        state.lastError = null;
      } catch (error) {
        this.failed([target], error);
      }
    }
    if (changed) this.scheduleReload();
  }

  private failed(targets: readonly AgentSecret[], error: unknown): void {
    this.failures.inc();
    const message = (error as Error).message ?? String(error);
    for (const target of targets) {
      const state = this.states.find((candidate) => candidate.file === target.file);
      if (state !== undefined) state.lastError = message;
    }
    this.options.log(`refresh of ${targets[0]?.path ?? "?"} failed (keeping the last good file): ${message}`);
  }

  /** One reload for changes that arrive together. */
  private scheduleReload(): void {
    const reload = this.options.reload;
    if (reload === null || this.reloadTimer !== null) return;
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      const [command, ...args] = reload.command;
      execFile(command ?? "", args, { timeout: reload.timeoutMs }, (error) => {
        this.reloads.inc({ outcome: error === null ? "ok" : "failed" });
        this.options.log(
          error === null ? `ran ${reload.command.join(" ")}` : `reload command failed: ${error.message}`,
        );
      });
    }, 100);
  }
}
