// Certificates for tests, made with the dev PKI and written to a temporary directory the way an
// operator would lay them out: a cluster CA for nodes, a client CA for clients, per node a
// certificate whose SANs name the node and its loopback address, and client certificates.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createCertificateAuthority,
  issueClientCertificate,
  issueNodeCertificate,
  type PemPair,
  type Validity,
} from "../../server/tls/dev-pki.js";
import type { TlsFilePaths } from "../../server/tls/tls-files.js";

export class TestPki {
  readonly root = mkdtempSync(join(tmpdir(), "strongroom-pki-"));
  readonly clusterCa: PemPair;
  readonly clientCa: PemPair;
  private issued = 0;
  private readonly clients = new Map<string, TlsFilePaths>();

  constructor(name = "test") {
    this.clusterCa = createCertificateAuthority(`strongroom ${name} cluster CA`);
    this.clientCa = createCertificateAuthority(`strongroom ${name} client CA`);
  }

  /** A node's files: its certificate, and the cluster CA bundle it trusts. */
  node(
    nodeId: string,
    hosts: readonly string[] = ["127.0.0.1", "localhost"],
    validity: Validity = {},
  ): TlsFilePaths {
    // A directory per call: another cluster's certificates must never overwrite (and so rotate)
    // those of a node that is still running.
    return this.write(
      `node-${nodeId}-${++this.issued}`,
      issueNodeCertificate(this.clusterCa, { nodeId, hosts, ...validity }),
      this.clusterCa,
    );
  }

  /**
   * A client's files: its certificate (client CA), and the cluster CA bundle that signs servers.
   * Without a validity, one certificate per name, made on first use: tests open hundreds of
   * clients, and each certificate made is files written (and a signature, a few ms, on the thread
   * the in-process nodes share).
   */
  client(name: string, validity?: Validity): TlsFilePaths {
    if (validity === undefined) {
      const made = this.clients.get(name) ?? this.issueClient(name, {});
      this.clients.set(name, made);
      return made;
    }
    return this.issueClient(name, validity);
  }

  private issueClient(name: string, validity: Validity): TlsFilePaths {
    return this.write(
      `client-${name}-${++this.issued}`,
      issueClientCertificate(this.clientCa, { name, ...validity }),
      this.clusterCa,
    );
  }

  /** The client CA's certificate as a file: what a node's client port trusts. */
  clientCaFile(): string {
    const file = join(this.root, "client-ca.pem");
    writeFileSync(file, this.clientCa.certificatePem);
    return file;
  }

  /** Writes a certificate pair and the CA it trusts under `name`, and returns the paths. */
  write(name: string, pair: PemPair, trusted: PemPair): TlsFilePaths {
    const directory = join(this.root, name);
    mkdirSync(directory, { recursive: true });
    const paths: TlsFilePaths = {
      caFile: join(directory, "ca.pem"),
      certificateFile: join(directory, "cert.pem"),
      privateKeyFile: join(directory, "key.pem"),
    };
    writeFileSync(paths.caFile, trusted.certificatePem);
    writeFileSync(paths.certificateFile, pair.certificatePem);
    writeFileSync(paths.privateKeyFile, pair.privateKeyPem, { mode: 0o600 });
    return paths;
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}
