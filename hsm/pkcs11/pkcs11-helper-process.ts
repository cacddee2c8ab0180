// The PKCS#11 helper: a child process of a node that makes the node's calls into the vendor's
// module (TokenClient), one at a time, and answers each over the IPC channel. A call that hangs
// hangs here, where the node can kill it, and a module that crashes takes only this process down.
// It exits when the node does (the channel closes).

import { SealError } from "../errors.js";
import type { HelperAnswer, HelperCall, HelperRequest } from "./pkcs11-helper-protocol.js";
import { TokenClient } from "./token-client.js";

const clients = new Map<number, TokenClient>();

process.on("message", (request: HelperRequest) => {
  const answer = answerRequest(request);
  process.send?.(answer, () => {
    // Sent (serialized into the channel): the root key in an answer has no other use here.
    if (answer.ok && answer.value !== null) answer.value.fill(0);
  });
});
process.on("disconnect", () => process.exit(0));

function answerRequest(request: HelperRequest): HelperAnswer {
  adoptEnvironment(request.environment);
  try {
    return { id: request.id, ok: true, value: perform(request) };
  } catch (error) {
    const failure =
      error instanceof SealError
        ? error
        : new SealError(
            "HSM_ERROR",
            `the PKCS#11 helper failed: ${error instanceof Error ? error.message : String(error)}`,
          );
    return { id: request.id, ok: false, code: failure.code, message: failure.message };
  } finally {
    if (request.call.kind === "wrapRootKey") request.call.rootKey.fill(0);
  }
}

function perform(request: HelperRequest): Uint8Array | null {
  const call: HelperCall = request.call;
  if (call.kind === "close") {
    clients.get(request.client)?.close();
    clients.delete(request.client);
    return null;
  }
  let client = clients.get(request.client);
  if (client === undefined) {
    client = new TokenClient(request.config);
    clients.set(request.client, client);
  }
  switch (call.kind) {
    case "ensureKey":
      client.ensureKey(call.keyLabel, { generate: call.generate });
      return null;
    case "wrapRootKey":
      return client.wrapRootKey(call.rootKey, call.keyLabel, call.mechanism);
    case "unwrapRootKey":
      return client.unwrapRootKey(call.blob, call.keyLabel, call.mechanism);
  }
}

/** Makes this process's environment the node's, so that the module reads what the node has. */
function adoptEnvironment(environment: Readonly<Record<string, string>>): void {
  for (const name of Object.keys(process.env)) {
    if (!(name in environment)) delete process.env[name];
  }
  for (const [name, value] of Object.entries(environment)) {
    if (process.env[name] !== value) process.env[name] = value;
  }
}
