// The standard services on the client port, on a real grpc-js server over loopback: health, and
// reflection in both versions grpcurl and other tools speak, describing every strongroom service
// and built only when first asked (a node's start does not pay for it). Plain-text HTTP/2 here:
// what is checked is the services themselves; test/server/cluster.test.ts reaches them through a
// node's mutual-TLS client port.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  type ClientDuplexStream,
  credentials,
  loadPackageDefinition,
  Server,
  ServerCredentials,
  type ServiceClientConstructor,
  status,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { afterAll, beforeAll, expect, it } from "vitest";
import { StandardServices } from "../../server/grpc-standard-services.js";

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

type ReflectionClient = {
  ServerReflectionInfo(): ClientDuplexStream<Record<string, string>, ReflectionResponse>;
  close(): void;
};

const standard = new StandardServices();
const server = new Server();
let address = "";

beforeAll(async () => {
  standard.addTo(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) =>
      error === null ? resolve(bound) : reject(error),
    ),
  );
  address = `127.0.0.1:${port}`;
});

afterAll(() => server.forceShutdown());

function reflectionClient(version: "v1" | "v1alpha", target = address): ReflectionClient {
  const definition = loadPackageDefinition(
    loadSync(`grpc/reflection/${version}/reflection.proto`, {
      includeDirs: [new URL("../../node_modules/@grpc/reflection/build/proto", import.meta.url).pathname],
    }),
  ) as unknown as { grpc: { reflection: Record<string, { ServerReflection: ServiceClientConstructor }> } };
  const Client = definition.grpc.reflection[version]?.ServerReflection;
  if (Client === undefined) throw new Error(`no ServerReflection in reflection ${version}`);
  return new Client(target, credentials.createInsecure()) as unknown as ReflectionClient;
}

/** One request on a fresh reflection stream, and its one answer. */
async function ask(
  version: "v1" | "v1alpha",
  request: Record<string, string>,
  target = address,
): Promise<ReflectionResponse> {
  const client = reflectionClient(version, target);
  try {
    return await new Promise<ReflectionResponse>((resolve, reject) => {
      const stream = client.ServerReflectionInfo();
      stream.on("data", (response: ReflectionResponse) => {
        resolve(response);
        stream.end();
      });
      stream.on("error", reject);
      stream.write(request);
    });
  } finally {
    client.close();
  }
}

const strongroomServices = [
  "strongroom.v1.Access",
  "strongroom.v1.Cluster",
  "strongroom.v1.Leases",
  "strongroom.v1.Pki",
  "strongroom.v1.Secrets",
  "strongroom.v1.Sys",
];

it("builds reflection on its first call, not when the server starts", async () => {
  expect(standard.reflectionBuilt()).toBe(false);
  const listed = await ask("v1", { listServices: "" });
  expect(standard.reflectionBuilt()).toBe(true);
  expect(listed.listServicesResponse?.service.map((service) => service.name).sort()).toEqual(
    strongroomServices,
  );
});

it("describes a strongroom service's file in v1alpha as in v1, and names a symbol it does not know", async () => {
  for (const version of ["v1", "v1alpha"] as const) {
    const found = await ask(version, { fileContainingSymbol: "strongroom.v1.Pki" });
    const files = (found.fileDescriptorResponse?.fileDescriptorProto ?? []).map((bytes) =>
      fromBinary(FileDescriptorProtoSchema, bytes),
    );
    // @grpc/reflection names a file after its package, one per package.
    const described = files.find((file) => file.package === "strongroom.v1");
    const pki = described?.service.find((service) => service.name === "Pki");
    expect(pki?.method.map((method) => method.name)).toContain("CreateCa");

    const missing = await ask(version, { fileContainingSymbol: "strongroom.v1.Nothing" });
    expect(missing.errorResponse).toMatchObject({
      errorCode: 5,
      errorMessage: "Symbol not found: strongroom.v1.Nothing",
    });
  }
});

it("answers reflection INTERNAL, naming the folder, in an installation without proto/; health still serves", async () => {
  const nowhere = mkdtempSync(join(tmpdir(), "strongroom-no-proto-"));
  const bare = new StandardServices(nowhere);
  const bareServer = new Server();
  bare.addTo(bareServer);
  bare.setServing(true);
  const port = await new Promise<number>((resolve, reject) =>
    bareServer.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) =>
      error === null ? resolve(bound) : reject(error),
    ),
  );
  try {
    const refused = await ask("v1", { listServices: "" }, `127.0.0.1:${port}`).then(
      () => null,
      (error: { code: number; details: string }) => error,
    );
    expect(refused?.code).toBe(status.INTERNAL);
    expect(refused?.details).toContain("the proto/ folder of strongroom is missing from the installation");
    expect(bare.reflectionBuilt()).toBe(false);
    const health = healthClient(`127.0.0.1:${port}`);
    try {
      const answer = await new Promise<{ status: string }>((resolve, reject) =>
        health.Check({ service: "" }, (error, response) =>
          error === null ? resolve(response) : reject(error),
        ),
      );
      expect(answer.status).toBe("SERVING");
    } finally {
      health.close();
    }
  } finally {
    bareServer.forceShutdown();
    rmSync(nowhere, { recursive: true, force: true });
  }
});

type HealthClient = {
  Check(
    request: { service: string },
    callback: (error: Error | null, response: { status: string }) => void,
  ): void;
  close(): void;
};

function healthClient(target: string): HealthClient {
  const definition = loadPackageDefinition(
    loadSync("health/v1/health.proto", {
      enums: String,
      includeDirs: [new URL("../../node_modules/grpc-health-check/proto", import.meta.url).pathname],
    }),
  ) as unknown as { grpc: { health: { v1: { Health: ServiceClientConstructor } } } };
  return new definition.grpc.health.v1.Health(
    target,
    credentials.createInsecure(),
  ) as unknown as HealthClient;
}
