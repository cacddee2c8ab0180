// The netns driver's network, on its own: what each node's namespace is set up with. Needs root,
// iproute2 and nftables, as the driver does (CI runs as root).

import { execFileSync } from "node:child_process";
import { expect, it } from "vitest";
import { NetnsNetwork } from "../../chaos/netns-network.js";

it("keeps each node's listen ports out of its namespace's ephemeral ports", async () => {
  // A node's outgoing connections take local ports on its only address; one that took a listen
  // port left a restarted node unable to listen there.
  const network = new NetnsNetwork({
    size: 2,
    tag: 243,
    clientPort: 53_000,
    peerPort: 53_001,
    httpPort: 53_002,
    proxyBasePort: 53_010,
    random: () => 0.5,
  });
  try {
    await network.create();
    for (const index of [0, 1]) {
      const reserved = execFileSync(
        "ip",
        ["netns", "exec", network.namespace(index), "cat", "/proc/sys/net/ipv4/ip_local_reserved_ports"],
        { encoding: "utf8" },
      );
      expect(reserved.trim()).toBe("53000-53002");
    }
  } finally {
    await network.destroy();
  }
});
