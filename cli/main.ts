// The `strongroom` command: `server` runs a node; `dev` the narrated in-process Raft demo. The
// operator, kv, cluster and audit commands arrive with the CLI issue.

import { Command, InvalidArgumentError } from "commander";
import { runDevDemo } from "./dev-demo.js";
import { runServer } from "./server-command.js";

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
  .showHelpAfterError()
  .exitOverride((error) => {
    // Usage errors exit 2, like the tools operators know.
    process.exit(error.exitCode === 0 ? 0 : error.code === "commander.help" ? 0 : 2);
  });

program
  .command("dev")
  .description(
    "run a Raft cluster (3 or 5 nodes) in this process and narrate an election, writes, reads and a failover",
  )
  .option("--nodes <count>", "cluster size (3 or 5)", positiveInteger("--nodes"), 3)
  .option("--tick-ms <ms>", "milliseconds per Raft tick", positiveInteger("--tick-ms"), 50)
  .action(async (options: { nodes: number; tickMs: number }) => {
    if (options.nodes !== 3 && options.nodes !== 5) {
      process.stderr.write("strongroom dev: --nodes must be 3 or 5\n");
      process.exit(2);
    }
    await runDevDemo({
      nodes: options.nodes,
      tickMs: options.tickMs,
      print: (line) => process.stdout.write(`${line}\n`),
    });
  });

program
  .command("server")
  .description("run a strongroom node (see docs/operations.md for the config file)")
  .requiredOption("--config <file>", "the node's YAML config file")
  .action(async (options: { config: string }) => {
    await runServer(options.config);
  });

await program.parseAsync(process.argv);
