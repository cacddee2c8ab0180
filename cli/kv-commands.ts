// `strongroom kv ...` and `strongroom operator status`. A secret never needs to be on the command
// line: a value comes from stdin or a file, and `kv get` shows a value only when asked (--reveal,
// or --format json|yaml, which carry it base64-encoded). Exit codes: 0 ok, 1 error, 2 usage;
// `operator status` exits 2 when the node is sealed, like Vault's.

import { type Command, InvalidArgumentError } from "commander";
import { Consistency, type SecretMetadata } from "../proto/gen/strongroom/v1/secrets.gen.js";
import type { SealStatusResponse } from "../proto/gen/strongroom/v1/sys.gen.js";
import { formatDuration } from "../server/durations.js";
import { isWellFormedRequestId, requestIdCharsMax } from "../storage/state/limits.js";
import { type ConnectionOptions, UsageError, withClient } from "./client-connection.js";
import {
  argumentMeaning,
  connectionFlags,
  duration,
  emit,
  type Format,
  formatFlag,
  nonNegativeInteger,
  type Output,
  optionMeaning,
  positiveDuration,
  positiveInteger,
  processOutput,
  readNamedFile,
  rows,
  run,
} from "./command-support.js";
import { describeGenerator, type GeneratorFlag, parseGeneratorFlag } from "./generator-flag.js";
import { applyMergePatch } from "./json-merge-patch.js";

type Formatted = ConnectionOptions & { format: Format };

const consistency = (stale: number | undefined) => ({
  consistency: stale === undefined ? Consistency.CONSISTENCY_LINEARIZABLE : Consistency.CONSISTENCY_STALE,
  maxStalenessMs: stale ?? 0,
});

/** Watch failures kv watch stops at (exit 1) instead of reconnecting: the caller's to fix. */
const refusals = new Set(["PERMISSION_DENIED", "TOKEN_INVALID", "IDENTITY_DISABLED", "UNAUTHENTICATED"]);

const when = (ms: number) => (ms === 0 ? "-" : new Date(ms).toISOString());

const requestIdFlag = "--request-id <id>";
const requestIdHelp =
  "the write's request id (default: a new one): the same command run again with it applies at most once, within 5 minutes";

function requestIdArgument(value: string): string {
  if (!isWellFormedRequestId(value))
    throw new InvalidArgumentError(
      `--request-id is 1 to ${requestIdCharsMax} characters of A-Z, a-z, 0-9, '.', '_', ':' and '-' (a UUID, say)`,
    );
  return value;
}

function versionsArgument(value: string): number[] {
  const versions = value.split(",").map(Number);
  if (!versions.every((version) => Number.isSafeInteger(version) && version > 0))
    throw new InvalidArgumentError("--versions is a comma-separated list of versions, e.g. 3,4");
  return versions;
}

export function registerClientCommands(program: Command, output: Output = processOutput): void {
  const kv = program.command("kv").description("read and write secrets");
  const command = (name: string) => formatFlag(connectionFlags(kv.command(name)));

  command("put")
    .argument("<path>", "the secret's path")
    .description("write a new version of a secret; the value comes from stdin or --file")
    .option("--file <file>", "read the value from this file instead of stdin")
    .option(
      "--cas <version>",
      "only if the secret is at this version (0: must not exist)",
      nonNegativeInteger("--cas"),
    )
    .option(requestIdFlag, requestIdHelp, requestIdArgument)
    .action((path: string, options: Formatted & { file?: string; cas?: number; requestId?: string }) =>
      run(output, async () => {
        const value =
          options.file === undefined ? await output.stdin() : readNamedFile("--file", options.file);
        const written = await withClient(options, (client) =>
          client.secrets.put({
            path,
            value,
            ...(options.cas === undefined ? {} : { cas: options.cas }),
            ...(options.requestId === undefined ? {} : { requestId: options.requestId }),
          }),
        );
        emit(
          output,
          options.format,
          { path, ...written },
          () => `${path}: version ${written.version} (revision ${written.revision})\n`,
        );
      }),
    );

  command("patch")
    .argument("<path>", "the secret's path (its value a JSON object)")
    .description(
      "merge a JSON object from stdin into a secret's JSON value, as a JSON merge patch (RFC 7396: null removes a member); check-and-set on its version",
    )
    .action((path: string, options: Formatted) =>
      run(output, async () => {
        let changes: unknown;
        try {
          changes = JSON.parse((await output.stdin()).toString("utf8"));
        } catch {
          throw new UsageError("kv patch reads a JSON object on stdin");
        }
        if (typeof changes !== "object" || changes === null || Array.isArray(changes))
          throw new UsageError("kv patch reads a JSON object on stdin");
        const written = await withClient(options, async (client) => {
          const current = await client.secrets.get({ path });
          // What the secret holds, not how the command was used: an error (exit 1), not a usage one.
          const notAnObject = new Error(`${path} does not hold a JSON object, so it cannot be patched`);
          let value: unknown;
          try {
            value = JSON.parse(Buffer.from(current.value).toString("utf8"));
          } catch {
            throw notAnObject;
          }
          if (typeof value !== "object" || value === null || Array.isArray(value)) throw notAnObject;
          const merged = Buffer.from(JSON.stringify(applyMergePatch(value, changes)));
          // Check-and-set: a change made in between fails this patch rather than being lost.
          return client.secrets.put({ path, value: merged, cas: current.version });
        });
        emit(
          output,
          options.format,
          { path, ...written },
          () => `${path}: version ${written.version} (revision ${written.revision})\n`,
        );
      }),
    );

  command("get")
    .argument("<path>", "the secret's path")
    .description("read a secret's version; its value is shown only with --reveal (or in json/yaml)")
    .addOption(
      optionMeaning("--version <version>", "this version", 0, "the newest", nonNegativeInteger("--version")),
    )
    .option("--reveal", "write the value itself to stdout", false)
    .option("--stale <ms>", "accept a local read this many milliseconds stale", nonNegativeInteger("--stale"))
    .action((path: string, options: Formatted & { version: number; reveal: boolean; stale?: number }) =>
      run(output, async () => {
        const read = await withClient(options, (client) =>
          client.secrets.get({ path, version: options.version, ...consistency(options.stale) }),
        );
        if (options.reveal && options.format === "table") {
          output.out(Buffer.from(read.value).toString("utf8"));
          return;
        }
        emit(
          output,
          options.format,
          { path, ...read },
          () =>
            `${path}: version ${read.version}, ${read.value.length} bytes, created ${when(read.createdMs)} (--reveal to show the value)\n`,
        );
      }),
    );

  for (const [name, description] of [
    ["delete", "soft-delete versions (default: the newest); undelete brings them back"],
    ["undelete", "bring soft-deleted versions back"],
    ["destroy", "erase versions' values for good"],
  ] as const) {
    command(name)
      .argument("<path>", "the secret's path")
      .description(description)
      .addOption(
        optionMeaning("--versions <list>", "comma-separated versions", [], "the newest", versionsArgument),
      )
      .option(requestIdFlag, requestIdHelp, requestIdArgument)
      .action((path: string, options: Formatted & { versions: number[]; requestId?: string }) =>
        run(output, async () => {
          const written = await withClient(options, (client) =>
            client.secrets[name]({
              path,
              versions: options.versions,
              ...(options.requestId === undefined ? {} : { requestId: options.requestId }),
            }),
          );
          emit(
            output,
            options.format,
            { path, ...written },
            () => `${path}: ${pastTense[name]} (revision ${written.revision})\n`,
          );
        }),
      );
  }

  command("list")
    .addArgument(argumentMeaning("[prefix]", 'a prefix ending in "/"', "", "everything the caller may list"))
    .description("paths under a prefix, every page")
    .option("--stale <ms>", "accept a local read this many milliseconds stale", nonNegativeInteger("--stale"))
    .action((prefix: string, options: Formatted & { stale?: number }) =>
      run(output, async () => {
        const paths = await withClient(options, async (client) => {
          const all: string[] = [];
          let after = "";
          do {
            const page = await client.secrets.list({
              prefix,
              after,
              limit: 1000,
              ...consistency(options.stale),
            });
            all.push(...page.paths);
            after = page.next;
          } while (after !== "");
          return all;
        });
        emit(output, options.format, { paths }, () => paths.map((path) => `${path}\n`).join(""));
      }),
    );

  command("metadata")
    .argument("<path>", "the secret's path")
    .description("show a secret's metadata, or change it with the options below")
    .option("--max-versions <n>", "versions kept (at least 1)", positiveInteger("--max-versions"))
    .option("--cas-required <bool>", "writes must give --cas (true or false)")
    .option(
      "--delete-version-after <duration>",
      "versions older than this are not served (0: never)",
      duration("--delete-version-after"),
    )
    .option("--owner <owner>", "who owns the secret")
    .option(
      "--rotation-period <duration>",
      "how often the cluster rotates it (0: no schedule; needs --generator)",
      duration("--rotation-period"),
    )
    .option(
      "--generator <spec>",
      "what a rotation writes: random-bytes:LENGTH[:hex|raw], password:LENGTH[:lower=N,upper=N,digits=N,symbols=N], ed25519, rsa:BITS, x509:ROLE:NAME[:ttl=D,dns=N] (a certificate from the cluster CA), or none",
      parseGeneratorFlag,
    )
    .option("--expires-at <time>", "when the whole secret expires: an ISO 8601 time, or never", expiryTime)
    .option("--expires-in <duration>", "the secret expires this long from now", duration("--expires-in"))
    .option(
      "--rotation-overlap <duration>",
      "how long the version a rotation replaced stays readable (0: not after the rotation)",
      duration("--rotation-overlap"),
    )
    .action(
      (
        path: string,
        options: Formatted & {
          maxVersions?: number;
          casRequired?: string;
          deleteVersionAfter?: number;
          owner?: string;
          rotationPeriod?: number;
          generator?: GeneratorFlag;
          rotationOverlap?: number;
          expiresAt?: number;
          expiresIn?: number;
        },
      ) =>
        run(output, async () => {
          if (options.casRequired !== undefined && !["true", "false"].includes(options.casRequired))
            throw new UsageError("--cas-required is true or false");
          if (options.expiresAt !== undefined && options.expiresIn !== undefined)
            throw new UsageError("give --expires-at or --expires-in, not both");
          const expiresAtMs =
            options.expiresIn !== undefined ? Date.now() + options.expiresIn : options.expiresAt;
          const changes = {
            ...(options.maxVersions === undefined ? {} : { maxVersions: options.maxVersions }),
            ...(options.casRequired === undefined ? {} : { casRequired: options.casRequired === "true" }),
            ...(options.deleteVersionAfter === undefined
              ? {}
              : { deleteVersionAfterMs: options.deleteVersionAfter }),
            ...(options.owner === undefined ? {} : { owner: options.owner }),
            ...(options.rotationPeriod === undefined ? {} : { rotationPeriodMs: options.rotationPeriod }),
            ...(options.rotationOverlap === undefined ? {} : { rotationOverlapMs: options.rotationOverlap }),
            ...(expiresAtMs === undefined ? {} : { expiresAtMs }),
            ...(options.generator === undefined
              ? {}
              : options.generator.clear
                ? { clearGenerator: true }
                : { generator: options.generator.generator }),
          };
          const metadata = await withClient(options, async (client) => {
            if (Object.keys(changes).length > 0) await client.secrets.updateMetadata({ path, ...changes });
            return client.secrets.getMetadata({ path });
          });
          emit(output, options.format, metadata, () => metadataTable(metadata));
        }),
    );

  command("stale")
    .addArgument(argumentMeaning("[prefix]", 'a prefix ending in "/"', "", "everything the caller may list"))
    .description(
      "secrets that need an operator: expired, expiring soon, overdue for rotation, or unread for long (exit 3 if any)",
    )
    .addOption(
      optionMeaning(
        "--expiring-within <duration>",
        "list secrets expiring within this long too",
        7 * 24 * 3_600_000,
        "7d",
        duration("--expiring-within"),
      ),
    )
    .addOption(
      optionMeaning(
        "--unread-for <duration>",
        "list secrets no node has served for this long too, e.g. 90d",
        0,
        "none listed",
        positiveDuration("--unread-for", "no secret listed as unread"),
      ),
    )
    .action((prefix: string, options: Formatted & { expiringWithin: number; unreadFor: number }) =>
      run(output, async () => {
        const report = await withClient(options, (client) =>
          client.secrets.stale({
            prefix,
            expiringWithinMs: options.expiringWithin,
            limit: 1000,
            unreadForMs: options.unreadFor,
          }),
        );
        // What the unread part could not see, on stderr so that --format json stays parseable.
        if (options.unreadFor > 0 && report.readsTrackedSinceMs > Date.now() - options.unreadFor)
          output.err(
            `note: reads are recorded since ${when(report.readsTrackedSinceMs)}, less than --unread-for ago: no secret is listed unread yet\n`,
          );
        if (report.membersNotAnswering.length > 0)
          output.err(
            `note: ${report.membersNotAnswering.join(", ")} did not answer for their reads: a secret only they served may be listed unread\n`,
          );
        emit(output, options.format, report, () =>
          report.secrets.length === 0
            ? "nothing stale\n"
            : rows(
                report.secrets.map((secret) => [
                  secret.path,
                  `${secret.reason === "unread" ? `unread, ${secret.atMs === 0 ? "not read since reads were recorded" : `last read ${when(secret.atMs)}`}` : `${secret.reason} ${when(secret.atMs)}`}${secret.owner === "" ? "" : ` (owner ${secret.owner})`}`,
                ]),
              ) + (report.truncated ? "(more: narrow the prefix)\n" : ""),
        );
        // A non-zero exit a cron job or a CI step can act on.
        if (report.secrets.length > 0) output.exit(3);
      }),
    );

  command("rotate")
    .argument("<path>", "the secret's path")
    .description("rotate a secret now: a new version from its generator (set with kv metadata --generator)")
    .action((path: string, options: Formatted) =>
      run(output, async () => {
        const rotated = await withClient(options, (client) => client.secrets.rotate({ path }));
        emit(
          output,
          options.format,
          rotated,
          () => `${path}: rotated to version ${rotated.version} (revision ${rotated.revision})\n`,
        );
      }),
    );

  command("history")
    .argument("<path>", "the secret's path")
    .description("every kept version with its state (never a value)")
    .action((path: string, options: Formatted) =>
      run(output, async () => {
        const history = await withClient(options, (client) => client.secrets.history({ path }));
        emit(output, options.format, history, () =>
          history.versions
            .map(
              (version) =>
                `${String(version.version).padEnd(8)}${when(version.createdMs)}  ${version.destroyed ? "destroyed" : version.deletedMs !== 0 ? `deleted ${when(version.deletedMs)}` : "live"}\n`,
            )
            .join(""),
        );
      }),
    );

  command("watch")
    .addArgument(
      argumentMeaning("[prefix]", "changes under this prefix", "", "every change the caller may read"),
    )
    .description("print changes as they happen (one line, or one JSON object, each) until Ctrl-C or --count")
    .option(
      "--from <revision>",
      "resume after this revision",
      nonNegativeInteger("--from", Number.MAX_SAFE_INTEGER),
      0,
    )
    .option("--count <n>", "stop after this many changes", positiveInteger("--count"))
    .action((prefix: string, options: Formatted & { from: number; count?: number }) =>
      run(output, () =>
        withClient(
          options,
          (client) =>
            new Promise<void>((resolve, reject) => {
              let seen = 0;
              // A node down or sealed is waited out, and said so once per outage: a person
              // watching must not take silence for "nothing changed".
              let lost = false;
              let opened = false;
              const watch = client.watch(prefix, options.from, {
                onOpen: () => {
                  if (lost)
                    output.err(
                      opened
                        ? "strongroom: watching again, from the last change shown\n"
                        : "strongroom: watching\n",
                    );
                  lost = false;
                  opened = true;
                },
                onEvent: (event) => {
                  if (options.format === "table")
                    output.out(
                      `${event.revision}  ${event.path}  ${kindName(event.kind)}  version ${event.version}\n`,
                    );
                  else output.out(`${JSON.stringify({ ...event, kind: kindName(event.kind) })}\n`);
                  if (options.count !== undefined && ++seen >= options.count) {
                    watch.close();
                    resolve();
                  }
                },
                // The watch goes on from now: say that changes before it may be missing.
                onGap: (error) => output.err(`strongroom: ${error.message}; watching from now\n`),
                onEnd: reject,
                onError: (error) => {
                  // A person at the command line fixes these and runs it again; a node down or a
                  // leader change is waited out.
                  if (refusals.has(error.reason)) {
                    watch.close();
                    reject(error);
                  } else if (!lost) {
                    lost = true;
                    output.err(
                      opened
                        ? `strongroom: the watch lost its stream: ${error.message}; reconnecting\n`
                        : `strongroom: the watch could not start: ${error.message}; trying again\n`,
                    );
                  }
                },
              });
              process.once("SIGINT", () => {
                watch.close();
                resolve();
              });
            }),
        ),
      ),
    );

  const operator = program.command("operator").description("operate the seal and the cluster");
  formatFlag(connectionFlags(operator.command("status")))
    .description("seal and Raft status of the first node that answers; exits 2 when it is sealed")
    .action((options: Formatted) =>
      run(output, async () => {
        const [seal, raft] = await withClient(options, (client) =>
          Promise.all([client.sys.sealStatus({}), client.cluster.status({})]),
        );
        emit(output, options.format, { seal, raft }, () =>
          rows([
            ["node", seal.nodeId],
            ["initialized", String(seal.initialized)],
            ["sealed", String(seal.sealed)],
            ["seal", seal.sealTypes.join(" + ") || "-"],
            ["unseal progress", `${seal.progress}/${seal.threshold}`],
            ...hsmRows(seal),
            ["role", raft.role],
            ["leader", raft.leaderId || "-"],
            ["term", String(raft.term)],
            ["applied index", String(raft.appliedIndex)],
          ]),
        );
        if (seal.sealed) output.exit(2);
      }),
    );
}

/** Why an HSM node is sealed: its HSM is not answering (the error), or an operator sealed it (stopped). */
function hsmRows(seal: SealStatusResponse): [string, string][] {
  if (!seal.sealTypes.includes("pkcs11")) return [];
  return [
    ["hsm key", seal.hsmKeyLabel === "" ? "-" : `${seal.hsmKeyLabel} (${seal.hsmMechanism})`],
    ["hsm auto-unseal", seal.hsmState || "-"],
    ["hsm last error", seal.hsmLastError || "-"],
  ];
}

/** --expires-at: an ISO 8601 time (ms since the epoch), or "never" (0: the expiry removed). */
function expiryTime(text: string): number {
  if (text === "never") return 0;
  const at = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(at))
    throw new InvalidArgumentError(
      `--expires-at takes an ISO 8601 time (e.g. 2027-01-31T00:00:00Z) or never, not ${JSON.stringify(text)}`,
    );
  return at;
}

function kindName(kind: number): string {
  return (
    ["unspecified", "put", "delete", "undelete", "destroy", "metadata", "delete-all"][kind] ?? String(kind)
  );
}

/** What `kv delete`, `undelete` and `destroy` say they did. */
const pastTense = { delete: "deleted", undelete: "undeleted", destroy: "destroyed" } as const;

function metadataTable(metadata: SecretMetadata): string {
  return rows([
    ["path", metadata.path],
    ["current version", String(metadata.currentVersion)],
    ["created", when(metadata.createdMs)],
    ["updated", when(metadata.updatedMs)],
    ["max versions", String(metadata.maxVersions)],
    ["cas required", String(metadata.casRequired)],
    [
      "delete after",
      metadata.deleteVersionAfterMs === 0 ? "never" : formatDuration(metadata.deleteVersionAfterMs),
    ],
    ["owner", metadata.owner || "-"],
    ["rotation period", metadata.rotationPeriodMs === 0 ? "-" : formatDuration(metadata.rotationPeriodMs)],
    ["generator", describeGenerator(metadata.generator)],
    [
      "rotation overlap",
      metadata.rotationOverlapMs === 0 ? "none" : formatDuration(metadata.rotationOverlapMs),
    ],
    ["last rotated", metadata.lastRotatedMs === 0 ? "never" : when(metadata.lastRotatedMs)],
    ["next rotation", metadata.nextRotationMs === 0 ? "-" : when(metadata.nextRotationMs)],
    ["expires", metadata.expiresAtMs === 0 ? "never" : when(metadata.expiresAtMs)],
    [
      "rotation failures",
      metadata.rotationFailures === 0
        ? "0"
        : `${metadata.rotationFailures} (last: ${metadata.lastRotationError})`,
    ],
    ...Object.entries(metadata.custom).map(([key, value]) => [`custom ${key}`, value] as const),
  ]);
}
