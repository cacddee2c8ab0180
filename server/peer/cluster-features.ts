// Which features the cluster has recorded that every member understands: a record of the "cluster"
// system area, replicated like any other. A leader uses a feature in what it proposes once every
// member has said it understands it (peer-features.ts). That alone is lost with the leader: a new
// leader has heard nothing yet from a member that is down, and would keep the feature out until it
// is back. So the first leader to see every member understand a feature records it (a task of the
// leader's, every second: whether or not anything is written), and from then on every leader uses
// it. As etcd's cluster version: once a feature is recorded, a member of an older version must not
// join (docs/operations.md, Upgrades).

import type { SecretCommand, SecretStateMachine } from "../../storage/state/index.js";
import { peerFeatures } from "./peer-features.js";

const area = "cluster";
const name = "features";
/** How often a leader that does not know a feature recorded reads the record again. */
const rereadMs = 1000;

export interface ClusterFeaturesParts {
  readonly state: SecretStateMachine;
  /** Proposes a command through Raft (the leader's); resolves once applied here. */
  readonly propose: (command: SecretCommand) => Promise<unknown>;
  /** Whether every member has said it understands `feature` (memberFeatureGate). */
  readonly everyMemberHas: (feature: number) => boolean;
}

export class ClusterFeatures {
  /** The features the record names, as this node last read it (bits are only ever added). */
  private recorded = 0;
  private readAgainAt = Number.NEGATIVE_INFINITY;
  private reading: Promise<void> | null = null;

  constructor(private readonly parts: ClusterFeaturesParts) {}

  /** The features recorded, as last read (the strongroom_cluster_features metric). */
  recordedFeatures(): number {
    return this.recorded;
  }

  /**
   * Whether this node, leading, may use `feature` in the entries it proposes: recorded, or every
   * member has said it understands it (recordAgreed() then records it).
   */
  usable(feature: number): boolean {
    if ((this.recorded & feature) === feature) return true;
    this.refresh();
    return this.parts.everyMemberHas(feature);
  }

  /**
   * The leader's task: records the features of `features` that every member understands and the
   * record does not name yet, once every member also understands the record itself. Resolves once
   * the record is applied here (or at once when there is nothing to record).
   */
  async recordAgreed(features: readonly number[]): Promise<void> {
    if (features.every((feature) => (this.recorded & feature) === feature)) return;
    await this.read();
    if (!this.parts.everyMemberHas(peerFeatures.featureRecord)) return;
    let adding = 0;
    for (const feature of features) {
      if ((this.recorded & feature) !== feature && this.parts.everyMemberHas(feature)) adding |= feature;
    }
    if (adding !== 0) await this.record(adding);
  }

  /** Reads the record (at start, and when this node becomes the leader). */
  async read(): Promise<void> {
    const stored = await this.parts.state.systemRecord(area, name);
    if (stored === null) return;
    let features: unknown;
    try {
      features = (JSON.parse(new TextDecoder().decode(stored)) as { features?: unknown }).features;
    } catch {
      return; // Not ours to fail on: only this class writes it, and a record it cannot read is none.
    }
    if (typeof features === "number" && Number.isSafeInteger(features) && features >= 0)
      this.recorded |= features;
  }

  /** Reads the record again in the background, at most once a second (a scrape, a write asking). */
  refresh(): void {
    const now = performance.now();
    if (this.reading !== null || now < this.readAgainAt) return;
    this.readAgainAt = now + rereadMs;
    this.reading = this.read()
      .catch(() => {
        // Not readable now (the node is closing): read again later.
      })
      .finally(() => {
        this.reading = null;
      });
  }

  /** Proposes the record with `features` added, and notes them recorded once it applies here. */
  private async record(features: number): Promise<void> {
    const all = this.recorded | features;
    const value = new TextEncoder().encode(JSON.stringify({ features: all }));
    await this.parts.propose({ op: "sys.put", area, path: name, value, at: Date.now() });
    this.recorded |= all;
  }
}
