// The SDK's opt-in read cache for Secrets.Get (newest version only): entries live for a TTL
// shortened by a random jitter (so entries fetched together do not all expire together), the
// least recently used goes beyond a size bound, a Watch event for a path drops its entry, and when
// the cluster cannot be reached an expired entry is served (stale-if-error) rather than failing.
// A read still in flight when its path's event came is answered but not kept: it may have been
// served before the change, and kept, it would outlive the event that was to drop it.
//
// The trade-off (docs/sdk.md): a cached value may be up to a TTL old (longer while the cluster is
// unreachable), a revoked token keeps reading what is cached, and values stay in this process's
// memory for their lifetime. Leave it off where a read must be linearizable.

import { uniform } from "./retry-policy.js";

export interface ReadCacheOptions {
  readonly ttlMs: number;
  /** 0..1: each entry lives ttl·(1 − jitter·random). */
  readonly jitter: number;
  readonly maxEntries: number;
  readonly staleIfError: boolean;
}

export interface ReadCacheStats {
  readonly hits: number;
  readonly misses: number;
  /** Reads answered from an expired entry because the cluster could not be reached. */
  readonly staleServed: number;
  readonly hitRatio: number;
  readonly entries: number;
  /** How old the last stale answer was, in milliseconds (0: none yet). */
  readonly lastStaleAgeMs: number;
}

interface Entry<Value> {
  readonly value: Value;
  readonly storedAt: number;
  readonly expiresAt: number;
}

/** A fetch in flight; `dropped` once its key is invalidated meanwhile. */
interface Fetch {
  dropped: boolean;
}

export class ReadCache<Value> {
  private readonly entries = new Map<string, Entry<Value>>();
  private readonly fetching = new Map<string, Set<Fetch>>();
  private hits = 0;
  private misses = 0;
  private staleServed = 0;
  private lastStaleAgeMs = 0;

  constructor(
    private readonly options: ReadCacheOptions,
    private readonly now: () => number = Date.now,
    private readonly random: () => number = uniform,
  ) {}

  /**
   * The cached value of `key` while fresh; else `fetch`es and caches it. If the fetch fails with an
   * error `unreachable` accepts and an expired entry exists, that entry is answered instead.
   */
  async get(
    key: string,
    fetch: () => Promise<Value>,
    unreachable: (error: unknown) => boolean,
  ): Promise<Value> {
    const entry = this.entries.get(key);
    const now = this.now();
    if (entry !== undefined && now < entry.expiresAt) {
      this.hits++;
      this.touch(key, entry);
      return entry.value;
    }
    this.misses++;
    const inFlight: Fetch = { dropped: false };
    const fetches = this.fetching.get(key) ?? new Set<Fetch>();
    fetches.add(inFlight);
    this.fetching.set(key, fetches);
    try {
      const value = await fetch();
      if (!inFlight.dropped) this.store(key, value);
      return value;
    } catch (error) {
      const stale = this.entries.get(key);
      if (this.options.staleIfError && stale !== undefined && unreachable(error)) {
        this.staleServed++;
        this.lastStaleAgeMs = this.now() - stale.storedAt;
        return stale.value;
      }
      throw error;
    } finally {
      fetches.delete(inFlight);
      if (fetches.size === 0 && this.fetching.get(key) === fetches) this.fetching.delete(key);
    }
  }

  /** Drops `key` (a Watch event said it changed), and what a read of it in flight will answer. */
  invalidate(key: string): void {
    this.entries.delete(key);
    for (const inFlight of this.fetching.get(key) ?? []) inFlight.dropped = true;
  }

  clear(): void {
    this.entries.clear();
    for (const fetches of this.fetching.values()) for (const inFlight of fetches) inFlight.dropped = true;
  }

  stats(): ReadCacheStats {
    const lookups = this.hits + this.misses;
    return {
      hits: this.hits,
      misses: this.misses,
      staleServed: this.staleServed,
      hitRatio: lookups === 0 ? 0 : this.hits / lookups,
      entries: this.entries.size,
      lastStaleAgeMs: this.lastStaleAgeMs,
    };
  }

  private store(key: string, value: Value): void {
    const now = this.now();
    const lifetime = this.options.ttlMs * (1 - this.options.jitter * this.random());
    this.entries.delete(key);
    this.entries.set(key, { value, storedAt: now, expiresAt: now + lifetime });
    while (this.entries.size > this.options.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

  private touch(key: string, entry: Entry<Value>): void {
    this.entries.delete(key);
    this.entries.set(key, entry);
  }
}
