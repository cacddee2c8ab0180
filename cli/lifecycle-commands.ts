// `strongroom certs ...` (the cluster's PKI engine: its CA, roles, issued certificates, the
// revocation list), `strongroom leases ...` and `strongroom revoke` / `strongroom identity ...`
// (emergency revocation). Not to be confused with `strongroom pki`, which makes the files a
// cluster is deployed with. An issued private key is written with mode 0600, or printed when no
// --out is given (as `token create` prints a token): it is stored nowhere else.

import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { writeFileAtomically } from "../agent/render.js";
import type { Lease } from "../proto/gen/strongroom/v1/leases.gen.js";
import { formatDuration } from "../server/durations.js";
import { type ConnectionOptions, sdkClient, UsageError, withClient } from "./client-connection.js";
import {
  argumentMeaning,
  collect,
  connectionFlags,
  duration,
  emit,
  type Format,
  formatFlag,
  integerBetween,
  type Output,
  optionMeaning,
  positiveDuration,
  processOutput,
  rows,
  run,
} from "./command-support.js";

type Formatted = ConnectionOptions & { format: Format };

const when = (ms: number) => (ms === 0 ? "never" : new Date(ms).toISOString());

function leaseRows(lease: Lease): string {
  return rows([
    ["id", lease.id],
    ["kind", lease.kind],
    ["identity", lease.identity],
    ["issued", when(lease.issuedAtMs)],
    ["expires", when(lease.expiresAtMs)],
    ["renewable", String(lease.renewable)],
  ]);
}

export function registerLifecycleCommands(program: Command, output: Output = processOutput): void {
  registerCertsCommands(program, output);
  registerLeasesCommands(program, output);
  registerRevokeCommands(program, output);
}

function registerCertsCommands(program: Command, output: Output): void {
  const certs = program
    .command("certs")
    .description("the cluster's internal CA: roles, short-lived certificates, the revocation list");
  const command = (parent: Command, name: string) => formatFlag(connectionFlags(parent.command(name)));

  command(certs, "create-ca")
    .description("create the cluster's internal CA (once)")
    .option("--common-name <name>", "the CA's subject name", "strongroom internal CA")
    .addOption(
      optionMeaning(
        "--ttl <duration>",
        "how long it is valid",
        0,
        "5 years",
        positiveDuration("--ttl", "5 years"),
      ),
    )
    .action((options: Formatted & { commonName: string; ttl: number }) =>
      run(output, async () => {
        const ca = await withClient(options, (client) =>
          client.pki.createCa({ commonName: options.commonName, ttlMs: options.ttl }),
        );
        emit(output, options.format, ca, () =>
          rows([
            ["serial", ca.serial],
            ["not after", when(ca.notAfterMs)],
          ]),
        );
      }),
    );

  command(certs, "ca")
    .description("print the CA certificate (PEM), for consumers to trust")
    .action((options: Formatted) =>
      run(output, async () => {
        const ca = await withClient(options, (client) => client.pki.getCa({}));
        emit(output, options.format, ca, () => ca.certificatePem);
      }),
    );

  command(certs, "crl")
    .description("print the signed revocation list (PEM)")
    .option("--out <file>", "write it to this file instead")
    .action((options: Formatted & { out?: string }) =>
      run(output, async () => {
        const crl = await withClient(options, (client) => client.pki.getCrl({}));
        if (options.out !== undefined) {
          writeFileSync(options.out, crl.crlPem);
          output.out(
            `${options.out}: ${crl.revokedSerials.length} revoked, valid until ${when(crl.nextUpdateMs)}\n`,
          );
          return;
        }
        emit(output, options.format, crl, () => crl.crlPem);
      }),
    );

  const role = certs.command("role").description("roles: which names may be issued, for how long");

  command(role, "write")
    .argument("<name>")
    .description("create or replace a role")
    .option(
      "--allow <pattern>",
      'a name certificates may carry; one "*" stands for one label part, e.g. "*.svc.example", or an IP address (repeat)',
      collect,
      [],
    )
    .addOption(
      optionMeaning(
        "--ttl <duration>",
        "lifetime when none is asked for",
        0,
        "1h",
        positiveDuration("--ttl", "1h"),
      ),
    )
    .addOption(
      optionMeaning(
        "--max-ttl <duration>",
        "the longest lifetime",
        0,
        "24h",
        positiveDuration("--max-ttl", "24h"),
      ),
    )
    .option("--server-auth", "certificates may serve TLS too (not only be clients)", false)
    .action(
      (
        name: string,
        options: Formatted & { allow: string[]; ttl: number; maxTtl: number; serverAuth: boolean },
      ) =>
        run(output, async () => {
          if (options.allow.length === 0) throw new UsageError("give at least one --allow pattern");
          const written = await withClient(options, (client) =>
            client.pki.writeRole({
              name,
              allowedNames: options.allow,
              ttlMs: options.ttl,
              maxTtlMs: options.maxTtl,
              serverAuth: options.serverAuth,
            }),
          );
          emit(
            output,
            options.format,
            written,
            () => `role ${name} written (revision ${written.revision})\n`,
          );
        }),
    );

  command(role, "read")
    .argument("<name>")
    .description("a role's allowed names, TTLs and key usage")
    .action((name: string, options: Formatted) =>
      run(output, async () => {
        const read = await withClient(options, (client) => client.pki.readRole({ name }));
        emit(output, options.format, read, () =>
          rows([
            ["name", read.name],
            ["allowed names", read.allowedNames.join(", ")],
            ["ttl", formatDuration(read.ttlMs)],
            ["max ttl", formatDuration(read.maxTtlMs)],
            ["server auth", String(read.serverAuth)],
          ]),
        );
      }),
    );

  command(role, "list")
    .description("the names of all roles")
    .action((options: Formatted) =>
      run(output, async () => {
        const listed = await withClient(options, (client) => client.pki.listRoles({}));
        emit(output, options.format, listed, () => listed.names.map((name) => `${name}\n`).join(""));
      }),
    );

  command(role, "delete")
    .argument("<name>")
    .description("delete a role (certificates issued under it stay valid until they expire or are revoked)")
    .action((name: string, options: Formatted) =>
      run(output, async () => {
        const deleted = await withClient(options, (client) => client.pki.deleteRole({ name }));
        emit(output, options.format, deleted, () => `role ${name} deleted (revision ${deleted.revision})\n`);
      }),
    );

  command(certs, "issue")
    .argument("<role>")
    .argument("<common-name>")
    .description("a new key and certificate under a role (a lease: revoke it with `leases revoke`)")
    .option("--dns <name>", "another DNS name or IP address for the certificate (repeat)", collect, [])
    .addOption(
      optionMeaning(
        "--ttl <duration>",
        "its lifetime",
        0,
        "the role's",
        positiveDuration("--ttl", "the role's"),
      ),
    )
    .option("--out <directory>", "write cert.pem, key.pem (mode 0600) and ca.pem there instead of printing")
    .action(
      (role: string, commonName: string, options: Formatted & { dns: string[]; ttl: number; out?: string }) =>
        run(output, async () => {
          const issued = await withClient(options, (client) =>
            client.pki.issue({ role, commonName, dnsNames: options.dns, ttlMs: options.ttl }),
          );
          const summary: [string, string][] = [
            ["serial", issued.serial],
            ["not after", when(issued.notAfterMs)],
            ["lease", issued.leaseId],
          ];
          if (options.out !== undefined) {
            if (!existsSync(options.out)) mkdirSync(options.out, { recursive: true, mode: 0o700 });
            // Each file replaced whole, with its mode whatever the file it replaces had: a key
            // written into an older, readable key.pem kept that file's mode.
            const encoded = (pem: string) => Buffer.from(pem, "utf8");
            writeFileAtomically(join(options.out, "key.pem"), encoded(issued.privateKeyPem), 0o600);
            writeFileAtomically(join(options.out, "cert.pem"), encoded(issued.certificatePem), 0o644);
            writeFileAtomically(join(options.out, "ca.pem"), encoded(issued.caPem), 0o644);
            output.out(rows([...summary, ["files", `${options.out}/{cert,key,ca}.pem`]]));
            return;
          }
          emit(
            output,
            options.format,
            issued,
            () => `${rows(summary)}${issued.certificatePem}${issued.privateKeyPem}`,
          );
        }),
    );
}

function registerLeasesCommands(program: Command, output: Output): void {
  const leases = program.command("leases").description("leases of tokens and issued certificates");
  const command = (name: string) => formatFlag(connectionFlags(leases.command(name)));

  command("list")
    .description("leases whose id starts with a prefix")
    .addArgument(argumentMeaning("[prefix]", 'e.g. "pki/issue/web/" or "auth/token/"', "", "every lease"))
    .option("--limit <count>", "at most this many", integerBetween("--limit", 1, 1000), 1000)
    .action((prefix: string, options: Formatted & { limit: number }) =>
      run(output, async () => {
        const listed = await withClient(options, (client) =>
          client.leases.list({ prefix, limit: options.limit, after: "" }),
        );
        emit(output, options.format, listed, () =>
          listed.leases.length === 0
            ? "no leases\n"
            : rows(
                listed.leases.map((lease) => [
                  lease.id,
                  `${lease.identity}, expires ${when(lease.expiresAtMs)}`,
                ]),
              ) + (listed.nextAfter === "" ? "" : "(more: narrow the prefix)\n"),
        );
      }),
    );

  command("lookup")
    .description("one lease: its kind, identity, when it was issued and expires, whether it renews")
    .argument("<id>")
    .action((id: string, options: Formatted) =>
      run(output, async () => {
        const lease = await withClient(options, (client) => client.leases.lookup({ id }));
        emit(output, options.format, lease, () => leaseRows(lease));
      }),
    );

  command("renew")
    .argument("<id>")
    .description("extend a renewable lease (a token's)")
    .addOption(
      optionMeaning(
        "--increment <duration>",
        "by how much from now",
        0,
        "its TTL",
        positiveDuration("--increment", "its TTL"),
      ),
    )
    .action((id: string, options: Formatted & { increment: number }) =>
      run(output, async () => {
        const lease = await withClient(options, (client) =>
          client.leases.renew({ id, incrementMs: options.increment }),
        );
        emit(output, options.format, lease, () => leaseRows(lease));
      }),
    );

  command("revoke")
    .argument("<id>")
    .description("revoke a lease: a token is refused everywhere, a certificate goes on the revocation list")
    .action((id: string, options: Formatted) =>
      run(output, async () => {
        const revoked = await withClient(options, (client) => client.leases.revoke({ id }));
        emit(output, options.format, revoked, () => `${id} revoked (revision ${revoked.revision})\n`);
      }),
    );

  command("revoke-prefix")
    .argument("<prefix>")
    .description("revoke every lease whose id starts with the prefix (needs sudo)")
    .action((prefix: string, options: Formatted) =>
      run(output, async () => {
        const revoked = await withClient(options, (client) => client.leases.revokePrefix({ prefix }));
        emit(
          output,
          options.format,
          revoked,
          () => `${revoked.revoked.length} leases revoked (revision ${revoked.revision})\n`,
        );
        if (revoked.callerTokenRevoked) output.err(ownTokenRevoked);
      }),
    );
}

/** A prefix revocation took the caller's own token with the rest (Vault's does too). */
const ownTokenRevoked = "strongroom: the token this command used was one of them: it no longer works\n";

/**
 * Waits until every endpoint has applied `revision` (each node refuses what was revoked from
 * then on); answers, per endpoint, how long after `started` it had, or null if it did not answer
 * within `timeoutMs`.
 */
async function appliedOnEvery(
  options: ConnectionOptions,
  revision: number,
  started: number,
  timeoutMs: number,
): Promise<[string, number | null][]> {
  const addresses = (options.addr ?? process.env.STRONGROOM_ADDR ?? "")
    .split(",")
    .map((address) => address.trim())
    .filter((address) => address !== "");
  return Promise.all(
    addresses.map(async (address): Promise<[string, number | null]> => {
      const client = sdkClient({ ...options, addr: address });
      try {
        while (performance.now() - started < timeoutMs) {
          const status = await client.cluster.status({}, { deadlineMs: 1000 }).catch(() => null);
          if (status !== null && status.appliedIndex >= revision)
            return [address, performance.now() - started];
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        return [address, null];
      } finally {
        client.close();
      }
    }),
  );
}

function registerRevokeCommands(program: Command, output: Output): void {
  formatFlag(connectionFlags(program.command("revoke")))
    .description(
      "emergency revocation: an identity (disabled, every token and lease revoked, optionally its readable secrets rotated), a token by accessor, a lease, or leases by prefix",
    )
    .option("--identity <identity>", "disable an identity and revoke everything it holds")
    .option("--accessor <accessor>", "revoke a token (and its descendants)")
    .option("--lease <id>", "revoke one lease")
    .option("--prefix <prefix>", "revoke every lease under a prefix")
    .option("--rotate", "with --identity: rotate every secret it could read", false)
    .option(
      "--keep-enabled",
      "with --identity: revoke its credentials but leave its certificate working",
      false,
    )
    .addOption(optionMeaning("--reason <text>", "with --identity: why, kept with the record", "", "none"))
    .addOption(
      optionMeaning(
        "--wait <duration>",
        "wait this long at most for every node given in STRONGROOM_ADDR/--addr to apply it",
        10_000,
        "10s",
        duration("--wait"),
      ),
    )
    .action(
      (
        options: Formatted & {
          identity?: string;
          accessor?: string;
          lease?: string;
          prefix?: string;
          rotate: boolean;
          keepEnabled: boolean;
          reason: string;
          wait: number;
        },
      ) =>
        run(output, async () => {
          const targets = [options.identity, options.accessor, options.lease, options.prefix].filter(
            (target) => target !== undefined,
          );
          if (targets.length !== 1)
            throw new UsageError("name exactly one of --identity, --accessor, --lease or --prefix");
          if (
            (options.rotate || options.keepEnabled || options.reason !== "") &&
            options.identity === undefined
          )
            throw new UsageError("--rotate, --keep-enabled and --reason go with --identity");
          const started = performance.now();
          const report = await withClient(options, async (client) => {
            if (options.identity !== undefined) {
              return client.access.revokeIdentity({
                identity: options.identity,
                rotateReadable: options.rotate,
                keepEnabled: options.keepEnabled,
                reason: options.reason,
              });
            }
            if (options.accessor !== undefined) {
              const revoked = await client.leases.revoke({ id: `auth/token/${options.accessor}` });
              return { revision: revoked.revision, leasesRevoked: [`auth/token/${options.accessor}`] };
            }
            if (options.lease !== undefined) {
              const revoked = await client.leases.revoke({ id: options.lease });
              return { revision: revoked.revision, leasesRevoked: [options.lease] };
            }
            const revoked = await client.leases.revokePrefix({ prefix: options.prefix ?? "" });
            if (revoked.callerTokenRevoked) output.err(ownTokenRevoked);
            return { revision: revoked.revision, leasesRevoked: revoked.revoked };
          });
          const answeredMs = performance.now() - started;
          const applied =
            report.revision === 0
              ? []
              : await appliedOnEvery(options, report.revision, started, options.wait);
          const data = {
            ...report,
            answeredAfterMs: Math.round(answeredMs),
            appliedAfterMs: Object.fromEntries(
              applied.map(([address, ms]) => [address, ms === null ? null : Math.round(ms)]),
            ),
          };
          emit(output, options.format, data, () => {
            const list = (items: readonly string[] | undefined) =>
              items === undefined || items.length === 0 ? "-" : items.join(", ");
            const lines: [string, string][] = [];
            if ("disabledAtRevision" in report) {
              lines.push([
                "disabled",
                report.disabledAtRevision === 0
                  ? "no (--keep-enabled)"
                  : `from revision ${report.disabledAtRevision}`,
              ]);
              lines.push(["tokens revoked", list(report.tokensRevoked)]);
              lines.push(["leases revoked", list(report.leasesRevoked)]);
              if (options.rotate) {
                lines.push(["secrets rotated", list(report.secretsRotated)]);
                lines.push(["rotate by hand", list(report.secretsToRotateByHand)]);
              }
            } else lines.push(["leases revoked", list(report.leasesRevoked)]);
            lines.push(["revision", String(report.revision)]);
            lines.push(["answered after", `${Math.round(answeredMs)} ms`]);
            for (const [address, ms] of applied)
              lines.push([
                `applied on ${address}`,
                ms === null ? `not within ${formatDuration(options.wait)}` : `after ${Math.round(ms)} ms`,
              ]);
            return rows(lines);
          });
          if (applied.some(([, ms]) => ms === null)) output.exit(1);
        }),
    );

  const identity = program.command("identity").description("identities disabled by an emergency revocation");
  formatFlag(connectionFlags(identity.command("enable")))
    .argument("<identity>")
    .description("let a disabled identity make calls again (its revoked tokens and leases stay revoked)")
    .action((name: string, options: Formatted) =>
      run(output, async () => {
        const enabled = await withClient(options, (client) =>
          client.access.enableIdentity({ identity: name }),
        );
        emit(output, options.format, enabled, () => `${name} enabled (revision ${enabled.revision})\n`);
      }),
    );
  formatFlag(connectionFlags(identity.command("disabled")))
    .description("the disabled identities, with who disabled them, when and why")
    .action((options: Formatted) =>
      run(output, async () => {
        const listed = await withClient(options, (client) => client.access.listDisabledIdentities({}));
        emit(output, options.format, listed, () =>
          listed.identities.length === 0
            ? "no disabled identities\n"
            : rows(
                listed.identities.map((entry) => [
                  entry.identity,
                  `since ${when(entry.disabledAtMs)} by ${entry.disabledBy}${entry.reason === "" ? "" : `: ${entry.reason}`}`,
                ]),
              ),
        );
      }),
    );
}
