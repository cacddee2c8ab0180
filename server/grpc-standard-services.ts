// The standard gRPC services on the client port: health (grpc.health.v1, for load balancers and
// grpc_health_probe) and server reflection (for grpcurl and similar tools), built from the same
// .proto files as the generated code. Health says SERVING for the whole server and for
// strongroom.v1.Secrets only while this node is initialized and unsealed.
//
// Reflection is built on its first call, not at the start: parsing the .proto files and indexing
// their descriptors (v1 and v1alpha) took a node 70-90 ms at every start, on the path to
// serving after a restart, for a service only tools ask (docs/performance.md, fifty-second session).

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type handleBidiStreamingCall, type MethodDefinition, type Server, status } from "@grpc/grpc-js";
import type { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";

/** Loaded on the first reflection call (CommonJS packages: a synchronous require). */
const requireLazily = createRequire(import.meta.url);

/** The reflection methods a server answers, by path: the versions @grpc/reflection implements. */
const reflectionPaths = [
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
] as const;

/** Every service on the client port, as reflection describes it. */
const servedProtos = ["secrets", "sys", "cluster", "access", "pki", "leases"].map(
  (name) => `strongroom/v1/${name}.proto`,
);

const secretsService = "strongroom.v1.Secrets";

export class StandardServices {
  private readonly health = new HealthImplementation({ "": "NOT_SERVING", [secretsService]: "NOT_SERVING" });

  private reflection: Map<string, ReflectionMethod> | null = null;

  /**
   * `protoSearchFrom`: where the search for the package's proto/ folder starts (this module's
   * folder; a test starts it where there is none).
   */
  constructor(private readonly protoSearchFrom = dirname(fileURLToPath(import.meta.url))) {}

  addTo(server: Server): void {
    this.health.addToServer(server);
    for (const path of reflectionPaths) {
      server.register<unknown, unknown>(
        path,
        (call: Parameters<handleBidiStreamingCall<unknown, unknown>>[0]) => {
          let method: ReflectionMethod;
          try {
            method = this.reflectionMethod(path);
          } catch (error) {
            // The call ends with the reason (an installation without proto/); the node serves on.
            const details = `reflection is unavailable: ${error instanceof Error ? error.message : error}`;
            call.emit("error", Object.assign(new Error(details), { code: status.INTERNAL, details }));
            return;
          }
          method.handler(call);
        },
        (response) => this.reflectionMethod(path).definition.responseSerialize(response),
        (request) => this.reflectionMethod(path).definition.requestDeserialize(request),
        "bidi",
      );
    }
  }

  /** Serving means: initialized and unsealed (a sealed node answers, but serves no secret). */
  setServing(serving: boolean): void {
    const health = serving ? "SERVING" : "NOT_SERVING";
    this.health.setStatus("", health);
    this.health.setStatus(secretsService, health);
  }

  /** Whether reflection has been built (by a first call); for tests. */
  reflectionBuilt(): boolean {
    return this.reflection !== null;
  }

  /**
   * The reflection method at `path`, the service built on first use: @grpc/reflection hands its
   * methods to whatever has `addService`, and here that is a map, not the server.
   */
  private reflectionMethod(path: string): ReflectionMethod {
    if (this.reflection === null) {
      const { loadSync } = requireLazily("@grpc/proto-loader") as typeof import("@grpc/proto-loader");
      const { ReflectionService: Service } = requireLazily("@grpc/reflection") as {
        ReflectionService: typeof ReflectionService;
      };
      const methods = new Map<string, ReflectionMethod>();
      const definitions = loadSync(servedProtos, { includeDirs: [findProtoRoot(this.protoSearchFrom)] });
      new Service(definitions).addToServer({
        addService: (service, implementation) => {
          for (const [name, definition] of Object.entries(service)) {
            const handler = implementation[name];
            if (handler !== undefined)
              methods.set(definition.path, {
                definition: definition as MethodDefinition<unknown, unknown>,
                handler: handler as handleBidiStreamingCall<unknown, unknown>,
              });
          }
        },
      });
      this.reflection = methods;
    }
    const method = this.reflection.get(path);
    // Only if @grpc/reflection stopped implementing a version registered above.
    if (method === undefined) throw new Error(`@grpc/reflection has no method ${path}`);
    return method;
  }
}

interface ReflectionMethod {
  readonly definition: MethodDefinition<unknown, unknown>;
  readonly handler: handleBidiStreamingCall<unknown, unknown>;
}

/**
 * The proto/ folder of the package, found from `start` upwards (from this module: sources under
 * tsx, or dist/ when built).
 */
function findProtoRoot(start: string): string {
  let directory = start;
  for (let depth = 0; depth < 5; depth++) {
    const candidate = join(directory, "proto");
    if (existsSync(join(candidate, "strongroom", "v1", "secrets.proto"))) return candidate;
    directory = dirname(directory);
  }
  throw new Error("the proto/ folder of strongroom is missing from the installation");
}
