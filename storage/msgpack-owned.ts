// MessagePack bytes that own their memory. msgpackr encodes everything, for every Packr in the
// process, into one shared 8 KiB buffer, one value after another, and answers with a view of it;
// once less than 2 KiB is left it allocates a fresh 8 KiB. A view kept (a Raft entry's command, a
// record waiting for LevelDB) kept the whole 8 KiB with it, and in a loop of applies a fresh buffer
// came every ten applies at 25-56 µs each (an allocation of that size has glibc's malloc gather
// every small free chunk first: docs/performance.md, fifty-fifth session).
//
// Here a value is encoded at the start of the buffer's free space, copied out, and the space
// given back (msgpackr's RESET_BUFFER_MODE): the buffer is never used up, and each answer holds
// only its own bytes, however long it is kept (a Raft entry's command, until every follower has
// it). A value used at once and dropped (hashed, or copied by a LevelDB write) is read in place
// (packTransient).

import { type Packr, RESET_BUFFER_MODE } from "msgpackr";

/** `value` encoded by `packr`, in a buffer of its own. */
export function packOwned(packr: Packr, value: unknown): Uint8Array {
  return Uint8Array.prototype.slice.call(packr.pack(value, RESET_BUFFER_MODE));
}

/**
 * `value` encoded by `packr`, as a view that stays valid only until the next encoding anywhere in
 * the process: for bytes used at once (hashed, say) and never kept.
 */
export function packTransient(packr: Packr, value: unknown): Uint8Array {
  return packr.pack(value, RESET_BUFFER_MODE);
}
