// `strongroom agent --config FILE`: runs the agent (agent/) until SIGINT or SIGTERM. The cluster
// connection is the config's `cluster` section, or the CLI's environment variables. Exit 2 on a
// bad config; the agent keeps running through cluster outages (its files stay as they were).

import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { clientFromEnv, createClient } from "../client/index.js";

export function registerAgentCommand(program: Command): void {
  program
    .command("agent")
    .description(
      "keep files rendered from secrets, fresh through Watch; run a reload command when they change",
    )
    .requiredOption("--config <file>", "the agent's YAML config (see docs/agent.md)")
    .action(async (options: { config: string }) => {
      // Loaded when the agent runs (metrics, its HTTP endpoint): other commands need none of it.
      const { Registry } = await import("prom-client");
      const { Agent } = await import("../agent/agent.js");
      const { AgentConfigError, loadAgentConfig } = await import("../agent/agent-config.js");
      const { startAgentHttp } = await import("../agent/agent-http.js");
      let loaded: ReturnType<typeof loadAgentConfig>;
      try {
        loaded = loadAgentConfig(options.config);
      } catch (error) {
        if (!(error instanceof AgentConfigError)) throw error;
        process.stderr.write(`strongroom agent: ${error.message}\n`);
        process.exit(2);
      }
      const { config, secrets } = loaded;
      const cluster = config.cluster;
      const client =
        cluster === undefined
          ? clientFromEnv()
          : createClient({
              endpoints: cluster.endpoints,
              tls: { caFile: cluster.caFile, certFile: cluster.certFile, keyFile: cluster.keyFile },
              token: () =>
                cluster.tokenFile === undefined
                  ? null
                  : readFileSync(cluster.tokenFile, "utf8").trim() || null,
            });
      const registry = new Registry();
      const log = (message: string) => process.stderr.write(`${new Date().toISOString()} ${message}\n`);
      const agent = new Agent({
        client,
        secrets,
        reload: config.reload ?? null,
        refreshIntervalMs: config.refreshIntervalMs,
        registry,
        log,
      });
      const http = config.http === undefined ? null : await startAgentHttp(config.http, agent, registry);
      await agent.start();
      log(
        agent.status().ready
          ? "agent ready: every file is rendered"
          : "agent started: some files are not rendered yet",
      );
      const stop = async () => {
        agent.stop();
        client.close();
        await http?.close();
        process.exit(0);
      };
      process.once("SIGINT", () => void stop());
      process.once("SIGTERM", () => void stop());
    });
}
