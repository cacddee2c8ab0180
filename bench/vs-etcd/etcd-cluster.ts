// A 3-member etcd cluster on loopback for the benchmark, set up as strongroom's is: mutual TLS for
// clients and between members (certificates from our development PKI, each member's naming its
// address), its own data directories, fsync on (etcd always syncs its WAL). Debian's etcd-server
// package provides the binary; `ensureEtcd` installs it when it is missing and we are root.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { credentials, Metadata } from "@grpc/grpc-js";
import { MetricsText } from "../../chaos/metrics-text.js";
import { KVClient } from "../../proto/gen/etcd/etcdserverpb/kv.gen.js";
import {
  createCertificateAuthority,
  issueClientCertificate,
  issueNodeCertificate,
  type PemPair,
} from "../../server/tls/dev-pki.js";

export const etcdBinary = "/usr/bin/etcd";

/** Installs Debian's etcd-server when it is missing (root with apt), or says how. */
export function ensureEtcd(): string {
  if (existsSync(etcdBinary))
    return execFileSync(etcdBinary, ["--version"], { encoding: "utf8" }).split("\n")[0] ?? "";
  const root = process.getuid?.() === 0;
  if (!root) throw new Error("etcd is not installed: run  sudo apt-get install -y etcd-server");
  process.stderr.write("installing etcd-server (apt-get) ...\n");
  execFileSync("apt-get", ["install", "-y", "--no-install-recommends", "etcd-server"], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  // Debian starts a default etcd service where systemd runs; ours use their own addresses and data.
  return execFileSync(etcdBinary, ["--version"], { encoding: "utf8" }).split("\n")[0] ?? "";
}

export interface EtcdClusterOptions {
  readonly directory: string;
  /** 127.0.0.<hostBase + i> for member i. */
  readonly hostBase: number;
}

export class EtcdCluster {
  readonly hosts: string[];
  readonly tls: { caFile: string; certFile: string; keyFile: string };
  private readonly children: ChildProcess[] = [];
  private readonly args: string[][];

  constructor(options: EtcdClusterOptions) {
    mkdirSync(options.directory, { recursive: true });
    this.hosts = [0, 1, 2].map((i) => `127.0.0.${options.hostBase + i}`);
    const clusterCa = createCertificateAuthority("bench etcd member CA");
    const clientCa = createCertificateAuthority("bench etcd client CA");
    const write = (name: string, content: string, mode = 0o644) => {
      const file = join(options.directory, name);
      writeFileSync(file, content, { mode });
      return file;
    };
    const pair = (name: string, issued: PemPair) => ({
      cert: write(`${name}.pem`, issued.certificatePem),
      key: write(`${name}-key.pem`, issued.privateKeyPem, 0o600),
    });
    const memberCaFile = write("member-ca.pem", clusterCa.certificatePem);
    const clientCaFile = write("client-ca.pem", clientCa.certificatePem);
    const client = pair("client", issueClientCertificate(clientCa, { name: "bench" }));
    this.tls = { caFile: memberCaFile, certFile: client.cert, keyFile: client.key };
    const initialCluster = this.hosts.map((host, i) => `m${i + 1}=https://${host}:2380`).join(",");
    this.args = this.hosts.map((host, i) => {
      // etcd checks a connecting member's certificate against the connection's source address,
      // which on loopback is 127.0.0.1 whatever address the member listens on.
      const files = pair(
        `m${i + 1}`,
        issueNodeCertificate(clusterCa, { nodeId: `m${i + 1}`, hosts: [host, "127.0.0.1"] }),
      );
      return [
        `--name=m${i + 1}`,
        `--data-dir=${join(options.directory, `m${i + 1}.data`)}`,
        `--listen-client-urls=https://${host}:2379`,
        `--advertise-client-urls=https://${host}:2379`,
        `--listen-peer-urls=https://${host}:2380`,
        `--initial-advertise-peer-urls=https://${host}:2380`,
        `--initial-cluster=${initialCluster}`,
        "--initial-cluster-state=new",
        "--initial-cluster-token=strongroom-bench",
        `--cert-file=${files.cert}`,
        `--key-file=${files.key}`,
        "--client-cert-auth",
        `--trusted-ca-file=${clientCaFile}`,
        `--peer-cert-file=${files.cert}`,
        `--peer-key-file=${files.key}`,
        "--peer-client-cert-auth",
        `--peer-trusted-ca-file=${memberCaFile}`,
        "--logger=zap",
        "--log-level=warn",
      ];
    });
  }

  endpoints(): string[] {
    return this.hosts.map((host) => `${host}:2379`);
  }

  /**
   * The endpoint of the member that leads now, from each member's `/metrics`
   * (`etcd_server_is_leader 1`), over the same mutual TLS; null if none says so.
   */
  async leaderEndpoint(): Promise<string | null> {
    const tls = {
      ca: readFileSync(this.tls.caFile),
      key: readFileSync(this.tls.keyFile),
      cert: readFileSync(this.tls.certFile),
    };
    for (const endpoint of this.endpoints()) {
      const metrics = await new Promise<string>((resolve) => {
        const asked = request(`https://${endpoint}/metrics`, { ...tls, timeout: 2000 }, (response) => {
          let body = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => {
            body += chunk;
          });
          response.on("end", () => resolve(body));
          response.on("error", () => resolve(""));
        });
        asked.on("error", () => resolve(""));
        asked.on("timeout", () => asked.destroy());
        asked.end();
      });
      if (MetricsText.parse(metrics).value("etcd_server_is_leader") === 1) return endpoint;
    }
    return null;
  }

  pids(): number[] {
    return this.children.map((child) => child.pid ?? 0);
  }

  /** Starts the members and waits until a linearizable read answers. */
  async start(): Promise<void> {
    for (const args of this.args) {
      const child = spawn(etcdBinary, args, { stdio: ["ignore", "ignore", "pipe"] });
      let log = "";
      child.stderr?.on("data", (chunk: Buffer) => {
        log = (log + chunk.toString()).slice(-4000);
      });
      child.on("exit", (code, signal) => {
        if (code !== 0 && signal === null) process.stderr.write(`etcd exited with ${code}:\n${log}\n`);
      });
      this.children.push(child);
    }
    const client = new KVClient(
      this.endpoints()[0] ?? "",
      credentials.createSsl(
        readFileSync(this.tls.caFile),
        readFileSync(this.tls.keyFile),
        readFileSync(this.tls.certFile),
      ),
    );
    const deadline = Date.now() + 30_000;
    try {
      for (;;) {
        const ok = await new Promise<boolean>((resolve) =>
          client.range(
            {
              key: Buffer.from("health"),
              rangeEnd: Buffer.alloc(0),
              limit: 1,
              revision: 0,
              serializable: false,
            },
            new Metadata(),
            { deadline: Date.now() + 1000 },
            (error) => resolve(error === null),
          ),
        );
        if (ok) return;
        if (Date.now() > deadline) throw new Error("etcd did not become ready in 30 s");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      client.close();
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once("exit", () => resolve());
            child.kill("SIGTERM");
            setTimeout(() => child.kill("SIGKILL"), 10_000).unref();
          }),
      ),
    );
  }
}
