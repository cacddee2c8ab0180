// The in-process network against the shared Transport conformance suite.
import { InProcessNetwork } from "../../raft/node/index.js";
import { transportConformance } from "./transport-conformance.js";

transportConformance("InProcessNetwork", {
  async create(nodes) {
    const network = new InProcessNetwork();
    const transports = new Map(
      Array.from({ length: nodes }, (_, i) => [`n${i + 1}`, network.connect(`n${i + 1}`)]),
    );
    return {
      transports,
      async close() {
        for (const transport of transports.values()) await transport.close();
      },
    };
  },
});
