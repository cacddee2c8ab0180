// The CLI tries the nodes of STRONGROOM_ADDR in the order given, though the SDK's own default is a
// random order per client: an operator's `operator unseal` gives its shares to the first node that
// answers, and the shares typed in separate commands must all reach the same node. Against
// stand-in nodes (real gRPC servers over mutual TLS) that say which node they are.

import type { ServiceError, UntypedServiceImplementation } from "@grpc/grpc-js";
import { afterAll, expect, it } from "vitest";
import { sdkClient } from "../../cli/client-connection.js";
import { ClusterService, StatusResponse } from "../../proto/gen/strongroom/v1/cluster.gen.js";
import { StandInNodes } from "../client/stand-in-node.js";
import { TestPki } from "../server/pki-fixture.js";

const pki = new TestPki("cli-addr-order");
const standIns = new StandInNodes(pki);
afterAll(() => {
  standIns.stopAll();
  pki.cleanup();
});

type Callback<T> = (error: Partial<ServiceError> | null, response?: T) => void;

/** A stand-in whose Cluster.Status names it `id`. */
function standIn(id: string): Promise<string> {
  const cluster: UntypedServiceImplementation = {
    status: (_call: unknown, callback: Callback<StatusResponse>) =>
      callback(null, { ...StatusResponse.decode(new Uint8Array(0)), nodeId: id, role: "follower" }),
  };
  return standIns.start(ClusterService, cluster);
}

it("20 commands given the same STRONGROOM_ADDR all reach its first node", async () => {
  const addresses = await Promise.all(["n1", "n2", "n3"].map(standIn));
  const files = pki.client("operator");
  const env = {
    STRONGROOM_ADDR: addresses.join(","),
    STRONGROOM_CACERT: files.caFile,
    STRONGROOM_CLIENT_CERT: files.certificateFile,
    STRONGROOM_CLIENT_KEY: files.privateKeyFile,
  };
  const answeredBy: string[] = [];
  for (let i = 0; i < 20; i++) {
    const client = sdkClient({}, env);
    try {
      answeredBy.push((await client.cluster.status({})).nodeId);
    } finally {
      client.close();
    }
  }
  // In a random order per client, all 20 on n1 would have a chance of 1 in 3^20.
  expect(answeredBy).toEqual(Array(20).fill("n1"));
});
