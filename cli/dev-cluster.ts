// `strongroom dev` (what `npm start` runs): a real three-node cluster on this machine, for trying
// strongroom out. Each node is a full StrongroomNode (LevelDB, mutual-TLS gRPC, Raft) on
// 127.0.0.1 with its own ports, in this process. On the first run it makes a development PKI and
// initializes the cluster - sealed by a SoftHSM token of its own when SoftHSM2 is installed (the
// nodes then unseal themselves), else with Shamir shares it hands to every node on each start - and
// keeps the shares and the root token in the dev directory. That is for development only: a real
// cluster's shares are never written next to its data. It prints how to talk to the cluster and
// writes an env file.

import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { writeFileAtomically } from "../agent/render.js";
import { type NodeConfig, parseNodeConfig } from "../server/config.js";
import { sendGrpcLogsTo } from "../server/grpc-logs.js";
import { ListenError } from "../server/listen-error.js";
import { createLogger } from "../server/logger.js";
import { StrongroomNode } from "../server/node.js";
import {
  createCertificateAuthority,
  issueClientCertificate,
  issueNodeCertificate,
  type PemPair,
} from "../server/tls/dev-pki.js";
import { sdkClient } from "./client-connection.js";
import { prepareDevHsm } from "./dev-hsm.js";

export interface DevClusterOptions {
  /** Where data, certificates, shares and the env file go. */
  readonly directory: string;
  readonly host: string;
  /** Node i listens on basePort + 10·(i−1) (client), +1 (peer), +2 (HTTP). */
  readonly basePort: number;
  readonly nodes: number;
  /** "auto": the dev SoftHSM token when SoftHSM2 is installed, else Shamir shares. */
  readonly seal: "auto" | "shamir" | "hsm";
  readonly print: (line: string) => void;
}

export interface DevCluster {
  readonly env: Readonly<Record<string, string>>;
  stop(): Promise<void>;
}

const shareCount = 3;
const shareThreshold = 2;

export async function startDevCluster(options: DevClusterOptions): Promise<DevCluster> {
  const directory = resolve(options.directory);
  const pki = join(directory, "pki");
  mkdirSync(pki, { recursive: true });
  const ids = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`);
  const port = (i: number, offset: number) => options.basePort + 10 * i + offset;
  const files = writeDevPki(pki, ids, options.host);
  const hsm = options.seal === "shamir" ? null : prepareDevHsm(directory);
  if (options.seal === "hsm" && hsm === null)
    throw new Error(
      "SoftHSM2 is not installed: run sudo apt-get install -y softhsm2 libsofthsm2 (or use --seal shamir)",
    );
  const members = ids.map((id, i) => ({
    id,
    peerAddress: `${options.host}:${port(i, 1)}`,
    clientAddress: `${options.host}:${port(i, 0)}`,
  }));
  const configs: NodeConfig[] = ids.map((id, i) =>
    parseNodeConfig({
      nodeId: id,
      dataDir: join(directory, "data", id),
      listen: {
        client: `${options.host}:${port(i, 0)}`,
        peer: `${options.host}:${port(i, 1)}`,
        http: `${options.host}:${port(i, 2)}`,
      },
      tls: {
        peer: { caFile: files.clusterCa, certificateFile: files.node(id), privateKeyFile: files.nodeKey(id) },
        client: {
          caFile: files.clientCa,
          certificateFile: files.node(id),
          privateKeyFile: files.nodeKey(id),
        },
      },
      members,
      log: { level: "warn" },
      ...(hsm === null ? {} : { seal: { pkcs11: hsm } }),
    }),
  );
  const nodes: StrongroomNode[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop(1000)));
  };
  // Logs go to stderr, so the narration on stdout stays readable.
  sendGrpcLogsTo(createLogger("dev", "warn", process.stderr));
  try {
    for (const config of configs) {
      nodes.push(
        await StrongroomNode.start(config, { logger: createLogger(config.nodeId, "warn", process.stderr) }),
      );
    }
    options.print(
      `started ${ids.length} nodes on ${options.host}: client ports ${ids.map((_, i) => port(i, 0)).join(", ")}`,
    );
    const env: Record<string, string> = {
      STRONGROOM_ADDR: members.map((member) => member.clientAddress).join(","),
      STRONGROOM_CACERT: files.clusterCa,
      STRONGROOM_CLIENT_CERT: files.client,
      STRONGROOM_CLIENT_KEY: files.clientKey,
    };
    env.STRONGROOM_TOKEN = await initializeAndUnseal(directory, env, hsm !== null, options.print);
    const envFile = join(directory, "env");
    // It holds the root token: readable by its owner only, even where an older file was not
    // (writeFileSync's mode applies only to a file it creates).
    writeFileAtomically(
      envFile,
      Buffer.from(
        `${Object.entries(env)
          .map(([name, value]) => `export ${name}=${value}`)
          .join("\n")}\n`,
      ),
      0o600,
    );
    options.print("ready: every node is initialized and unsealed");
    options.print("");
    options.print("talk to it (in another terminal):");
    options.print(`  source ${envFile}    # STRONGROOM_TOKEN in it is the root token (dev only)`);
    options.print("  echo -n 's3cr3t' | npx tsx cli/main.ts kv put app/db");
    options.print("  npx tsx cli/main.ts kv get app/db --reveal");
    options.print("  npx tsx cli/main.ts operator status");
    options.print("  npx tsx cli/main.ts policy list");
    // A dev directory made before the CA keys were kept cannot make more certificates.
    if (existsSync(join(pki, "client-ca-key.pem")))
      options.print(`  npx tsx cli/main.ts pki client alice --dir ${pki}    # another identity`);
    options.print(`  curl http://${options.host}:${port(0, 2)}/v1/sys/health`);
    options.print(
      "stop it with Ctrl-C; the data stays for the next start (npm start -- --reset starts afresh)",
    );
    options.print("strongroom dev cluster ready");
    return { env, stop };
  } catch (error) {
    await stop();
    if (error instanceof ListenError && error.code === "EADDRINUSE")
      throw new ListenError(
        `${error.message}; is a dev cluster running already? Stop it, or give --base-port`,
        error.code,
      );
    throw error;
  }
}

/** What the dev directory keeps of the cluster's init (development only). */
interface KeptInit {
  readonly seal: "shamir" | "pkcs11";
  /** Unseal shares (Shamir) or recovery shares (HSM). */
  readonly shares: string[];
  readonly rootToken: string;
}

/**
 * Inits the cluster on its first start - with the dev SoftHSM token when there is one, else with
 * Shamir shares - keeping the shares and the root token in the dev directory; then sees every node
 * unsealed (the HSM unseals them by itself; Shamir shares are handed to each). Returns the root token.
 */
async function initializeAndUnseal(
  directory: string,
  env: Record<string, string>,
  hsm: boolean,
  print: (line: string) => void,
): Promise<string> {
  const sharesFile = join(directory, "dev-unseal-shares.json");
  const client = sdkClient({}, env);
  try {
    const status = await client.sys.sealStatus({}, { deadlineMs: 30_000 });
    let kept: KeptInit;
    if (!status.initialized) {
      const shareOptions = { count: shareCount, threshold: shareThreshold, operatorKeys: [] };
      const init = await client.sys.init(
        hsm
          ? { shamir: undefined, hsm: true, generateHsmKey: true, recovery: shareOptions }
          : { shamir: shareOptions, hsm: false, generateHsmKey: false, recovery: undefined },
        { deadlineMs: 30_000 },
      );
      kept = {
        seal: hsm ? "pkcs11" : "shamir",
        shares: hsm ? init.recoveryShares : init.unsealShares,
        rootToken: init.rootToken,
      };
      writeFileAtomically(
        sharesFile,
        Buffer.from(
          JSON.stringify({
            warning: "development only: never keep shares or the root token with the data",
            ...kept,
          }),
        ),
        0o600,
      );
      print(
        hsm
          ? `initialized with the SoftHSM seal (a token under ${join(directory, "softhsm")}), ${shareCount} recovery shares (threshold ${shareThreshold}) and a root token, kept in ${sharesFile} (dev only)`
          : `initialized with ${shareCount} Shamir shares (threshold ${shareThreshold}) and a root token, kept in ${sharesFile} (dev only)`,
      );
    } else {
      const read = JSON.parse(readFileSync(sharesFile, "utf8")) as Partial<KeptInit>;
      if (read.rootToken === undefined || read.shares === undefined) {
        throw new Error(
          `${sharesFile} has no root token (it was written by an older version): run npm start -- --reset`,
        );
      }
      kept = { seal: read.seal ?? "shamir", shares: read.shares, rootToken: read.rootToken };
    }
    const addresses = env.STRONGROOM_ADDR?.split(",") ?? [];
    for (const address of addresses) {
      const node = sdkClient({ addr: address }, env);
      try {
        if (kept.seal === "pkcs11") {
          // The HSM unseals each node by itself (auto-unseal); wait for it.
          const deadline = Date.now() + 30_000;
          while ((await node.sys.sealStatus({}, { deadlineMs: 5000 })).sealed) {
            if (Date.now() > deadline) throw new Error(`${address} did not unseal with the SoftHSM token`);
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        } else {
          for (const share of kept.shares.slice(0, shareThreshold)) {
            await node.sys.unseal({ share, nonce: "", reset: false }, { deadlineMs: 30_000 });
          }
        }
      } finally {
        node.close();
      }
    }
    print(`unsealed ${addresses.length} nodes${kept.seal === "pkcs11" ? " (by the HSM)" : ""}`);
    return kept.rootToken;
  } finally {
    client.close();
  }
}

interface DevPkiFiles {
  readonly clusterCa: string;
  readonly clientCa: string;
  readonly client: string;
  readonly clientKey: string;
  node(id: string): string;
  nodeKey(id: string): string;
}

/**
 * The development PKI, made once and reused on later starts. The CA keys are kept too, as
 * `strongroom pki ca` keeps them, so that `pki client NAME --dir` and `pki node ID --dir` make more
 * certificates for it: other identities to bind policies to, a node to join.
 */
function writeDevPki(directory: string, ids: readonly string[], host: string): DevPkiFiles {
  const path = (name: string) => join(directory, name);
  const files: DevPkiFiles = {
    clusterCa: path("cluster-ca.pem"),
    clientCa: path("client-ca.pem"),
    client: path("client.pem"),
    clientKey: path("client-key.pem"),
    node: (id) => path(`${id}.pem`),
    nodeKey: (id) => path(`${id}-key.pem`),
  };
  if (existsSync(files.clusterCa) && ids.every((id) => existsSync(files.node(id)))) return files;
  const write = (pair: PemPair, certificate: string, key: string) => {
    writeFileAtomically(certificate, Buffer.from(pair.certificatePem), 0o644);
    writeFileAtomically(key, Buffer.from(pair.privateKeyPem), 0o600);
  };
  const clusterCa = createCertificateAuthority("strongroom dev cluster CA");
  const clientCa = createCertificateAuthority("strongroom dev client CA");
  write(clusterCa, files.clusterCa, path("cluster-ca-key.pem"));
  write(clientCa, files.clientCa, path("client-ca-key.pem"));
  for (const id of ids)
    write(
      issueNodeCertificate(clusterCa, { nodeId: id, hosts: [host, "localhost"] }),
      files.node(id),
      files.nodeKey(id),
    );
  write(issueClientCertificate(clientCa, { name: "dev-operator" }), files.client, files.clientKey);
  return files;
}
