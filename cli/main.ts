// The `strongroom` command: `server` runs a node; `dev` a local cluster of real nodes (npm start);
// `kv`, `policy`, `token`, `operator`, `cluster` and `audit` talk to a cluster (docs/cli.md);
// `agent` is the sidecar; `demo` narrates the Raft core in one process.
//
// The commands that run nodes (server, dev, demo, chaos), the agent and the pki commands load
// their code when they run: the server's modules take as long to load as everything else
// together, and an operator's `strongroom kv get` should not wait for them (0.65 s to 0.32 s per
// command on a 2-core VM).

import { rmSync } from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import { strongroomVersion } from "../server/version.js";
import { registerAccessCommands } from "./access-commands.js";
import { registerAgentCommand } from "./agent-command.js";
import { registerAuditCommands } from "./audit-command.js";
import { registerChaosCommand } from "./chaos-command.js";
import { registerClusterCommands } from "./cluster-commands.js";
import { failureText } from "./command-support.js";
import { registerClientCommands } from "./kv-commands.js";
import { registerLifecycleCommands } from "./lifecycle-commands.js";
import { registerPkiCommands } from "./pki-commands.js";

function positiveInteger(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isSafeInteger(parsed) || parsed <= 0)
      throw new InvalidArgumentError(`${name} must be a positive integer.`);
    return parsed;
  };
}

const program = new Command()
  .name("strongroom")
  .description("A distributed, replicated secret store.")
  .version(strongroomVersion(), "-V, --version", "print the version")
  // Only before a command: `kv get PATH --version 3` is the command's own flag.
  .enablePositionalOptions()
  .showHelpAfterError()
  .exitOverride((error) => {
    // Usage errors exit 2, like the tools operators know.
    process.exit(error.exitCode === 0 ? 0 : error.code === "commander.help" ? 0 : 2);
  });

program
  .command("dev")
  .description(
    "run a local cluster of real nodes: initialized, unsealed, with a development PKI (what npm start runs)",
  )
  .option("--dir <directory>", "where data, certificates and the dev shares go", ".strongroom-dev")
  .option("--host <address>", "the loopback address the nodes listen on", "127.0.0.1")
  .option(
    "--base-port <port>",
    "node i uses base+10(i-1) (client), +1 (peer), +2 (HTTP)",
    positiveInteger("--base-port"),
    8200,
  )
  .option("--nodes <count>", "cluster size (3 or 5)", positiveInteger("--nodes"), 3)
  .option("--reset", "delete the dev directory first: a new PKI, a new cluster", false)
  .option("--seal <kind>", "auto (SoftHSM when installed, else Shamir), shamir or hsm", "auto")
  .action(
    async (options: {
      dir: string;
      host: string;
      basePort: number;
      nodes: number;
      reset: boolean;
      seal: string;
    }) => {
      if (options.seal !== "auto" && options.seal !== "shamir" && options.seal !== "hsm") {
        process.stderr.write("strongroom dev: --seal must be auto, shamir or hsm\n");
        process.exit(2);
      }
      if (options.nodes !== 3 && options.nodes !== 5) {
        process.stderr.write("strongroom dev: --nodes must be 3 or 5\n");
        process.exit(2);
      }
      // The last node's HTTP port is base + 10·(nodes − 1) + 2.
      const portMax = 65_535 - 10 * (options.nodes - 1) - 2;
      if (options.basePort > portMax) {
        process.stderr.write(
          `strongroom dev: --base-port must be at most ${portMax} for ${options.nodes} nodes\n`,
        );
        process.exit(2);
      }
      if (options.reset) rmSync(options.dir, { recursive: true, force: true });
      const { startDevCluster } = await import("./dev-cluster.js");
      const cluster = await startDevCluster({
        directory: options.dir,
        host: options.host,
        basePort: options.basePort,
        nodes: options.nodes,
        seal: options.seal,
        print: (line) => process.stdout.write(`${line}\n`),
      }).catch((error: unknown) => {
        // The nodes it started are stopped.
        process.stderr.write(`strongroom dev: ${failureText(error)}\n`);
        process.exit(1);
      });
      const stop = () => {
        cluster.stop().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    },
  );

program
  .command("demo")
  .description(
    "run a Raft cluster (3 or 5 nodes) in this process and narrate an election, writes, reads and a failover",
  )
  .option("--nodes <count>", "cluster size (3 or 5)", positiveInteger("--nodes"), 3)
  .option("--tick-ms <ms>", "milliseconds per Raft tick", positiveInteger("--tick-ms"), 50)
  .action(async (options: { nodes: number; tickMs: number }) => {
    if (options.nodes !== 3 && options.nodes !== 5) {
      process.stderr.write("strongroom demo: --nodes must be 3 or 5\n");
      process.exit(2);
    }
    const { runDevDemo } = await import("./dev-demo.js");
    await runDevDemo({
      nodes: options.nodes,
      tickMs: options.tickMs,
      print: (line) => process.stdout.write(`${line}\n`),
    });
  });

registerClientCommands(program);
registerAccessCommands(program);
registerClusterCommands(program);
registerPkiCommands(program);
registerLifecycleCommands(program);
registerAuditCommands(program);
registerAgentCommand(program);
registerChaosCommand(program);

program
  .command("server")
  .description("run a strongroom node (see docs/operations.md for the config file)")
  .requiredOption("--config <file>", "the node's YAML config file")
  .action(async (options: { config: string }) => {
    const { runServer } = await import("./server-command.js");
    await runServer(options.config);
  });

await program.parseAsync(process.argv);
