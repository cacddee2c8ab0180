// `strongroom audit key` and `audit hash`: the audit key for an auditor (sudo), and the audit HMAC
// of a value (to find it in entries without the log holding it).
// `strongroom audit verify FILE... [--key-file FILE]`: checks audit files against the chain they
// carry (server/audit/audit-verify.ts) and prints each problem with its file and line. Without
// the audit key it checks the chain; with it (32 bytes, raw or hex) also every checkpoint's MAC,
// which a forger without the key cannot make. Exit 0: intact; 1: tampering or damage found; 2: usage.

import { existsSync, readFileSync, statSync } from "node:fs";
import type { Command } from "commander";
import { type ConnectionOptions, withClient } from "./client-connection.js";
import { connectionFlags, type Output, processOutput, run } from "./command-support.js";

export function registerAuditCommands(program: Command, output: Output = processOutput): void {
  const audit = program.command("audit").description("audit trail tools");

  connectionFlags(audit.command("key"))
    .description("write the cluster's audit key (hex) to stdout, for `audit verify --key-file` (needs sudo)")
    .action((options: ConnectionOptions) =>
      run(output, async () => {
        const { key } = await withClient(options, (client) => client.sys.auditKey({}));
        output.out(`${Buffer.from(key).toString("hex")}\n`);
      }),
    );

  connectionFlags(audit.command("hash"))
    .description("the audit HMAC of a value given on stdin, to find it in audit entries")
    .action((options: ConnectionOptions) =>
      run(output, async () => {
        const input = await output.stdin();
        const { hash } = await withClient(options, (client) => client.sys.auditHash({ input }));
        output.out(`${hash}\n`);
      }),
    );

  audit
    .command("verify")
    .argument("<files...>", "the audit files of one node, oldest first, or its audit directory")
    .option("--key-file <file>", "the cluster's audit key (32 bytes, raw or hex), to check checkpoints too")
    .option(
      "--live",
      "the files are a running node's: their end is not a closing checkpoint yet, and that is no problem",
      false,
    )
    .description("check audit files for edited, deleted, reordered or truncated entries")
    .action(async (paths: string[], options: { keyFile?: string; live: boolean }) => {
      // Loaded here, not with every command: the audit file code is for this command alone.
      const [{ listAuditFiles }, { verifyAuditFiles }] = await Promise.all([
        import("../server/audit/audit-file.js"),
        import("../server/audit/audit-verify.js"),
      ]);
      let key: Uint8Array | null = null;
      if (options.keyFile !== undefined) {
        if (!existsSync(options.keyFile)) {
          process.stderr.write(`strongroom audit verify: the key file ${options.keyFile} does not exist\n`);
          process.exit(2);
        }
        const raw = readFileSync(options.keyFile);
        const text = raw.toString("utf8").trim();
        key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, "hex") : raw;
        if (key.length !== 32) {
          process.stderr.write(
            "strongroom audit verify: the audit key must be 32 bytes (raw, or 64 hex digits)\n",
          );
          process.exit(2);
        }
      }
      const files: string[] = [];
      for (const path of paths) {
        if (!existsSync(path)) {
          process.stderr.write(`strongroom audit verify: ${path} does not exist\n`);
          process.exit(2);
        }
        if (!statSync(path).isDirectory()) {
          files.push(path);
          continue;
        }
        // A node's audit directory stands for its files (audit-NNNNNN.jsonl), oldest first.
        const inDirectory = listAuditFiles(path);
        if (inDirectory.length === 0) {
          process.stderr.write(`strongroom audit verify: ${path} holds no audit file (audit-NNNNNN.jsonl)\n`);
          process.exit(2);
        }
        files.push(...inDirectory);
      }
      const result = verifyAuditFiles(files, key, { live: options.live });
      for (const problem of result.problems) process.stdout.write(`${problem}\n`);
      if (!result.closed && result.afterLastCheckpoint > 0) {
        process.stdout.write(
          `${result.afterLastCheckpoint} line(s) after the last checkpoint: chained, but no checkpoint's MAC covers them yet\n`,
        );
      }
      if (
        result.unanswered.length > 0 &&
        !result.problems.some((problem) => problem.includes("no response entry"))
      ) {
        process.stdout.write(
          `${result.unanswered.length} request(s) without a response entry yet (in flight when the trail was read, or at a crash)\n`,
        );
      }
      process.stdout.write(
        `${files.length} file(s), ${result.entries} entries, ${result.checkpoints} checkpoints${key === null ? " (MACs not checked: no --key-file)" : ""}: ${result.problems.length === 0 ? "intact" : `${result.problems.length} problem(s)`}\n`,
      );
      process.exit(result.problems.length === 0 ? 0 : 1);
    });
}
