// `npm run bench:grpc-floor -- [--clients 1,64] [--duration S]` (`--help`): what one gRPC call
// costs on this machine before strongroom does anything with it. A server process with grpc-js
// over mutual TLS answers Secrets.Put and Secrets.Get at once (no authorization, audit, Raft or
// storage), and bench:vs-etcd's load generator (the same client, workers and token) calls it. The
// table gives the server's CPU per call: the floor under every strongroom call, to hold against
// strongroom's and etcd's CPU per operation in bench:vs-etcd's tables (docs/performance.md).
//
// The server runs under tsx (its loader thread idles), one process, on loopback.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  type handleUnaryCall,
  Server,
  ServerCredentials,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import {
  type GetRequest,
  type GetResponse,
  type PutRequest,
  type PutResponse,
  SecretsService,
} from "../proto/gen/strongroom/v1/secrets.gen.js";
import {
  createCertificateAuthority,
  issueClientCertificate,
  issueNodeCertificate,
} from "../server/tls/dev-pki.js";
import { printTable } from "./table.js";
import { LoadGenerator } from "./vs-etcd/load.js";

const usage = `usage: npm run bench:grpc-floor -- [options]
  --clients LIST    concurrent callers, comma-separated, each 1..1024 (1,64)
  --duration S      measured seconds per cell, 1..120 (8), after 2 s of warm-up
`;

function refuse(problem: string): never {
  process.stderr.write(`bench:grpc-floor: ${problem}\n${usage}`);
  process.exit(2);
}

/** The child: serves Secrets.Put and Secrets.Get from DIR's certificates; prints the port bound. */
function serve(directory: string): void {
  const value = Buffer.alloc(256);
  const put: handleUnaryCall<PutRequest, PutResponse> = (_call, callback) =>
    callback(null, { version: 1, revision: 1 });
  const get: handleUnaryCall<GetRequest, GetResponse> = (_call, callback) =>
    callback(null, { value, version: 1, revision: 1, createdMs: 0 });
  const implementation: UntypedServiceImplementation = { put, get };
  const server = new Server();
  server.addService(SecretsService, implementation);
  const file = (name: string) => readFileSync(join(directory, name));
  const credentials = ServerCredentials.createSsl(
    file("ca.pem"),
    [{ cert_chain: file("server.pem"), private_key: file("server-key.pem") }],
    true,
  );
  server.bindAsync("127.0.0.1:0", credentials, (error, port) => {
    if (error !== null) throw error;
    process.stdout.write(`${port}\n`);
  });
}

/** Starts the child server and resolves with it and its address once it listens. */
function startServer(directory: string): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", fileURLToPath(import.meta.url), "--serve", directory],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`the floor server exited with ${code}`)));
    child.stdout?.once("data", (chunk: Buffer) =>
      resolve({ child, address: `127.0.0.1:${chunk.toString().trim()}` }),
    );
  });
}

async function measure(clientCounts: readonly number[], durationMs: number): Promise<void> {
  const directory = mkdtempSync(join(tmpdir(), "strongroom-bench-grpc-floor-"));
  const write = (name: string, text: string) => writeFileSync(join(directory, name), text, { mode: 0o600 });
  const authority = createCertificateAuthority("bench grpc-floor CA");
  const server = issueNodeCertificate(authority, { nodeId: "floor", hosts: ["127.0.0.1"] });
  const client = issueClientCertificate(authority, { name: "bench" });
  write("ca.pem", authority.certificatePem);
  write("server.pem", server.certificatePem);
  write("server-key.pem", server.privateKeyPem);
  write("client.pem", client.certificatePem);
  write("client-key.pem", client.privateKeyPem);
  const { child, address } = await startServer(directory);
  const pid = child.pid;
  let generator: LoadGenerator | null = null;
  try {
    if (pid === undefined) throw new Error("the floor server has no pid");
    const rows: string[][] = [];
    // One generator for every cell: its workers connected once, their code warm after the first.
    generator = new LoadGenerator(
      {
        system: "strongroom",
        endpoints: [address],
        writeEndpoint: null,
        requestIds: false,
        viaSdk: false,
        sdkReadRouting: "sticky",
        tls: {
          caFile: join(directory, "ca.pem"),
          certFile: join(directory, "client.pem"),
          keyFile: join(directory, "client-key.pem"),
        },
        token: "floor-token-".padEnd(40, "x"),
      },
      2,
    );
    for (const [mix, readFraction] of [
      ["Put", 0],
      ["Get", 1],
    ] as const) {
      for (const concurrency of clientCounts) {
        const result = await generator.run({
          serverPids: [pid],
          metricsUrls: null,
          mode: "closed",
          concurrency,
          ratePerSecond: 0,
          readFraction,
          valueBytes: 256,
          keys: 1000,
          warmupMs: 2000,
          durationMs,
          seed: 1,
        });
        if (result.errors > 0)
          throw new Error(`${result.errors} calls failed, e.g. ${result.errorSamples[0] ?? "?"}`);
        rows.push([
          `${mix}, ${concurrency} clients`,
          result.opsPerSecond.toFixed(0),
          result.p50Ms.toFixed(2),
          result.p99Ms.toFixed(2),
          result.serverCpuPer1000.toFixed(3),
          String(result.rssMiB[0] ?? 0),
          result.generatorCores.toFixed(2),
        ]);
      }
    }
    printTable(
      ["call", "calls/s", "p50 ms", "p99 ms", "server cpu s/1k", "server RSS MiB", "gen cores"],
      rows,
    );
  } finally {
    await generator?.close();
    child.kill("SIGKILL");
    rmSync(directory, { recursive: true, force: true });
  }
}

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        help: { type: "boolean", default: false },
        serve: { type: "string" },
        clients: { type: "string", default: "1,64" },
        duration: { type: "string", default: "8" },
      },
    });
  } catch (error) {
    refuse(error instanceof Error ? error.message : String(error));
  }
})();
if (values.help) {
  process.stdout.write(usage);
  process.exit(0);
}
if (values.serve !== undefined) {
  serve(values.serve);
} else {
  const clientCounts = values.clients.split(",").map((item) => {
    const count = Number(item.trim());
    if (!/^\d+$/.test(item.trim()) || count < 1 || count > 1024)
      refuse(`--clients: "${item}" is not a whole number from 1 to 1024`);
    return count;
  });
  const seconds = Number(values.duration);
  if (!/^\d+$/.test(values.duration) || seconds < 1 || seconds > 120)
    refuse(`--duration: "${values.duration}" is not a whole number from 1 to 120`);
  await measure(clientCounts, seconds * 1000);
}
