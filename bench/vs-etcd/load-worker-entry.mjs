// A worker thread's entry point: registers tsx in this thread (module hooks are per thread), then
// loads the TypeScript worker.
import { register } from "tsx/esm/api";

register();
await import("./load-worker.ts");
