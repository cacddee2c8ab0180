// `strongroom pki ...`: a small PKI for development, tests and first deployments: the two CAs a
// cluster needs (the cluster CA for nodes, the client CA for clients) and certificates from them,
// named the way nodes and clients are identified (strongroom://node/<id>, strongroom://client/<name>).
// Keys are written with mode 0600. For production, an organization's own CA does the same job;
// see docs/operations.md#certificates.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import type { PemPair } from "../server/tls/dev-pki.js";
import { UsageError } from "./client-connection.js";
import { collect, integerBetween, type Output, processOutput, run } from "./command-support.js";

/** The certificate code (node-forge), loaded by the pki commands only: the others need none of it. */
const devPki = () => import("../server/tls/dev-pki.js");

const authorities = {
  cluster: { certificate: "cluster-ca.pem", key: "cluster-ca-key.pem", name: "strongroom cluster CA" },
  client: { certificate: "client-ca.pem", key: "client-ca-key.pem", name: "strongroom client CA" },
} as const;

/** Writes a certificate and its key; never over existing files (a node's, a CA's, another client's). */
function writePair(directory: string, base: string, pair: PemPair): string[] {
  const certificate = join(directory, `${base}.pem`);
  const key = join(directory, `${base}-key.pem`);
  for (const file of [certificate, key]) {
    if (existsSync(file))
      throw new UsageError(`${file} exists: it is not overwritten (remove it to replace it)`);
  }
  writeFileSync(certificate, pair.certificatePem);
  writeFileSync(key, pair.privateKeyPem, { mode: 0o600 });
  return [certificate, key];
}

function authority(directory: string, which: keyof typeof authorities): PemPair {
  const files = authorities[which];
  const certificate = join(directory, files.certificate);
  const key = join(directory, files.key);
  if (!existsSync(certificate) || !existsSync(key))
    throw new UsageError(
      `${directory} has no ${which} CA (${files.certificate}, ${files.key}): run strongroom pki ca first`,
    );
  return { certificatePem: readFileSync(certificate, "utf8"), privateKeyPem: readFileSync(key, "utf8") };
}

export function registerPkiCommands(program: Command, output: Output = processOutput): void {
  const pki = program
    .command("pki")
    .description("a development PKI: the two CAs and node and client certificates");

  pki
    .command("ca")
    .requiredOption("--dir <directory>", "where the CAs go")
    .option("--days <n>", "validity", integerBetween("--days", 1, 36_500), 3650)
    .description("make the cluster CA (signs nodes) and the client CA (signs clients)")
    .action((options: { dir: string; days: number }) =>
      run(output, async () => {
        mkdirSync(options.dir, { recursive: true });
        if (existsSync(join(options.dir, authorities.cluster.key)))
          throw new UsageError(`${options.dir} already has CAs: they are not overwritten`);
        const { createCertificateAuthority } = await devPki();
        for (const which of ["cluster", "client"] as const) {
          const pair = createCertificateAuthority(authorities[which].name, { validDays: options.days });
          writeFileSync(join(options.dir, authorities[which].certificate), pair.certificatePem);
          writeFileSync(join(options.dir, authorities[which].key), pair.privateKeyPem, { mode: 0o600 });
        }
        output.out(
          `${join(options.dir, authorities.cluster.certificate)}\n${join(options.dir, authorities.client.certificate)}\n`,
        );
      }),
    );

  pki
    .command("node")
    .argument("<node-id>")
    .requiredOption("--dir <directory>", "where the CAs are, and where the certificate goes")
    .requiredOption(
      "--host <name-or-ip>",
      "a DNS name or IP address the node is reached at (repeat)",
      collect,
      [],
    )
    .option("--days <n>", "validity", integerBetween("--days", 1, 36_500), 365)
    .description("a node certificate from the cluster CA (server and client authentication)")
    .action((nodeId: string, options: { dir: string; host: string[]; days: number }) =>
      run(output, async () => {
        if (options.host.length === 0) throw new UsageError("give every --host the node is reached at");
        const { issueNodeCertificate } = await devPki();
        let pair: PemPair;
        try {
          pair = issueNodeCertificate(authority(options.dir, "cluster"), {
            nodeId,
            hosts: options.host,
            validDays: options.days,
          });
        } catch (error) {
          if (error instanceof UsageError) throw error;
          throw new UsageError((error as Error).message);
        }
        output.out(`${writePair(options.dir, nodeId, pair).join("\n")}\n`);
      }),
    );

  pki
    .command("client")
    .argument("<name>", "the client's identity")
    .requiredOption("--dir <directory>", "where the CAs are, and where the certificate goes")
    .option("--days <n>", "validity", integerBetween("--days", 1, 36_500), 365)
    .description("a client certificate from the client CA, naming strongroom://client/<name>")
    .action((name: string, options: { dir: string; days: number }) =>
      run(output, async () => {
        const { issueClientCertificate } = await devPki();
        let pair: PemPair;
        try {
          pair = issueClientCertificate(authority(options.dir, "client"), { name, validDays: options.days });
        } catch (error) {
          if (error instanceof UsageError) throw error;
          throw new UsageError((error as Error).message);
        }
        output.out(`${writePair(options.dir, name, pair).join("\n")}\n`);
      }),
    );
}
