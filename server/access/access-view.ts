// The node's view of access control: every policy, identity binding, token, token role, lease and
// disabled identity record, kept in memory so that a request is authorized without a disk read.
// Applied commands update it as they apply (synchronously, before the next request can see the
// state), so a change takes effect on a node at the index where it applies there. Records are kept as ciphertext and decrypted when a
// request needs them (only an unsealed node can); decrypted records are dropped when the node
// seals. A snapshot restore reloads the whole view.

import { Gauge, type Registry } from "prom-client";
import type { Barrier } from "../../storage/barrier/index.js";
import {
  recordDigest,
  type SecretCommand,
  type SecretStateMachine,
  type SystemArea,
} from "../../storage/state/index.js";
import { NodeError } from "../errors.js";
import {
  type CertificateLease,
  type DisabledIdentityRecord,
  decodeCertificateLease,
  decodeDisabledIdentity,
  leaseAreas,
} from "../leases/lease-records.js";
import { type Policy, parsePolicy } from "../policy/policy.js";
import { barrierContext } from "../system-records.js";
import {
  accessAreas,
  type BindingRecord,
  decodeBindingRecord,
  decodePolicyRecord,
  decodeTokenRecord,
  decodeTokenRoleRecord,
  type TokenRecord,
  type TokenRoleRecord,
} from "./access-records.js";

const areas: readonly SystemArea[] = [...Object.values(accessAreas), ...Object.values(leaseAreas)];

type RecordCommand = Extract<SecretCommand, { op: "sys.put" | "sys.delete" }>;

/** The decrypted records, as of the last applied change. */
export interface AccessRecords {
  readonly policies: ReadonlyMap<string, { readonly policy: Policy; readonly document: string }>;
  readonly bindings: ReadonlyMap<string, BindingRecord>;
  /** By the token's keyed hash. */
  readonly tokens: ReadonlyMap<string, TokenRecord>;
  /** Token hash by accessor. */
  readonly accessors: ReadonlyMap<string, string>;
  /** Token roles by name. */
  readonly tokenRoles: ReadonlyMap<string, TokenRoleRecord>;
  /** Certificate leases by lease id (tokens are leases too, seen through `tokens`). */
  readonly leases: ReadonlyMap<string, CertificateLease>;
  /** Identities every node refuses, by identity. */
  readonly disabledIdentities: ReadonlyMap<string, DisabledIdentityRecord>;
}

export class AccessView {
  /** Ciphertext by record key (area and name). */
  private readonly stored = new Map<string, { area: SystemArea; name: string; value: Uint8Array }>();
  private readonly policies = new Map<string, { policy: Policy; document: string }>();
  private readonly bindings = new Map<string, BindingRecord>();
  private readonly tokens = new Map<string, TokenRecord>();
  private readonly accessors = new Map<string, string>();
  private readonly tokenRoles = new Map<string, TokenRoleRecord>();
  private readonly leases = new Map<string, CertificateLease>();
  private readonly disabledIdentities = new Map<string, DisabledIdentityRecord>();
  /** Record keys changed since they were last decrypted. */
  private readonly dirty = new Set<string>();
  /** Commands applied while a reload is reading the state, replayed after it. */
  private pending: RecordCommand[] | null = null;
  private loading: Promise<void> = Promise.resolve();

  constructor(
    private readonly state: SecretStateMachine,
    private readonly barrier: Barrier,
    registry?: Registry,
  ) {
    if (registry === undefined) return;
    const stored = this.stored;
    new Gauge({
      name: "strongroom_access_records",
      help: "Access records this node holds, by area (policy, identity, token, token-role, lease, disabled-identity); tokens are bounded by auth.tokensMax.",
      labelNames: ["area"],
      registers: [registry],
      collect() {
        for (const area of areas) this.set({ area }, 0);
        for (const { area } of stored.values()) this.inc({ area });
      },
    });
  }

  /** Reads every access record from the state: at start, and after a restore replaced it. */
  reload(): Promise<void> {
    const load = async () => {
      this.pending = [];
      try {
        const found = new Map<string, { area: SystemArea; name: string; value: Uint8Array }>();
        for (const area of areas) {
          let after: string | null = null;
          do {
            const page: { names: string[]; next: string | null } = await this.state.listSystem(
              area,
              after,
              1000,
            );
            for (const name of page.names) {
              const value = await this.state.systemRecord(area, name);
              if (value !== null) found.set(recordKey(area, name), { area, name, value });
            }
            after = page.next;
          } while (after !== null);
        }
        this.stored.clear();
        for (const [key, record] of found) this.stored.set(key, record);
        this.forgetDecrypted();
        for (const command of this.pending) this.take(command);
      } finally {
        this.pending = null;
      }
    };
    this.loading = this.loading.then(load, load);
    return this.loading;
  }

  /** Told of every applied command, as it applies. */
  applied(command: SecretCommand): void {
    if (command.op === "state.load") {
      // A restore into an empty cluster brings records in bulk.
      this.reload().catch(() => {});
      return;
    }
    if (command.op !== "sys.put" && command.op !== "sys.delete") return;
    if (!areas.includes(command.area)) return;
    if (this.pending !== null) this.pending.push(command);
    this.take(command);
  }

  /** The SHA-256 of a record as stored now, for a check-and-set of its next change (null: none). */
  digestOf(area: SystemArea, name: string): Uint8Array | null {
    const record = this.stored.get(recordKey(area, name));
    return record === undefined ? null : recordDigest(record.value);
  }

  /** Drops every decrypted record (the node sealed); ciphertext stays. */
  forgetDecrypted(): void {
    this.policies.clear();
    this.bindings.clear();
    this.tokens.clear();
    this.accessors.clear();
    this.tokenRoles.clear();
    this.leases.clear();
    this.disabledIdentities.clear();
    for (const key of this.stored.keys()) this.dirty.add(key);
  }

  /** The decrypted records, once any reload is done; SEALED while the barrier is. */
  async records(): Promise<AccessRecords> {
    await this.loading;
    return this.recordsNow();
  }

  /** The decrypted records as they are now (for checks inside a running stream). */
  recordsNow(): AccessRecords {
    if (this.barrier.isSealed())
      throw new NodeError("SEALED", "this node is sealed, so it cannot check access");
    for (const key of [...this.dirty]) {
      this.decrypt(key);
      this.dirty.delete(key);
    }
    return {
      policies: this.policies,
      bindings: this.bindings,
      tokens: this.tokens,
      accessors: this.accessors,
      tokenRoles: this.tokenRoles,
      leases: this.leases,
      disabledIdentities: this.disabledIdentities,
    };
  }

  private take(command: RecordCommand): void {
    const key = recordKey(command.area, command.path);
    if (command.op === "sys.put")
      this.stored.set(key, { area: command.area, name: command.path, value: command.value });
    else this.stored.delete(key);
    this.dirty.add(key);
  }

  private decrypt(key: string): void {
    const separator = key.indexOf("\u0000");
    const area = key.slice(0, separator) as SystemArea;
    const name = key.slice(separator + 1);
    if (area === accessAreas.token) {
      const old = this.tokens.get(name);
      if (old !== undefined) this.accessors.delete(old.accessor);
      this.tokens.delete(name);
    } else if (area === accessAreas.policy) this.policies.delete(name);
    else if (area === accessAreas.tokenRole) this.tokenRoles.delete(name);
    else if (area === leaseAreas.lease) this.leases.delete(name);
    else if (area === leaseAreas.disabled) this.disabledIdentities.delete(name);
    else this.bindings.delete(name);
    const record = this.stored.get(key);
    if (record === undefined) return;
    let plaintext: Uint8Array;
    try {
      plaintext = this.barrier.decrypt(barrierContext(area, name), record.value);
    } catch (error) {
      throw new NodeError("ACCESS_UNAVAILABLE", `the ${area} record ${name} cannot be read yet; try again`, {
        cause: error,
      });
    }
    if (area === accessAreas.token) {
      const token = decodeTokenRecord(plaintext);
      this.tokens.set(name, token);
      this.accessors.set(token.accessor, name);
    } else if (area === accessAreas.policy) {
      const { document } = decodePolicyRecord(plaintext);
      this.policies.set(name, { policy: parsePolicy(document), document });
    } else if (area === accessAreas.tokenRole) {
      this.tokenRoles.set(name, decodeTokenRoleRecord(plaintext));
    } else if (area === leaseAreas.lease) {
      this.leases.set(name, decodeCertificateLease(plaintext));
    } else if (area === leaseAreas.disabled) {
      this.disabledIdentities.set(name, decodeDisabledIdentity(plaintext));
    } else {
      this.bindings.set(name, decodeBindingRecord(plaintext));
    }
  }
}

function recordKey(area: SystemArea, name: string): string {
  return `${area}\u0000${name}`;
}
