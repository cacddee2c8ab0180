// The standard gRPC services on the client port: health (grpc.health.v1, for load balancers and
// grpc_health_probe) and server reflection (for grpcurl and similar tools), built from the same
// .proto files as the generated code. Health says SERVING for the whole server and for
// strongroom.v1.Secrets only while this node is initialized and unsealed.

import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Server } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";

const secretsService = "strongroom.v1.Secrets";

export class StandardServices {
  private readonly health = new HealthImplementation({ "": "NOT_SERVING", [secretsService]: "NOT_SERVING" });

  addTo(server: Server): void {
    this.health.addToServer(server);
    const protoRoot = findProtoRoot();
    const definition = loadSync(
      ["strongroom/v1/secrets.proto", "strongroom/v1/sys.proto", "strongroom/v1/cluster.proto"],
      { includeDirs: [protoRoot] },
    );
    new ReflectionService(definition).addToServer(server);
  }

  /** Serving means: initialized and unsealed (a sealed node answers, but serves no secret). */
  setServing(serving: boolean): void {
    const status = serving ? "SERVING" : "NOT_SERVING";
    this.health.setStatus("", status);
    this.health.setStatus(secretsService, status);
  }
}

/** The proto/ folder of the package, found from this file (sources under tsx, or dist/ when built). */
function findProtoRoot(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    const candidate = join(directory, "proto");
    if (existsSync(join(candidate, "strongroom", "v1", "secrets.proto"))) return candidate;
    directory = dirname(directory);
  }
  throw new Error("the proto/ folder of strongroom is missing from the installation");
}
