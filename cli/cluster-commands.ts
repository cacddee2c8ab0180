// `strongroom cluster ...` (members, membership changes, leadership, snapshots) and the operator
// commands around the seal: init, seal, rotate (the keyring), rekey and migrate-seal (shares on
// stdin, one per line, or at hidden prompts). Init prints the shares and the root token once: they
// go to stdout only (redirect them somewhere safe), never to a file of ours.

import { createHash } from "node:crypto";
import { open, rename, rm, stat } from "node:fs/promises";
import { type Command, InvalidArgumentError } from "commander";
import { pkcs11Mechanisms } from "../hsm/pkcs11/pkcs11-config.js";
import type { Member, MembersResponse } from "../proto/gen/strongroom/v1/cluster.gen.js";
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
  processOutput,
  readNamedFile,
  rows,
  run,
  stdinLines,
  table,
} from "./command-support.js";
import { readSnapshotFile, snapshotFileHeader, snapshotFrame } from "./snapshot-file.js";

type Formatted = ConnectionOptions & { format: Format };

function membersTable(members: readonly Member[]): string {
  return table(
    // The last error, if any, of the answering node's connection to each member.
    ["member", "role", "client address", "peer address", "region/zone", "peer error"],
    members.map((member) => [member.nodeId, roleOf(member), ...whereAndErrorOf(member)]),
  );
}

/** `cluster members`: with the leader's view, how far along and how healthy each member is. */
export function membersViewTable(view: MembersResponse, notLeaders: string): string {
  const { leaderView, commitIndex } = view;
  const body = table(
    [
      "member",
      "role",
      "health",
      "behind",
      "last contact",
      "client address",
      "peer address",
      "region/zone",
      "peer error",
    ],
    view.members.map((member) => [
      member.nodeId,
      roleOf(member),
      leaderView ? healthOf(member) : "-",
      leaderView ? String(Math.max(0, commitIndex - member.matchIndex)) : "-",
      !leaderView || member.nodeId === view.answeredBy
        ? "-"
        : member.lastContactMs < 0
          ? "never"
          : `${member.lastContactMs} ms`,
      ...whereAndErrorOf(member),
    ]),
  );
  if (leaderView) return `${body}as the leader ${view.answeredBy} sees it (commit index ${commitIndex})\n`;
  return `${body}as ${view.answeredBy} sees it: only the leader knows the members' health (${notLeaders})\n`;
}

function roleOf(member: Member): string {
  return member.leader ? "leader" : member.voter ? "voter" : "learner";
}

/** The first that holds: it does not answer (or never did), it is sealed, it is behind; else ok. */
function healthOf(member: Member): string {
  if (member.unreachable || member.lastContactMs < 0) return "unreachable";
  if (member.sealed) return "sealed";
  return member.caughtUp ? "ok" : "behind";
}

function whereAndErrorOf(member: Member): string[] {
  return [
    member.clientAddress,
    member.peerAddress,
    [member.region, member.zone].filter((label) => label !== "").join("/") || "-",
    member.connectionError === "" ? "-" : member.connectionError,
  ];
}

/**
 * The members as the leader sees them: the first node that answers, and when that is not the
 * leader, the leader it names (at its client address). Otherwise the view of the node that
 * answered, and why it is not the leader's.
 */
async function membersFromLeader(
  options: ConnectionOptions,
): Promise<{ view: MembersResponse; notLeaders: string }> {
  const first = await withClient(options, (client) => client.cluster.members({}));
  const leader = first.members.find((member) => member.leader);
  if (first.leaderView) return { view: first, notLeaders: "" };
  if (leader === undefined || leader.clientAddress === "")
    return { view: first, notLeaders: "no leader is known" };
  try {
    const view = await withClient({ ...options, addr: leader.clientAddress }, (client) =>
      client.cluster.members({}),
    );
    // It no longer leads, or runs a version that does not say.
    return { view, notLeaders: `${leader.nodeId}, named the leader, did not answer as one` };
  } catch (error) {
    return {
      view: first,
      notLeaders: `the leader ${leader.nodeId} did not answer: ${(error as Error).message}`,
    };
  }
}

export function registerClusterCommands(program: Command, output: Output = processOutput): void {
  const cluster = program.command("cluster").description("members, leadership and snapshots");
  const command = (name: string) => formatFlag(connectionFlags(cluster.command(name)));

  command("status")
    .description("the Raft view of the first node that answers")
    .action((options: Formatted) =>
      run(output, async () => {
        const status = await withClient(options, (client) => client.cluster.status({}));
        emit(output, options.format, status, () =>
          rows([
            ["node", status.nodeId],
            ["role", status.role],
            ["leader", status.leaderId || "-"],
            ["term", String(status.term)],
            ["commit index", String(status.commitIndex)],
            ["applied index", String(status.appliedIndex)],
            ["region / zone", `${status.region || "-"} / ${status.zone || "-"}`],
          ]),
        );
      }),
    );

  command("members")
    .description(
      "voters and learners as the leader sees them: health, entries behind, last contact, addresses",
    )
    .action((options: Formatted) =>
      run(output, async () => {
        const { view, notLeaders } = await membersFromLeader(options);
        emit(output, options.format, view, () => membersViewTable(view, notLeaders));
      }),
    );

  command("join")
    .argument("<node-id>")
    .requiredOption("--peer-address <host:port>", "where the other nodes reach it")
    .requiredOption("--client-address <host:port>", "where clients reach it")
    .addOption(
      optionMeaning("--voter", "add it as a voter at once", false, "a learner, promoted once caught up"),
    )
    .addOption(
      optionMeaning(
        "--region <name>",
        "where it runs (leader placement, clients' region preference)",
        "",
        "none",
      ),
    )
    .addOption(optionMeaning("--zone <name>", "its zone within the region", "", "none"))
    .description(
      "add a node, a learner unless --voter (then start it with clusterState: existing; see docs/operations.md)",
    )
    .action(
      (
        nodeId: string,
        options: Formatted & {
          peerAddress: string;
          clientAddress: string;
          voter: boolean;
          region: string;
          zone: string;
        },
      ) =>
        run(output, async () => {
          const changed = await withClient(options, (client) =>
            client.cluster.addMember({
              nodeId,
              peerAddress: options.peerAddress,
              clientAddress: options.clientAddress,
              voter: options.voter,
              region: options.region,
              zone: options.zone,
            }),
          );
          emit(output, options.format, changed, () => membersTable(changed.members));
        }),
    );

  for (const [name, method, description] of [
    ["promote", "promoteLearner", "make a learner a voter"],
    ["remove", "removeMember", "remove a voter or learner"],
  ] as const) {
    command(name)
      .argument("<node-id>")
      .description(description)
      .action((nodeId: string, options: Formatted) =>
        run(output, async () => {
          const changed = await withClient(options, (client) => client.cluster[method]({ nodeId }));
          emit(output, options.format, changed, () => membersTable(changed.members));
        }),
      );
  }

  command("transfer-leader")
    .argument("<node-id>")
    .description("hand leadership to a member")
    .action((nodeId: string, options: Formatted) =>
      run(output, async () => {
        const moved = await withClient(options, (client) => client.cluster.transferLeader({ nodeId }));
        emit(output, options.format, moved, () => `leader: ${moved.leaderId}\n`);
      }),
    );

  const snapshot = cluster.command("snapshot").description("backups");
  connectionFlags(snapshot.command("save"))
    .argument("<file>", "where to write it")
    .description("save a consistent copy of the whole state (ciphertext only) to a file")
    .action((file: string, options: ConnectionOptions) =>
      run(output, async () => {
        // Written as it comes into FILE.partial, renamed to FILE once whole and checked against
        // the digest in the last chunk: a save cut short or damaged never leaves FILE.
        const partial = `${file}.partial`;
        // Refused before anything is fetched: the rename at the end would fail (EISDIR).
        if ((await stat(file).catch(() => null))?.isDirectory())
          throw new UsageError(`cannot write ${file}: it is a directory (give a file's path)`);
        // One left by an interrupted save is replaced, created afresh so that its mode is 0600.
        await rm(partial, { force: true });
        const out = await open(partial, "wx", 0o600).catch((error: unknown) => {
          throw new UsageError(
            (error as NodeJS.ErrnoException).code === "ENOENT"
              ? `cannot write ${file}: its directory does not exist`
              : `cannot write ${file}: ${error instanceof Error ? error.message : String(error)}`,
          );
        });
        const hash = createHash("sha256");
        let total = 0;
        let received = 0;
        let appliedIndex = 0;
        let digest: Uint8Array | null = null;
        try {
          await out.write(snapshotFileHeader);
          await withClient(options, (client) =>
            client.saveSnapshot(async (chunk) => {
              if (received === 0) appliedIndex = chunk.appliedIndex;
              total ||= chunk.totalBytes;
              received += chunk.data.length;
              hash.update(chunk.data);
              if (chunk.sha256.length > 0) digest = chunk.sha256;
              await out.write(snapshotFrame(chunk));
              if (total > 0) output.err(`\r${Math.floor((received / total) * 100)}% of ${total} bytes`);
            }),
          );
          output.err("\n");
          if (digest === null || !hash.digest().equals(digest))
            throw new Error(
              "the snapshot arrived incomplete or damaged (its SHA-256 does not match); save it again",
            );
          await out.sync();
          await out.close();
          await rename(partial, file);
        } catch (error) {
          await out.close().catch(() => {});
          await rm(partial, { force: true });
          throw error;
        }
        output.out(`saved ${received} bytes at index ${appliedIndex} to ${file}\n`);
      }),
    );

  formatFlag(connectionFlags(snapshot.command("restore")))
    .argument("<file>", "a file from snapshot save")
    .description("load a saved snapshot into a new, uninitialized cluster")
    .action((file: string, options: Formatted) =>
      run(output, async () => {
        // Read through once to check the file before anything is sent, then again to send it.
        for await (const _chunk of readSnapshotFile(file));
        const restored = await withClient(options, (client) =>
          client.restoreSnapshot(() => readSnapshotFile(file)),
        );
        emit(
          output,
          options.format,
          restored,
          () => `restored ${restored.records} records (revision ${restored.revision})\n`,
        );
      }),
    );

  const operator = program.commands.find((candidate) => candidate.name() === "operator");
  if (operator === undefined) throw new Error("register the operator commands first");
  const op = (name: string) => formatFlag(connectionFlags(operator.command(name)));

  op("init")
    .description("initialize a new cluster; prints the shares and the root token once")
    .option("--shares <n>", "unseal shares (Shamir)", nonNegativeInteger("--shares"), 5)
    .option("--threshold <n>", "shares needed to unseal", nonNegativeInteger("--threshold"), 3)
    .option(
      "--hsm",
      "protect the root key with the nodes' HSM (with --shares 0: HSM only, with recovery shares)",
      false,
    )
    .option("--generate-hsm-key", "make the HSM key (refused if its label exists)", false)
    .option(
      "--recovery-shares <n>",
      "with --hsm --shares 0: recovery shares",
      nonNegativeInteger("--recovery-shares"),
      5,
    )
    .option(
      "--recovery-threshold <n>",
      "with --hsm --shares 0: recovery shares needed to authorize",
      nonNegativeInteger("--recovery-threshold"),
      3,
    )
    .option(
      "--operator-key <file>",
      "a PEM public key per share: shares come out encrypted to them (repeat)",
      collect,
      [],
    )
    .action(
      (
        options: Formatted & {
          shares: number;
          threshold: number;
          hsm: boolean;
          generateHsmKey: boolean;
          recoveryShares: number;
          recoveryThreshold: number;
          operatorKey: string[];
        },
        command: Command,
      ) =>
        run(output, async () => {
          const hsmOnly = options.hsm && options.shares === 0;
          // An option that the chosen seal does not use is refused, not ignored.
          const given = (name: string) => command.getOptionValueSource(name) === "cli";
          if (!hsmOnly && (given("recoveryShares") || given("recoveryThreshold")))
            throw new UsageError(
              "--recovery-shares and --recovery-threshold are for an HSM-only seal (--hsm --shares 0); with unseal shares, those authorize operations",
            );
          if (hsmOnly && given("threshold"))
            throw new UsageError("with --shares 0 there are no unseal shares: give --recovery-threshold");
          const operatorKeys = options.operatorKey.map((file) =>
            readNamedFile("--operator-key", file).toString("utf8"),
          );
          const shareOptions = { count: options.shares, threshold: options.threshold, operatorKeys };
          const init = await withClient(options, (client) =>
            client.sys.init({
              shamir: hsmOnly ? undefined : shareOptions,
              hsm: options.hsm,
              generateHsmKey: options.generateHsmKey,
              recovery: hsmOnly
                ? { count: options.recoveryShares, threshold: options.recoveryThreshold, operatorKeys }
                : undefined,
            }),
          );
          emit(output, options.format, init, () =>
            [
              ...init.unsealShares.map((share, i) => `unseal share ${i + 1}: ${share}\n`),
              ...init.recoveryShares.map((share, i) => `recovery share ${i + 1}: ${share}\n`),
              `threshold: ${init.unsealThreshold || init.recoveryThreshold}\n`,
              `root token: ${init.rootToken}\n`,
              "keep each share with a different person; revoke the root token once access is set up\n",
            ].join(""),
          );
        }),
    );

  op("seal")
    .description("seal the first node in STRONGROOM_ADDR (--addr to pick one); needs sudo on sys/seal")
    .action((options: Formatted) =>
      run(output, async () => {
        const status = await withClient(options, (client) => client.sys.seal({}));
        emit(output, options.format, status, () => `${status.nodeId}: sealed\n`);
      }),
    );

  op("rotate")
    .description("add a new data key to the keyring (new writes use it); needs sudo on sys/rotate")
    .action((options: Formatted) =>
      run(output, async () => {
        const rotated = await withClient(options, (client) => client.sys.rotateKeyring({}));
        emit(
          output,
          options.format,
          rotated,
          () => `key term ${rotated.term} (revision ${rotated.revision})\n`,
        );
      }),
    );

  op("rotate-hsm-key")
    .description(
      "wrap the root key under another key of the HSM token and retire the old one from the seal record; needs sudo on sys/seal/hsm-key",
    )
    .requiredOption("--key-label <label>", "the new key's label on the token")
    .option(
      "--mechanism <mechanism>",
      `${pkcs11Mechanisms.join(" or ")} (default: the one the seal uses now)`,
      (value: string) => {
        if (!(pkcs11Mechanisms as readonly string[]).includes(value))
          throw new InvalidArgumentError(`--mechanism is ${pkcs11Mechanisms.join(" or ")}.`);
        return value;
      },
    )
    .option("--generate-key", "make the key (refused if its label exists)", false)
    .action((options: Formatted & { keyLabel: string; mechanism?: string; generateKey: boolean }) =>
      run(output, async () => {
        if (options.keyLabel.trim() === "") throw new UsageError("--key-label names the new key");
        const status = await withClient(options, (client) =>
          client.sys.rotateHsmKey({
            keyLabel: options.keyLabel,
            mechanism: options.mechanism ?? "",
            generateKey: options.generateKey,
          }),
        );
        emit(
          output,
          options.format,
          status,
          () =>
            `the root key is wrapped by HSM key "${options.keyLabel}"; keep the old key until the snapshots taken before now have expired, then delete it from the token\n`,
        );
      }),
    );

  op("rekey")
    .description(
      "new shares for the authorizing set, given a threshold of current ones (stdin, one per line)",
    )
    .option("--shares <n>", "new share count", nonNegativeInteger("--shares"), 5)
    .option("--threshold <n>", "new threshold", nonNegativeInteger("--threshold"), 3)
    .option(
      "--operator-key <file>",
      "a PEM public key per new share: they come out encrypted to them (repeat)",
      collect,
      [],
    )
    .option("--reset", "discard the rekey attempt in progress and the shares given to it", false)
    .action(
      (options: Formatted & { shares: number; threshold: number; operatorKey: string[]; reset: boolean }) =>
        run(output, async () => {
          if (options.reset) {
            await withClient(options, (client) => client.sys.rekey({ share: "", nonce: "", reset: true }));
            output.out("rekey reset: give the shares again\n");
            return;
          }
          const operatorKeys = options.operatorKey.map((file) =>
            readNamedFile("--operator-key", file).toString("utf8"),
          );
          // Before any share is read: an operator learns of a bad count or key without typing one.
          // (Loaded here: it brings the Shamir library, which no other command needs.)
          const { checkShareOptions } = await import("../hsm/seal-operations.js");
          try {
            checkShareOptions({
              count: options.shares,
              threshold: options.threshold,
              ...(operatorKeys.length > 0 ? { operatorKeys } : {}),
            });
          } catch (error) {
            throw new UsageError((error as Error).message);
          }
          const given = (await stdinLines(output)).map(plainShare);
          const result = await withClient(options, (client) =>
            giveShares(output, given, (share, nonce) =>
              client.sys.rekey({
                share,
                nonce,
                newShares: { count: options.shares, threshold: options.threshold, operatorKeys },
                reset: false,
              }),
            ),
          );
          emit(output, options.format, result, () =>
            [
              ...result.shares.map((share, i) => `new share ${i + 1}: ${share}\n`),
              `threshold: ${result.threshold}\n`,
            ].join(""),
          );
        }),
    );

  op("migrate-seal")
    .description("move between Shamir, HSM and both, given a threshold of authorizing shares (stdin)")
    .option("--shamir", "Shamir shares in the target", false)
    .option("--hsm", "the HSM in the target", false)
    .option("--generate-hsm-key", "make the HSM key", false)
    .option("--reset", "discard the migration attempt in progress and the shares given to it", false)
    .action(
      (options: Formatted & { shamir: boolean; hsm: boolean; generateHsmKey: boolean; reset: boolean }) =>
        run(output, async () => {
          if (options.reset) {
            await withClient(options, (client) =>
              client.sys.migrateSeal({
                share: "",
                nonce: "",
                shamir: false,
                hsm: false,
                generateHsmKey: false,
                reset: true,
              }),
            );
            output.out("seal migration reset: give the shares again\n");
            return;
          }
          if (!options.shamir && !options.hsm)
            throw new UsageError("name the target: --shamir, --hsm or both");
          const given = (await stdinLines(output)).map(plainShare);
          const result = await withClient(options, (client) =>
            giveShares(output, given, (share, nonce) =>
              client.sys.migrateSeal({
                share,
                nonce,
                shamir: options.shamir,
                hsm: options.hsm,
                generateHsmKey: options.generateHsmKey,
                reset: false,
              }),
            ),
          );
          emit(output, options.format, result, () => `seal: ${result.sealTypes.join(" + ")}\n`);
        }),
    );
}
