// What a node's state machine understands beyond the first version's commands, a bit per feature,
// sent with every batch of Raft messages (MessageBatch.features). A leader uses a feature in the
// entries it proposes only once every other member has said it understands it: during a rolling
// upgrade an older member would apply such an entry differently (it ignores what it does not
// know), and the replicas' states would part.

export const peerFeatures = {
  /** Secrets writes' request ids: a repeated id applies once (storage/state/applied-requests.ts). */
  requestIds: 1,
  /** The "cluster" system area's record of the features every member understands (cluster-features.ts). */
  featureRecord: 2,
  /** `sys.putAll`: system records written together, only while named ones are absent (init, a CA). */
  systemPutAll: 4,
  /** The "token-role" system area: an older member fails on a record of an area it does not know. */
  tokenRoles: 8,
  /**
   * Tokens bound to client identities: an older member would ignore the binding and take the
   * token from any certificate.
   */
  tokenBinding: 16,
  /**
   * A voter withholds its vote for an election timeout after it heard from a leader, also after a
   * restart (RaftCore.setReadLease): a leader may serve reads from a lease only once every voter
   * does, as an older one would elect another leader while the lease holds.
   */
  readLeaseVotes: 32,
} as const;

/** Every feature this node's state machine understands. */
export const localFeatures =
  peerFeatures.requestIds |
  peerFeatures.featureRecord |
  peerFeatures.systemPutAll |
  peerFeatures.tokenRoles |
  peerFeatures.tokenBinding |
  peerFeatures.readLeaseVotes;

/** Whether every member but `self` has said it understands `feature` (unknown: it has not). */
export function everyMemberHas(
  feature: number,
  members: Iterable<string>,
  self: string,
  featuresOf: (member: string) => number | undefined,
): boolean {
  for (const member of members) {
    if (member !== self && ((featuresOf(member) ?? 0) & feature) === 0) return false;
  }
  return true;
}

/**
 * Whether every member understands `feature`, as a function for each write to ask. A yes is kept
 * for `recheckMs` (reading the membership copies it; a member added meanwhile is counted after
 * that); a no is looked at again on the next call, so the feature is used as soon as the last
 * member has said it understands it.
 */
export function memberFeatureGate(
  feature: number,
  self: string,
  members: () => Iterable<string>,
  featuresOf: (member: string) => number | undefined,
  recheckMs = 1000,
): () => boolean {
  let yesUntil = Number.NEGATIVE_INFINITY;
  return () => {
    const now = performance.now();
    if (now < yesUntil) return true;
    if (!everyMemberHas(feature, members(), self, featuresOf)) return false;
    yesUntil = now + recheckMs;
    return true;
  };
}
