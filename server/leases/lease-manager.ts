// The lease manager, on the leader: records the lease of every issued certificate, bounds how
// many leases one identity holds (a lease explosion - thousands of credentials nobody revokes - is
// a known way to bring a secret store down), lists, renews and revokes leases of both kinds
// (tokens through the access API, certificates onto the revocation list), and revokes expired
// ones in a periodic sweep. Every node refuses a revoked token from the index its deletion applies
// at; a revoked certificate is refused by consumers that check the revocation list.

import { Counter, Gauge, type Registry } from "prom-client";
import { StateError } from "../../storage/state/index.js";
import type { TokenRecord } from "../access/access-records.js";
import type { AccessRecords, AccessView } from "../access/access-view.js";
import { NodeError } from "../errors.js";
import { PeriodicTask } from "../lifecycle/periodic-task.js";
import type { IssuedCertificate } from "../pki/certificate-authority.js";
import type { PkiEngine } from "../pki/pki-engine.js";
import type { SystemRecords } from "../system-records.js";
import {
  type CertificateLease,
  certificateLeaseId,
  certificateLeaseView,
  encodeLeaseRecord,
  type LeaseView,
  leaseAreas,
  tokenLeasePrefix,
  tokenLeaseView,
} from "./lease-records.js";

/** What the lease manager needs of the token side of the access API. */
export interface TokenLeases {
  renewTokenRecord(hash: string, incrementMs: number): Promise<TokenRecord>;
  revokeTokenHash(hash: string): Promise<{ revision: number; accessors: string[] }>;
}

export interface LeaseManagerParts {
  readonly view: AccessView;
  readonly records: SystemRecords;
  readonly pki: PkiEngine;
  readonly tokens: TokenLeases;
  /** Whether this node may sweep now: it leads, and it is initialized and unsealed. */
  readonly serving: () => boolean;
  readonly registry: Registry;
  readonly onError?: (what: string, error: unknown) => void;
  readonly now?: () => number;
}

export interface LeaseLimits {
  readonly perIdentityMax: number;
  /** Certificate leases the cluster holds at once. */
  readonly max: number;
  readonly sweepMs: number;
  /** Leases revoked per sweep, at most. */
  readonly perSweepMax: number;
}

/** Expired entries leave the revocation list at most this long after they expire (a sweep reads every entry). */
const crlTidyEveryMs = 60_000;

/** A lease is live until it expires (0: never, the root token). */
const live = (expiresAt: number, now: number) => expiresAt === 0 || expiresAt > now;

/** Every live lease, tokens and certificates, in id order. */
export function liveLeases(records: AccessRecords, now: number): LeaseView[] {
  const leases: LeaseView[] = [];
  for (const token of records.tokens.values())
    if (live(token.expiresAt, now)) leases.push(tokenLeaseView(token));
  for (const lease of records.leases.values())
    if (live(lease.expiresAt, now)) leases.push(certificateLeaseView(lease));
  return leases.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Live leases issued to `identity`: tokens it created and certificates issued to it. */
export function leasesHeldBy(records: AccessRecords, identity: string, now: number): number {
  let count = 0;
  for (const token of records.tokens.values())
    if (token.createdBy === identity && live(token.expiresAt, now)) count++;
  for (const lease of records.leases.values())
    if (lease.identity === identity && live(lease.expiresAt, now)) count++;
  return count;
}

/** RESOURCE_EXHAUSTED when `identity` holds `max` leases already. */
export function requireLeaseRoom(records: AccessRecords, identity: string, max: number, now: number): void {
  const held = leasesHeldBy(records, identity, now);
  if (held >= max)
    throw new NodeError(
      "RESOURCE_EXHAUSTED",
      `${identity} holds ${held} leases, its limit (leases.perIdentityMax is ${max}): revoke some, or let them expire`,
    );
}

export class LeaseManager {
  private readonly sweeps: PeriodicTask;
  private readonly now: () => number;
  private readonly revoked: Counter;
  private crlTidiedAt = 0;

  constructor(
    private readonly parts: LeaseManagerParts,
    private readonly limits: LeaseLimits,
  ) {
    this.now = parts.now ?? Date.now;
    this.sweeps = new PeriodicTask(
      limits.sweepMs,
      parts.serving,
      () => this.sweep(),
      (error) => parts.onError?.("sweep", error),
    );
    this.revoked = new Counter({
      name: "strongroom_leases_revoked_total",
      help: "Leases the leader revoked, by reason: revoked (asked for) or expired (the sweep).",
      labelNames: ["kind", "reason"],
      registers: [parts.registry],
    });
    const { view } = parts;
    const now = this.now;
    new Gauge({
      name: "strongroom_leases",
      help: "Live leases by kind (token, certificate); one identity holds at most leases.perIdentityMax.",
      labelNames: ["kind"],
      registers: [parts.registry],
      collect() {
        this.set({ kind: "token" }, 0);
        this.set({ kind: "certificate" }, 0);
        let records: AccessRecords;
        try {
          records = view.recordsNow();
        } catch {
          return; // sealed: nothing to count
        }
        for (const lease of liveLeases(records, now())) this.inc({ kind: lease.kind });
      },
    });
  }

  start(): void {
    this.sweeps.start();
  }

  stop(): void {
    this.sweeps.stop();
  }

  /** Checks that `identity` may take one more lease (RESOURCE_EXHAUSTED when not). */
  async requireRoom(identity: string): Promise<void> {
    const records = await this.parts.view.records();
    requireLeaseRoom(records, identity, this.limits.perIdentityMax, this.now());
    if (records.leases.size >= this.limits.max)
      throw new NodeError(
        "RESOURCE_EXHAUSTED",
        `the cluster holds its limit of ${this.limits.max} certificate leases (leases.max)`,
      );
  }

  /** Records the lease of a certificate just issued to `identity`; answers its id. */
  async recordCertificate(identity: string, role: string, issued: IssuedCertificate): Promise<string> {
    const lease: CertificateLease = {
      id: certificateLeaseId(role, issued.serial),
      kind: "certificate",
      identity,
      issuedAt: this.now(),
      expiresAt: issued.notAfter,
      role,
      serial: issued.serial,
    };
    await this.parts.records.put(leaseAreas.lease, lease.id, encodeLeaseRecord(lease));
    return lease.id;
  }

  /** Live leases under `prefix` after `after` (exclusive), at most `limit`; `next` continues. */
  async list(prefix: string, after: string, limit: number): Promise<{ leases: LeaseView[]; next: string }> {
    const matching = liveLeases(await this.parts.view.records(), this.now()).filter(
      (lease) => lease.id.startsWith(prefix) && lease.id > after,
    );
    const page = matching.slice(0, limit);
    return { leases: page, next: matching.length > limit ? (page.at(-1)?.id ?? "") : "" };
  }

  async lookup(id: string): Promise<LeaseView> {
    const records = await this.parts.view.records();
    const token = this.tokenOf(records, id);
    if (token !== null) return tokenLeaseView(token.record);
    return certificateLeaseView(this.certificateOf(records, id));
  }

  async renew(id: string, incrementMs: number): Promise<LeaseView> {
    const records = await this.parts.view.records();
    const token = this.tokenOf(records, id);
    if (token === null) {
      this.certificateOf(records, id);
      throw new NodeError(
        "NOT_RENEWABLE",
        "a certificate's lifetime is in the certificate and cannot be extended: issue a new one",
      );
    }
    return tokenLeaseView(await this.parts.tokens.renewTokenRecord(token.hash, incrementMs));
  }

  /** Revokes one lease; answers the index from which it is revoked and every lease id it took. */
  async revoke(id: string): Promise<{ revision: number; revoked: string[] }> {
    const records = await this.parts.view.records();
    const token = this.tokenOf(records, id);
    if (token !== null) {
      const { revision, accessors } = await this.parts.tokens.revokeTokenHash(token.hash);
      this.revoked.inc({ kind: "token", reason: "revoked" }, accessors.length);
      return { revision, revoked: accessors.map((accessor) => `${tokenLeasePrefix}${accessor}`) };
    }
    const lease = this.certificateOf(records, id);
    // The revocation first: a crash between the two leaves a revoked certificate whose lease the
    // expiry sweep removes, never a certificate without a lease that nobody can revoke.
    await this.parts.pki.revoke(lease.serial, lease.expiresAt);
    const revision = await this.parts.records.delete(leaseAreas.lease, lease.id);
    this.revoked.inc({ kind: "certificate", reason: "revoked" });
    return { revision, revoked: [lease.id] };
  }

  /** Revokes every live lease under `prefix` (not empty), tokens' descendants included. */
  async revokePrefix(prefix: string): Promise<{ revision: number; revoked: string[] }> {
    return this.revokeAll(
      liveLeases(await this.parts.view.records(), this.now()).filter((l) => l.id.startsWith(prefix)),
    );
  }

  /** Revokes every live lease issued to `identity`. */
  async revokeIdentity(identity: string): Promise<{ revision: number; revoked: string[] }> {
    return this.revokeAll(
      liveLeases(await this.parts.view.records(), this.now()).filter((lease) => lease.identity === identity),
    );
  }

  private async revokeAll(leases: readonly LeaseView[]): Promise<{ revision: number; revoked: string[] }> {
    const revoked = new Set<string>();
    let revision = 0;
    for (const lease of leases) {
      // A descendant of a token revoked before it in this loop is gone already.
      if (revoked.has(lease.id)) continue;
      try {
        const done = await this.revoke(lease.id);
        revision = Math.max(revision, done.revision);
        for (const id of done.revoked) revoked.add(id);
      } catch (error) {
        if (!(error instanceof NodeError && error.code === "NOT_FOUND")) throw error;
      }
    }
    return { revision, revoked: [...revoked].sort() };
  }

  private tokenOf(records: AccessRecords, id: string): { hash: string; record: TokenRecord } | null {
    if (!id.startsWith(tokenLeasePrefix)) return null;
    const hash = records.accessors.get(id.slice(tokenLeasePrefix.length));
    const record = hash === undefined ? undefined : records.tokens.get(hash);
    if (hash === undefined || record === undefined || !live(record.expiresAt, this.now()))
      throw new NodeError("NOT_FOUND", `no live lease ${id}`);
    return { hash, record };
  }

  private certificateOf(records: AccessRecords, id: string): CertificateLease {
    const lease = records.leases.get(id);
    if (lease === undefined || !live(lease.expiresAt, this.now()))
      throw new NodeError("NOT_FOUND", `no live lease ${id}`);
    return lease;
  }

  /**
   * Removes the records of expired certificate leases (their certificates are refused for their
   * date) and expired entries of the revocation list. Expired tokens are the token tidy's.
   */
  private async sweep(): Promise<void> {
    const records = await this.parts.view.records();
    const now = this.now();
    let done = 0;
    for (const lease of [...records.leases.values()]) {
      if (done >= this.limits.perSweepMax || !this.parts.serving()) return;
      if (live(lease.expiresAt, now)) continue;
      const digest = this.parts.view.digestOf(leaseAreas.lease, lease.id);
      if (digest === null) continue;
      try {
        await this.parts.records.delete(leaseAreas.lease, lease.id, digest);
        this.revoked.inc({ kind: "certificate", reason: "expired" });
        done++;
      } catch (error) {
        if (!(error instanceof StateError && ["CAS_MISMATCH", "NOT_FOUND"].includes(error.code))) {
          this.parts.onError?.(lease.id, error);
          return;
        }
      }
    }
    if (now - this.crlTidiedAt < crlTidyEveryMs) return;
    this.crlTidiedAt = now;
    await this.parts.pki.tidyCrl().catch((error: unknown) => {
      this.parts.onError?.("crl", error);
    });
  }
}
