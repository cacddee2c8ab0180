// strongroom's TypeScript SDK, the package's main export (docs/sdk.md).
export type {
  CacheStats,
  CacheWatchState,
  CallOptions,
  ClientOptions,
  ReadRouting,
  UnaryMethods,
} from "./client.js";
export { clientFromEnv, createClient, StrongroomClient } from "./client.js";
export type { ClientTls, ClientTlsFiles } from "./credentials.js";
export type { EndpointOrder, EndpointStats } from "./endpoint-pool.js";
export { StrongroomError } from "./errors.js";
export type { ReadCacheStats } from "./read-cache.js";
export type { Watch, WatchHandlers } from "./watcher.js";
