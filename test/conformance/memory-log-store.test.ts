// MemoryLogStore against the shared LogStore conformance suite.
import { MemoryLogStore } from "../../raft/node/index.js";
import { logStoreConformance } from "./log-store-conformance.js";

const stores = new Map<string, MemoryLogStore>();
let locations = 0;

logStoreConformance("MemoryLogStore", {
  async newLocation() {
    const location = `memory-${++locations}`;
    stores.set(location, new MemoryLogStore());
    return location;
  },
  async open(location) {
    const store = stores.get(location);
    if (store === undefined) throw new Error(`no store at ${location}`);
    store.reopen();
    return store;
  },
});
