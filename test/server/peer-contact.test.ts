// PeerContact: a node is cut off when it heard from other members before and from none within the
// bound - then a call waiting for a leader gives up at once (NO_LEADER, "ask another node") instead
// of waiting out its leader wait on a node no leader can reach. A node that has heard from nobody
// yet (starting, or the first of a new cluster) is not cut off: it waits for a leader.

import { expect, it } from "vitest";
import { PeerContact } from "../../server/peer-contact.js";

it("is cut off only after hearing from members before and from none within the bound", () => {
  const contact = new PeerContact(400);
  const now = Date.now();
  expect(contact.cutOff(now + 10_000)).toBe(false);
  contact.heardFrom("n2");
  contact.heardFrom("n3");
  expect(contact.cutOff(now + 100)).toBe(false);
  expect(contact.cutOff(Date.now() + 401)).toBe(true);
  // One member heard from lately is enough to expect a leader.
  contact.heardFrom("n3");
  expect(contact.cutOff(Date.now() + 200)).toBe(false);
  expect(contact.lastHeardFrom("n3")).toBeGreaterThanOrEqual(now);
  expect(contact.lastHeardFrom("n4")).toBeUndefined();
});
