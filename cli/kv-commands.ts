// `strongroom kv put | get` and `strongroom operator status`: the first client commands (the rest
// of the operator CLI comes with the CLI issue). A secret never needs to be on the command line: a
// value comes from stdin or a file, and `kv get` shows a value only when asked (--reveal).
// Exit codes: 0 ok, 1 error, 2 usage; `operator status` exits 2 when the node is sealed, like
// Vault's.

import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { Consistency } from "../proto/gen/strongroom/v1/secrets.gen.js";
import { type ConnectionOptions, connect, unary } from "./client-connection.js";
import { connectionFlags, nonNegativeInteger, type Output, processOutput, run } from "./command-support.js";

export function registerClientCommands(program: Command, output: Output = processOutput): void {
  const kv = program.command("kv").description("read and write secrets");

  connectionFlags(kv.command("put").argument("<path>", "the secret's path"))
    .description("write a new version of a secret; the value comes from stdin or --file")
    .option("--file <file>", "read the value from this file instead of stdin")
    .option(
      "--cas <version>",
      "only if the secret is at this version (0: must not exist)",
      nonNegativeInteger("--cas"),
    )
    .action((path: string, options: ConnectionOptions & { file?: string; cas?: number }) =>
      run(output, async () => {
        const value = options.file === undefined ? await output.stdin() : readFileSync(options.file);
        const connection = connect(options);
        try {
          const written = await connection.call((clients) =>
            unary(clients.secrets.put.bind(clients.secrets), {
              path,
              value,
              ...(options.cas === undefined ? {} : { cas: options.cas }),
            }),
          );
          output.out(`${path}: version ${written.version} (revision ${written.revision})\n`);
        } finally {
          connection.close();
        }
      }),
    );

  connectionFlags(kv.command("get").argument("<path>", "the secret's path"))
    .description("read a secret's version; its value is shown only with --reveal")
    .option("--version <version>", "this version (default: the newest)", nonNegativeInteger("--version"), 0)
    .option("--reveal", "write the value itself to stdout", false)
    .option("--stale <ms>", "accept a local read this many milliseconds stale", nonNegativeInteger("--stale"))
    .action(
      (path: string, options: ConnectionOptions & { version: number; reveal: boolean; stale?: number }) =>
        run(output, async () => {
          const connection = connect(options);
          try {
            const read = await connection.call((clients) =>
              unary(clients.secrets.get.bind(clients.secrets), {
                path,
                version: options.version,
                consistency:
                  options.stale === undefined
                    ? Consistency.CONSISTENCY_LINEARIZABLE
                    : Consistency.CONSISTENCY_STALE,
                maxStalenessMs: options.stale ?? 0,
              }),
            );
            if (options.reveal) output.out(Buffer.from(read.value).toString("utf8"));
            else {
              output.out(
                `${path}: version ${read.version}, ${read.value.length} bytes, created ${new Date(read.createdMs).toISOString()} (--reveal to show the value)\n`,
              );
            }
          } finally {
            connection.close();
          }
        }),
    );

  const operator = program.command("operator").description("operate the seal and the cluster");
  connectionFlags(operator.command("status"))
    .description("seal and Raft status of the first node that answers; exits 2 when it is sealed")
    .action((options: ConnectionOptions) =>
      run(output, async () => {
        const connection = connect(options);
        try {
          const [seal, raft] = await connection.call(
            async (clients) =>
              [
                await unary(clients.sys.sealStatus.bind(clients.sys), {}),
                await unary(clients.cluster.status.bind(clients.cluster), {}),
              ] as const,
          );
          const rows: [string, string][] = [
            ["node", seal.nodeId],
            ["initialized", String(seal.initialized)],
            ["sealed", String(seal.sealed)],
            ["seal", seal.sealTypes.join(" + ") || "-"],
            ["unseal progress", `${seal.progress}/${seal.threshold}`],
            ["role", raft.role],
            ["leader", raft.leaderId || "-"],
            ["term", String(raft.term)],
            ["applied index", String(raft.appliedIndex)],
          ];
          for (const [name, value] of rows) output.out(`${name.padEnd(16)}${value}\n`);
          if (seal.sealed) output.exit(2);
        } finally {
          connection.close();
        }
      }),
    );
}
