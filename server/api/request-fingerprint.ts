// A keyed digest of a write request, kept with its request id (storage/state/applied-requests.ts)
// so that an id sent again with a different request is told apart from a retry. It travels in the
// Raft log and stays in the state, so it is an HMAC under a key derived from the root key: a
// digest of a low-entropy secret value could otherwise be matched against guesses by whoever
// reads a disk or a backup.

import { createHmac } from "node:crypto";
import { Packr } from "msgpackr";
import { packTransient } from "../../storage/msgpack-owned.js";
import type { CommandRequest } from "../../storage/state/index.js";
import { validateRequestId } from "../../storage/state/index.js";
import { NodeError } from "../errors.js";
import { RootDerivedKey } from "../root-derived-key.js";

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

export function deriveRequestKey(rootKey: Uint8Array): Uint8Array {
  return new Uint8Array(
    createHmac("sha256", rootKey).update("strongroom request fingerprint key v1").digest(),
  );
}

export class RequestFingerprints {
  private readonly key = new RootDerivedKey(deriveRequestKey);

  constructor(
    /** The root key while the node is unsealed, else null. */
    private readonly rootKey: () => Uint8Array | null,
    /**
     * Whether every member understands request ids (server/peer/peer-features.ts). Until then a
     * write's id is checked and left out of its command: an older member would ignore it and
     * apply a retry that the others answer from their records.
     */
    private readonly everyMemberUnderstands: () => boolean,
  ) {}

  /**
   * The request part of a write's command: its id, checked, and the digest of `method` and every
   * field but the id; `{}` for a write without an id (an empty one is refused), or while a member
   * does not understand ids. The request is as the node decoded it, so a retry of the same message
   * has the same digest on any node.
   */
  of(method: string, request: { readonly requestId?: string | undefined }): { request?: CommandRequest } {
    if (request.requestId === undefined) return {};
    validateRequestId(request.requestId);
    if (!this.everyMemberUnderstands()) return {};
    const rootKey = this.rootKey();
    if (rootKey === null) throw new NodeError("SEALED", "this node is sealed: unseal it to serve secrets");
    const { requestId, ...asked } = request;
    const fingerprint = createHmac("sha256", this.key.of(rootKey))
      .update(packTransient(packr, [method, asked]))
      .digest();
    return { request: { id: requestId, fingerprint: new Uint8Array(fingerprint) } };
  }

  /** Zeroes the derived key (the node sealed). */
  forget(): void {
    this.key.forget();
  }
}
