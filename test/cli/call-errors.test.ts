// The line the CLI prints for a failed call: the message, the reason, the leader, and what to do
// about a write whose outcome is unknown (with its request id: send it again with that id;
// without: read first).

import { status } from "@grpc/grpc-js";
import { expect, it } from "vitest";
import { describeCallError } from "../../cli/client-connection.js";
import { StrongroomError } from "../../client/index.js";

it("tells how to retry a write of unknown outcome: with its request id when it has one", () => {
  const timedOut = () =>
    new StrongroomError("deadline exceeded (TIMEOUT)", status.DEADLINE_EXCEEDED, "TIMEOUT", {
      outcomeUnknown: true,
      leaderHint: "n2",
    });
  expect(describeCallError(timedOut())).toBe(
    "deadline exceeded (TIMEOUT) (leader: n2) (the write may or may not have been applied: read before retrying)",
  );
  const withId = timedOut();
  withId.requestId = "3f2b8c1e-5d2a-4f7e-9b1c-0a2d4e6f8a9b";
  expect(describeCallError(withId)).toBe(
    "deadline exceeded (TIMEOUT) (leader: n2) (the write may or may not have been applied; sent again with request id 3f2b8c1e-5d2a-4f7e-9b1c-0a2d4e6f8a9b within 5 minutes, as kv put --request-id does, it applies at most once)",
  );
  // A failure whose outcome is known needs no advice, id or not.
  const refused = new StrongroomError("no secret at app/x (NOT_FOUND)", status.NOT_FOUND, "NOT_FOUND");
  refused.requestId = "r-1";
  expect(describeCallError(refused)).toBe("no secret at app/x (NOT_FOUND)");
});
