// How the CLI reaches a cluster, like the tools operators know: STRONGROOM_ADDR (one or several
// host:port, comma-separated), STRONGROOM_CACERT, STRONGROOM_CLIENT_CERT and STRONGROOM_CLIENT_KEY,
// each overridable by a flag, and STRONGROOM_TOKEN (optional: sent as `authorization: Bearer`). A call goes to the first address that answers; a node that is down
// or unreachable is skipped (any node serves any call: followers forward writes).

import { createSecureContext } from "node:tls";
import { credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { withToken } from "../client/credentials.js";
import { AccessClient } from "../proto/gen/strongroom/v1/access.gen.js";
import { ClusterClient } from "../proto/gen/strongroom/v1/cluster.gen.js";
import { SecretsClient } from "../proto/gen/strongroom/v1/secrets.gen.js";
import { SysClient } from "../proto/gen/strongroom/v1/sys.gen.js";
import { readTlsMaterial, tlsMinVersion } from "../server/tls/tls-files.js";

export interface ConnectionOptions {
  readonly addr?: string;
  readonly cacert?: string;
  readonly clientCert?: string;
  readonly clientKey?: string;
  readonly token?: string;
}

export class UsageError extends Error {
  override readonly name = "UsageError";
}

export interface Connection {
  /** Runs `call` against each address in turn until one answers (anything but UNAVAILABLE). */
  call<Response>(run: (clients: Clients) => Promise<Response>): Promise<Response>;
  close(): void;
}

export interface Clients {
  readonly address: string;
  readonly secrets: SecretsClient;
  readonly sys: SysClient;
  readonly cluster: ClusterClient;
  readonly access: AccessClient;
}

export function connect(options: ConnectionOptions, env: NodeJS.ProcessEnv = process.env): Connection {
  const pick = (flag: string | undefined, name: string): string => {
    const value = flag ?? env[name];
    if (value === undefined || value === "") {
      throw new UsageError(
        `${name} is not set (or pass --${name.slice("STRONGROOM_".length).toLowerCase().replaceAll("_", "-")})`,
      );
    }
    return value;
  };
  const addresses = pick(options.addr, "STRONGROOM_ADDR")
    .split(",")
    .map((address) => address.trim())
    .filter((address) => address !== "");
  const material = readTlsMaterial({
    caFile: pick(options.cacert, "STRONGROOM_CACERT"),
    certificateFile: pick(options.clientCert, "STRONGROOM_CLIENT_CERT"),
    privateKeyFile: pick(options.clientKey, "STRONGROOM_CLIENT_KEY"),
  });
  const token = options.token ?? env.STRONGROOM_TOKEN ?? "";
  const channel = withToken(
    credentials.createFromSecureContext(
      createSecureContext({
        ca: material.ca,
        cert: material.certificate,
        key: material.privateKey,
        minVersion: tlsMinVersion,
      }),
    ),
    () => (token === "" ? null : token),
  );
  const opened = addresses.map((address) => ({
    address,
    secrets: new SecretsClient(address, channel),
    sys: new SysClient(address, channel),
    cluster: new ClusterClient(address, channel),
    access: new AccessClient(address, channel),
  }));
  return {
    async call(run) {
      let lastError: unknown = null;
      for (const clients of opened) {
        try {
          return await run(clients);
        } catch (error) {
          if ((error as ServiceError).code !== status.UNAVAILABLE) throw error;
          lastError = error;
        }
      }
      throw lastError;
    },
    close() {
      for (const clients of opened) {
        clients.secrets.close();
        clients.sys.close();
        clients.cluster.close();
        clients.access.close();
      }
    },
  };
}

type Callback<Response> = (error: ServiceError | null, response: Response) => void;

/** A generated unary method as a promise with a deadline. */
export function unary<Request, Response>(
  method: (
    request: Request,
    metadata: Metadata,
    options: { deadline: number },
    callback: Callback<Response>,
  ) => unknown,
  request: Request,
  timeoutMs = 15_000,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    method(request, new Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) =>
      error === null ? resolve(response) : reject(error),
    );
  });
}

/** One line for stderr from a failed call: the message and the stable reason. */
export function describeCallError(error: unknown): string {
  const serviceError = error as ServiceError;
  if (typeof serviceError?.code !== "number") return (error as Error)?.message ?? String(error);
  const reason = serviceError.metadata?.get("strongroom-reason")[0];
  const leader = serviceError.metadata?.get("strongroom-leader")[0];
  return `${serviceError.details}${reason === undefined ? "" : ` (${String(reason)})`}${leader === undefined ? "" : ` [leader: ${String(leader)}]`}`;
}
