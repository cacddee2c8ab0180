// `strongroom policy ...`, `strongroom token ...` and the share-driven `operator` commands
// (unseal, generate-root): access control from the terminal. The token to act with comes from
// STRONGROOM_TOKEN (never a flag: flags show in the process list); shares come from stdin, one per
// line, or from a hidden prompt. A created token is printed once: it is stored nowhere.

import { status as grpcStatus } from "@grpc/grpc-js";
import type { Command, Option } from "commander";
import { type StrongroomClient, StrongroomError } from "../client/index.js";
import { decryptShare } from "../hsm/shares/share-encryption.js";
import type { TokenInfo } from "../proto/gen/strongroom/v1/access.gen.js";
import type { SealStatusResponse } from "../proto/gen/strongroom/v1/sys.gen.js";
import { formatDuration } from "../server/durations.js";
import { type ConnectionOptions, UsageError, withClient } from "./client-connection.js";
import {
  collect,
  connectionFlags,
  emit,
  type Format,
  formatFlag,
  giveShares,
  nonNegativeInteger,
  type Output,
  optionMeaning,
  plainShare,
  positiveDuration,
  processOutput,
  promptHidden,
  readNamedFile,
  rows,
  run,
  stdinLines,
  table,
} from "./command-support.js";

type Formatted = ConnectionOptions & { format: Format };

/** A token's description as table rows (the token itself only right after create). */
function tokenRows(info: TokenInfo): [string, string][] {
  return [
    ["accessor", info.accessor],
    ["policies", info.policies.join(", ")],
    ["display name", info.displayName || "-"],
    ["created by", info.createdBy],
    ["created", new Date(info.createdAtMs).toISOString()],
    ["expires", info.expiresAtMs === 0 ? "never" : new Date(info.expiresAtMs).toISOString()],
    [
      "renewable until",
      !info.renewable
        ? "-"
        : info.maxExpiresAtMs === 0
          ? "no limit"
          : new Date(info.maxExpiresAtMs).toISOString(),
    ],
    ["renewable", String(info.renewable)],
    ["orphan", String(info.orphan)],
    ["tenant", info.tenant || "-"],
    ["uses left", info.useLimited ? String(info.usesLeft) : "no limit"],
    ["role", info.role || "-"],
    ["bound to", info.boundIdentities.join(", ") || "any identity"],
  ];
}

/** Shares from stdin (one per line) or, at a terminal, from hidden prompts until `done`. */
async function* shares(output: Output): AsyncGenerator<string> {
  if (!process.stdin.isTTY || output !== processOutput) {
    for (const line of await stdinLines(output)) yield plainShare(line);
    return;
  }
  for (let position = 1; ; position++) yield plainShare(await promptHidden(`share ${position} (hidden): `));
}

export function registerAccessCommands(program: Command, output: Output = processOutput): void {
  const policy = program.command("policy").description("policies and identity bindings");

  formatFlag(
    connectionFlags(
      policy.command("write").argument("<name>").argument("[file]", "YAML or JSON; stdin if absent"),
    ),
  )
    .description("create or replace a policy")
    .action((name: string, file: string | undefined, options: Formatted) =>
      run(output, async () => {
        const document =
          file === undefined
            ? (await output.stdin()).toString("utf8")
            : readNamedFile("the policy file", file).toString("utf8");
        const written = await withClient(options, (client) => client.access.writePolicy({ name, document }));
        emit(
          output,
          options.format,
          written,
          () => `policy ${name} written (revision ${written.revision})\n`,
        );
      }),
    );

  formatFlag(connectionFlags(policy.command("read").argument("<name>")))
    .description("print a policy's document (json, yaml: its name and document)")
    .action((name: string, options: Formatted) =>
      run(output, async () => {
        const read = await withClient(options, (client) => client.access.readPolicy({ name }));
        emit(output, options.format, read, () =>
          read.document.endsWith("\n") ? read.document : `${read.document}\n`,
        );
      }),
    );

  formatFlag(connectionFlags(policy.command("list")))
    .description("the names of all policies")
    .action((options: Formatted) =>
      run(output, async () => {
        const listed = await withClient(options, (client) => client.access.listPolicies({}));
        emit(output, options.format, listed, () => listed.names.map((name) => `${name}\n`).join(""));
      }),
    );

  formatFlag(connectionFlags(policy.command("delete").argument("<name>")))
    .description("delete a policy (bindings and tokens that name it keep the name, granting nothing)")
    .action((name: string, options: Formatted) =>
      run(output, async () => {
        const deleted = await withClient(options, (client) => client.access.deletePolicy({ name }));
        emit(
          output,
          options.format,
          deleted,
          () => `policy ${name} deleted (revision ${deleted.revision})\n`,
        );
      }),
    );

  formatFlag(
    connectionFlags(
      policy
        .command("bind")
        .argument("<identity>", 'a client identity, or a prefix ending in "*"')
        .argument("<policies...>"),
    ),
  )
    .description("bind a certificate identity to policies (replaces its binding)")
    .action((identity: string, policies: string[], options: Formatted) =>
      run(output, async () => {
        const bound = await withClient(options, (client) =>
          client.access.bindIdentity({ identity, policies }),
        );
        emit(
          output,
          options.format,
          bound,
          () => `${identity} -> ${policies.join(", ")} (revision ${bound.revision})\n`,
        );
      }),
    );

  formatFlag(connectionFlags(policy.command("unbind").argument("<identity>")))
    .description("remove an identity's binding")
    .action((identity: string, options: Formatted) =>
      run(output, async () => {
        const removed = await withClient(options, (client) => client.access.unbindIdentity({ identity }));
        emit(output, options.format, removed, () => `${identity} unbound (revision ${removed.revision})\n`);
      }),
    );

  formatFlag(connectionFlags(policy.command("bindings")))
    .description("every identity binding")
    .action((options: Formatted) =>
      run(output, async () => {
        const listed = await withClient(options, (client) => client.access.listBindings({}));
        emit(output, options.format, listed, () =>
          listed.bindings.length === 0
            ? "no identity bindings\n"
            : table(
                ["identity", "policies"],
                listed.bindings.map((binding) => [binding.identity, binding.policies.join(", ")]),
              ),
        );
      }),
    );

  const token = program.command("token").description("tokens (the caller's own comes from STRONGROOM_TOKEN)");

  formatFlag(connectionFlags(token.command("create")))
    .description(
      "a new token: a child of the caller's, within its policies unless sudo; or within a token role's",
    )
    .addOption(
      optionMeaning(
        "--policy <name>",
        "a policy of the new token (repeat)",
        [],
        "the caller's, or all the role's",
        collect,
      ),
    )
    .addOption(
      optionMeaning(
        "--role <name>",
        "create against this token role: its policies and limits, with update on sys/tokens/create/<role> instead of sudo",
        "",
        "none",
      ),
    )
    .addOption(ttlOption("its lifetime, e.g. 1h"))
    .addOption(maxTtlOption("the hard limit on its lifetime with renewals"))
    .option("--renewable", "it may be renewed", false)
    .option("--orphan", "no parent: it outlives the caller's token (needs sudo)", false)
    .addOption(optionMeaning("--display-name <name>", "a name to recognize it by", "", "none"))
    .addOption(
      optionMeaning(
        "--bound-identity <identity>",
        'a client identity, or a prefix ending in "*", that may present it (repeat); others cannot',
        [],
        "the caller token's binding (any identity if unbound), or the role's",
        collect,
      ),
    )
    .addOption(
      optionMeaning(
        "--uses <count>",
        "how many calls it may make",
        0,
        "no limit",
        nonNegativeInteger("--uses"),
      ),
    )
    .action(
      (
        options: Formatted & {
          policy: string[];
          ttl: number;
          maxTtl: number;
          renewable: boolean;
          orphan: boolean;
          displayName: string;
          uses: number;
          role: string;
          boundIdentity: string[];
        },
      ) =>
        run(output, async () => {
          const created = await withClient(options, (client) =>
            client.access.createToken({
              policies: options.policy,
              ttlMs: options.ttl,
              maxTtlMs: options.maxTtl,
              renewable: options.renewable,
              orphan: options.orphan,
              displayName: options.displayName,
              numUses: options.uses,
              role: options.role,
              boundIdentities: options.boundIdentity,
            }),
          );
          const info = created.info;
          emit(output, options.format, created, () =>
            rows([["token", created.token], ...(info === undefined ? [] : tokenRows(info))]),
          );
        }),
    );

  formatFlag(connectionFlags(token.command("lookup")))
    .description("describe the caller's token, or the token of --accessor")
    .addOption(optionMeaning("--accessor <accessor>", "another token's accessor", "", "the caller's own"))
    .action((options: Formatted & { accessor: string }) =>
      run(output, async () => {
        const info = await withClient(options, (client) =>
          client.access.lookupToken({ accessor: options.accessor }),
        );
        emit(output, options.format, info, () => rows(tokenRows(info)));
      }),
    );

  formatFlag(connectionFlags(token.command("renew")))
    .description("extend the caller's token, or the token of --accessor")
    .addOption(optionMeaning("--accessor <accessor>", "another token's accessor", "", "the caller's own"))
    .addOption(
      optionMeaning(
        "--increment <duration>",
        "by how much",
        0,
        "its TTL",
        positiveDuration("--increment", "its TTL"),
      ),
    )
    .action((options: Formatted & { accessor: string; increment: number }) =>
      run(output, async () => {
        const askedAt = Date.now();
        const info = await withClient(options, (client) =>
          client.access.renewToken({
            accessor: options.accessor,
            incrementMs: options.increment,
          }),
        );
        // The node extends a token only up to its max TTL, and says nothing of it: say it here, or
        // a renewal that fell short would look like one that worked.
        const asked = askedAt + (options.increment === 0 ? info.ttlMs : options.increment);
        if (
          info.maxExpiresAtMs !== 0 &&
          info.expiresAtMs === info.maxExpiresAtMs &&
          info.expiresAtMs < asked
        ) {
          output.err(
            `strongroom: the renewal stops at the token's max TTL: it expires at ${new Date(info.expiresAtMs).toISOString()} and cannot be renewed further; create a new token before then\n`,
          );
        }
        emit(output, options.format, info, () => rows(tokenRows(info)));
      }),
    );

  formatFlag(connectionFlags(token.command("revoke")))
    .description("revoke the caller's token, or the token of --accessor, with its descendants")
    .addOption(optionMeaning("--accessor <accessor>", "another token's accessor", "", "the caller's own"))
    .action((options: Formatted & { accessor: string }) =>
      run(output, async () => {
        const revoked = await withClient(options, (client) =>
          client.access.revokeToken({ accessor: options.accessor }),
        );
        emit(
          output,
          options.format,
          revoked,
          () => `revoked (revision ${revoked.revision}): refused on each node once it applies it\n`,
        );
      }),
    );

  formatFlag(connectionFlags(token.command("capabilities")))
    .argument("<path...>", "secrets' paths, or sys/ paths (docs/security.md)")
    .description(
      "what the caller may do on each path - or the token of --accessor, or --identity by its bindings",
    )
    .addOption(optionMeaning("--accessor <accessor>", "another token's accessor", "", "the caller's own"))
    .addOption(
      optionMeaning("--identity <name>", "a client identity without a token", "", "the caller's own"),
    )
    .action((paths: string[], options: Formatted & { accessor: string; identity: string }) =>
      run(output, async () => {
        if (options.accessor !== "" && options.identity !== "")
          throw new UsageError("give --accessor or --identity, not both");
        const answer = await withClient(options, (client) =>
          client.access.capabilities({ paths, accessor: options.accessor, identity: options.identity }),
        );
        emit(output, options.format, answer, () => {
          const lines = table(
            ["path", "capabilities"],
            answer.paths.map((entry) => [entry.path, entry.capabilities.join(", ") || "none"]),
          );
          return answer.identityDisabled
            ? `${lines}(the identity is disabled: it may do nothing until an operator enables it)\n`
            : lines;
        });
      }),
    );

  const role = token
    .command("role")
    .description("token roles: the policies and limits of tokens whoever may use the role can create");

  formatFlag(connectionFlags(role.command("write")))
    .argument("<name>")
    .description("create or replace a token role (needs sudo on sys/tokens/roles/<name>)")
    .option("--policy <name>", "a policy its tokens may have (repeat; at least one)", collect, [])
    .addOption(ttlOption("a token's lifetime when none is asked for"))
    .addOption(maxTtlOption("the longest a token may live, with renewals"))
    .option("--renewable", "its tokens may be renewed", false)
    .option("--orphan", "its tokens have no parent: they outlive their creator's token", false)
    .addOption(
      optionMeaning(
        "--bound-identity <identity>",
        'a client identity, or a prefix ending in "*", that may present its tokens (repeat)',
        [],
        "any identity",
        collect,
      ),
    )
    .addOption(
      optionMeaning(
        "--uses <count>",
        "the most calls a token may make",
        0,
        "no limit",
        nonNegativeInteger("--uses"),
      ),
    )
    .action(
      (
        name: string,
        options: Formatted & {
          policy: string[];
          ttl: number;
          maxTtl: number;
          renewable: boolean;
          orphan: boolean;
          uses: number;
          boundIdentity: string[];
        },
      ) =>
        run(output, async () => {
          if (options.policy.length === 0) throw new UsageError("give at least one --policy");
          const written = await withClient(options, (client) =>
            client.access.writeTokenRole({
              name,
              allowedPolicies: options.policy,
              ttlMs: options.ttl,
              maxTtlMs: options.maxTtl,
              renewable: options.renewable,
              orphan: options.orphan,
              numUses: options.uses,
              boundIdentities: options.boundIdentity,
            }),
          );
          emit(
            output,
            options.format,
            written,
            () => `token role ${name} written (revision ${written.revision})\n`,
          );
        }),
    );

  formatFlag(connectionFlags(role.command("read")))
    .argument("<name>")
    .description("a token role's policies and limits")
    .action((name: string, options: Formatted) =>
      run(output, async () => {
        const read = await withClient(options, (client) => client.access.readTokenRole({ name }));
        emit(output, options.format, read, () =>
          rows([
            ["name", read.name],
            ["allowed policies", read.allowedPolicies.join(", ")],
            ["ttl", read.ttlMs === 0 ? "the cluster's default" : formatDuration(read.ttlMs)],
            ["max ttl", read.maxTtlMs === 0 ? "the cluster's limit" : formatDuration(read.maxTtlMs)],
            ["renewable", String(read.renewable)],
            ["orphan", String(read.orphan)],
            ["uses", read.numUses === 0 ? "no limit" : String(read.numUses)],
            ["bound to", read.boundIdentities.join(", ") || "any identity"],
          ]),
        );
      }),
    );

  formatFlag(connectionFlags(role.command("list")))
    .description("the names of all token roles")
    .action((options: Formatted) =>
      run(output, async () => {
        const listed = await withClient(options, (client) => client.access.listTokenRoles({}));
        emit(output, options.format, listed, () => listed.names.map((name) => `${name}\n`).join(""));
      }),
    );

  formatFlag(connectionFlags(role.command("delete")))
    .argument("<name>")
    .description("delete a token role (tokens created against it stay as they were made)")
    .action((name: string, options: Formatted) =>
      run(output, async () => {
        const deleted = await withClient(options, (client) => client.access.deleteTokenRole({ name }));
        emit(
          output,
          options.format,
          deleted,
          () => `token role ${name} deleted (revision ${deleted.revision})\n`,
        );
      }),
    );

  const operator = program.commands.find((command) => command.name() === "operator");
  if (operator === undefined) throw new Error("register the operator commands first");

  connectionFlags(operator.command("unseal"))
    .description(
      "give unseal shares (stdin, one per line, or hidden prompts) to a node, or --all nodes; with an HSM alone, recovery shares let the HSM unseal a node an operator sealed",
    )
    .option("--all", "every node in STRONGROOM_ADDR / --addr, in turn", false)
    .option("--reset", "discard the node's unseal attempt in progress and the shares given to it", false)
    .action((options: ConnectionOptions & { all: boolean; reset: boolean }) =>
      run(output, async () => {
        const given: string[] = [];
        const addresses = (options.addr ?? process.env.STRONGROOM_ADDR ?? "")
          .split(",")
          .filter((a) => a !== "");
        const targets = options.all ? addresses : [undefined];
        // With --all, a node that cannot be reached is reported and the others still get the
        // shares: an operator unsealing after an outage should not stop at the first node down.
        let unreachable = 0;
        const eachNode = async (act: (client: StrongroomClient) => Promise<void>) => {
          for (const target of targets) {
            try {
              await withClient({ ...options, ...(target === undefined ? {} : { addr: target }) }, act);
            } catch (error) {
              if (target === undefined || !isUnreachable(error)) throw error;
              output.err(`${target}: not reached: ${(error as Error).message}\n`);
              unreachable++;
            }
          }
        };

        if (options.reset) {
          await eachNode(async (client) => {
            const status = await client.sys.unseal({ share: "", nonce: "", reset: true });
            output.out(
              `${status.nodeId}: ${status.sealed ? "unseal attempt reset" : "unsealed, no attempt to reset"}\n`,
            );
          });
          if (unreachable > 0) throw new Error(unreachableProblem(unreachable));
          return;
        }
        let sealedLeft = 0;
        let hsmRefused = 0;
        await eachNode(async (client) => {
          let status = await client.sys.sealStatus({});
          let position = 0;
          let attemptDone = false;
          const source = shares(output);
          while (status.sealed && !attemptDone) {
            let share = given[position];
            if (share === undefined) {
              const next = await source.next();
              if (next.done) break;
              share = next.value;
              given.push(share);
            }
            position++;
            const submitted = share;
            status = await client.sys.unseal({
              share: submitted,
              nonce: status.nonce,
              reset: false,
            });
            // A threshold was reached and the node is still sealed: only the HSM's attempt
            // after recovery shares ends so (unseal shares either unseal or are refused).
            attemptDone = status.sealed && status.progress === 0;
          }
          output.out(`${status.nodeId}: ${describeUnseal(status, attemptDone)}\n`);
          if (status.sealed && attemptDone) hsmRefused++;
          else if (status.sealed) sealedLeft++;
        });
        const problems = [
          ...(sealedLeft > 0 ? [`${sealedLeft} node(s) still sealed: give more shares`] : []),
          ...(hsmRefused > 0
            ? [
                `${hsmRefused} node(s) still sealed: their HSM did not give the root key (see operator status)`,
              ]
            : []),
          ...(unreachable > 0 ? [unreachableProblem(unreachable)] : []),
        ];
        // Exit 2 when more shares are all it takes; 1 when something else needs an operator.
        if (problems.length === 1 && sealedLeft > 0) throw new UsageError(problems.join(""));
        if (problems.length > 0) throw new Error(problems.join("; "));
      }),
    );

  operator
    .command("decrypt-share")
    .description(
      "decrypt shares encrypted to your key (init or rekey with --operator-key): stdin, one per line, or a hidden prompt; prints them, one per line",
    )
    .requiredOption("--private-key <file>", "your PEM private key (the pair of the public key given to init)")
    .option("--passphrase-file <file>", "a file holding the passphrase of an encrypted private key")
    .action((options: { privateKey: string; passphraseFile?: string }) =>
      run(output, async () => {
        const privateKeyPem = readNamedFile("--private-key", options.privateKey).toString("utf8");
        // A file, not a flag or a prompt: a flag shows in the process list, and stdin carries the shares.
        const passphrase =
          options.passphraseFile === undefined
            ? undefined
            : readNamedFile("--passphrase-file", options.passphraseFile)
                .toString("utf8")
                .replace(/\r?\n$/, "");
        if (passphrase === undefined && privateKeyPem.includes("-----BEGIN ENCRYPTED PRIVATE KEY-----"))
          throw new UsageError(
            `${options.privateKey} is encrypted: give its passphrase with --passphrase-file`,
          );
        const given =
          !process.stdin.isTTY || output !== processOutput
            ? await stdinLines(output)
            : [await promptHidden("encrypted share (hidden): ")];
        if (given.length === 0) throw new UsageError("give the encrypted shares on stdin, one per line");
        for (const armored of given) {
          try {
            output.out(`${decryptShare(armored, privateKeyPem, passphrase)}\n`);
          } catch (error) {
            throw new UsageError((error as Error).message);
          }
        }
      }),
    );

  connectionFlags(operator.command("generate-root"))
    .description("a new root token from a threshold of unseal (or recovery) shares: stdin or hidden prompts")
    .option("--reset", "discard the attempt in progress and the shares given to it", false)
    .action((options: ConnectionOptions & { reset: boolean }) =>
      run(output, async () => {
        await withClient(options, async (client) => {
          if (options.reset) {
            await client.sys.generateRoot({ share: "", nonce: "", reset: true });
            output.out("root token generation reset: give the shares again\n");
            return;
          }
          const done = await giveShares(output, shares(output), (share, nonce) =>
            client.sys.generateRoot({ share, nonce, reset: false }),
          );
          output.out(`${done.rootToken}\n`);
        });
      }),
    );
}

/** A token's or token role's --ttl: 0 (absent) leaves it to the cluster's default. */
function ttlOption(meaning: string): Option {
  return optionMeaning(
    "--ttl <duration>",
    meaning,
    0,
    "the cluster's",
    positiveDuration("--ttl", "the cluster's default"),
  );
}

/** A token's or token role's --max-ttl: 0 (absent) leaves it to the cluster's limit. */
function maxTtlOption(meaning: string): Option {
  return optionMeaning(
    "--max-ttl <duration>",
    meaning,
    0,
    "the cluster's limit",
    positiveDuration("--max-ttl", "the cluster's limit"),
  );
}

function unreachableProblem(count: number): string {
  return `${count} node(s) could not be reached: unseal them once they are back`;
}

/** A node that did not answer at all (down, or the address wrong), as opposed to one that refused. */
function isUnreachable(error: unknown): boolean {
  return (
    error instanceof StrongroomError &&
    (error.code === grpcStatus.UNAVAILABLE || error.code === grpcStatus.DEADLINE_EXCEEDED)
  );
}

function describeUnseal(status: SealStatusResponse, attemptDone: boolean): string {
  if (!status.sealed) return "unsealed";
  if (attemptDone) {
    const why = status.hsmLastError === "" ? status.hsmState : `${status.hsmState}: ${status.hsmLastError}`;
    return `sealed: the recovery shares were accepted, the HSM has not unsealed it (${why})`;
  }
  return `sealed (${status.progress}/${status.threshold} shares)`;
}
