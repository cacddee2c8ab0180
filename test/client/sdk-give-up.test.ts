// What an SDK call says when its deadline ends it, against stand-in nodes (real gRPC servers over
// mutual TLS): one that refuses with a reason (NO_LEADER, as a node cut off from the others does)
// and one that takes the call and never answers (a node too busy to answer in time). A read has no
// outcome to be unknown: the reason a node gave is what it fails with, not the timeout of its last
// attempt. A write that may have reached the silent node fails saying its outcome is unknown.

import { type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, expect, it } from "vitest";
import { createClient, StrongroomError } from "../../client/index.js";
import { SecretsService } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { toServiceError } from "../../server/errors.js";
import { cutOffError } from "../../server/peer-contact.js";
import { TestPki } from "../server/pki-fixture.js";
import { StandInNodes } from "./stand-in-node.js";

const pki = new TestPki("sdk-give-up");
const standIns = new StandInNodes(pki);
afterAll(() => {
  standIns.stopAll();
  pki.cleanup();
});

type Answer = (callback: (error: Partial<ServiceError> | null) => void) => void;

/** A stand-in node on 127.0.0.1 whose Secrets.Get and Secrets.Put answer as `answer` does. */
function standIn(answer: Answer): Promise<string> {
  const handler = (_call: unknown, callback: (error: Partial<ServiceError> | null) => void) =>
    answer(callback);
  return standIns.start(SecretsService, { get: handler, put: handler });
}

/** What a node cut off from a quorum answers: its own refusal, sent as a node sends it. */
const noLeader: Answer = (callback) => callback(toServiceError(cutOffError()));

/** Takes the call and never answers. */
const silent: Answer = () => {};

function sdk(endpoints: string[]) {
  const files = pki.client("caller");
  return createClient({
    endpoints,
    // The tests stage which stand-in is tried first.
    endpointOrder: "given",
    tls: { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile },
  });
}

it("a read whose deadline ends on a silent node fails with the reason another node gave", async () => {
  const client = sdk([await standIn(noLeader), await standIn(silent)]);
  try {
    const started = performance.now();
    const failure = await client.secrets
      .get({ path: "app/db" }, { deadlineMs: 800 })
      .catch((error: unknown) => error);
    const tookMs = performance.now() - started;
    expect(failure).toBeInstanceOf(StrongroomError);
    const { code, reason, message } = failure as StrongroomError;
    expect({ code, reason, message }).toEqual({
      code: status.UNAVAILABLE,
      reason: "NO_LEADER",
      message: expect.stringContaining("too few members to make a quorum"),
    });
    // It waited out its deadline on the silent node first: the refusal was not the last word.
    expect(tookMs).toBeGreaterThanOrEqual(750);
  } finally {
    client.close();
  }
});

it("a write whose deadline ends on a silent node fails saying its outcome is unknown", async () => {
  const client = sdk([await standIn(noLeader), await standIn(silent)]);
  try {
    const failure = await client.secrets
      .put({ path: "app/db", value: new TextEncoder().encode("v") }, { deadlineMs: 800 })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(StrongroomError);
    const { code, reason, outcomeUnknown, requestId } = failure as StrongroomError;
    // The silent node may have applied it: the caller must know, and has the id to send it again.
    expect({ code, reason, outcomeUnknown }).toEqual({
      code: status.DEADLINE_EXCEEDED,
      reason: "",
      outcomeUnknown: true,
    });
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
  } finally {
    client.close();
  }
});
