// How the CLI reaches a cluster, like the tools operators know: STRONGROOM_ADDR (one or several
// host:port, comma-separated), STRONGROOM_CACERT, STRONGROOM_CLIENT_CERT and STRONGROOM_CLIENT_KEY,
// each overridable by a flag, and STRONGROOM_TOKEN (optional: sent as `authorization: Bearer`;
// never a flag, so it does not show in the process list). Calls go through the SDK (client/):
// any node serves any call, a node that is down is skipped, safe retries happen within the deadline.

import { Metadata, type ServiceError } from "@grpc/grpc-js";
import { createClient, type StrongroomClient, StrongroomError } from "../client/index.js";
import { parseDuration } from "./duration-text.js";

export interface ConnectionOptions {
  readonly addr?: string;
  readonly cacert?: string;
  readonly clientCert?: string;
  readonly clientKey?: string;
}

export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** An SDK client from the flags, falling back to the environment. */
export function sdkClient(
  options: ConnectionOptions,
  env: NodeJS.ProcessEnv = process.env,
): StrongroomClient {
  const pick = (flag: string | undefined, name: string): string => {
    const value = flag ?? env[name];
    if (value === undefined || value === "") {
      throw new UsageError(
        `${name} is not set (or pass --${name.slice("STRONGROOM_".length).toLowerCase().replaceAll("_", "-")})`,
      );
    }
    return value;
  };
  const token = env.STRONGROOM_TOKEN ?? "";
  const timeout = env.STRONGROOM_CLIENT_TIMEOUT ?? "";
  const deadlineMs = timeout === "" ? undefined : parseDuration(timeout);
  if (deadlineMs === null || deadlineMs === 0)
    throw new UsageError(
      `STRONGROOM_CLIENT_TIMEOUT is how long a call may take, retries included, such as 5s or 1m: got ${JSON.stringify(timeout)}`,
    );
  const config = {
    ...(deadlineMs === undefined ? {} : { deadlineMs }),
    endpoints: pick(options.addr, "STRONGROOM_ADDR"),
    // In the order given, as before the SDK's default became a random order per client: an
    // operator's `operator unseal` or `operator seal` acts on the first node that answers, and a
    // share typed in one command must reach the node the last one gave shares to.
    endpointOrder: "given" as const,
    tls: {
      caFile: pick(options.cacert, "STRONGROOM_CACERT"),
      certFile: pick(options.clientCert, "STRONGROOM_CLIENT_CERT"),
      keyFile: pick(options.clientKey, "STRONGROOM_CLIENT_KEY"),
    },
    token: token === "" ? null : token,
  };
  try {
    return createClient(config);
  } catch (error) {
    // createClient connects later: what it refuses now is what the flags or the environment say
    // (an address that is not host:port, a file that cannot be read or is not PEM), a usage error.
    throw new UsageError(error instanceof Error ? error.message : String(error), { cause: error });
  }
}

/** Runs `body` with a client from `options`, closing it after. */
export async function withClient<T>(
  options: ConnectionOptions,
  body: (client: StrongroomClient) => Promise<T>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<T> {
  const client = sdkClient(options, env);
  try {
    return await body(client);
  } finally {
    client.close();
  }
}

type Callback<Response> = (error: ServiceError | null, response: Response) => void;

/** A generated unary method as a promise with a deadline (for tests that use raw clients). */
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
  if (error instanceof StrongroomError) {
    const leader = error.leaderHint === null ? "" : ` (leader: ${error.leaderHint})`;
    const unknown = !error.outcomeUnknown
      ? ""
      : error.requestId === null
        ? " (the write may or may not have been applied: read before retrying)"
        : ` (the write may or may not have been applied; sent again with request id ${error.requestId} within 5 minutes, as kv put --request-id does, it applies at most once)`;
    return `${error.message}${leader}${unknown}`;
  }
  const serviceError = error as ServiceError;
  if (typeof serviceError?.code !== "number") return (error as Error)?.message ?? String(error);
  const reason = serviceError.metadata?.get("strongroom-reason")[0];
  return `${serviceError.details}${reason === undefined ? "" : ` (${String(reason)})`}`;
}
