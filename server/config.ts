// A node's configuration: one YAML file, validated by a schema with one clear error per problem,
// then overridden from the environment (STRONGROOM__<path with __ between keys>=<YAML value>,
// e.g. STRONGROOM__listen__client=0.0.0.0:8200). Defaults are the safe choice; anything that
// weakens security has no default and must be written down. The HSM PIN is never part of the
// config: the pkcs11 section names a file or a variable that holds it.

import { readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { readLeaseMsFor } from "../raft/node/read-lease.js";
import { auditDurabilities } from "./audit/audit-file.js";
import { isAuditSocketAddress } from "./audit/audit-socket.js";
import { checkDocument } from "./schema-problems.js";

const address = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "must be host:port (IPv6 in brackets)")
  .refine(
    (value) => Number(value.slice(value.lastIndexOf(":") + 1)) <= 65535,
    "the port must be at most 65535",
  );
const nodeId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, "1 to 63 letters, digits, '.', '_' or '-'");
const file = z.string().min(1, "must be a file path");
const tlsFiles = z.strictObject({ caFile: file, certificateFile: file, privateKeyFile: file });

const member = z.strictObject({
  id: nodeId,
  /** Where the member's peer port is reached. */
  peerAddress: address,
  /** Where the member's client port is reached (for leader hints and forwarding clients). */
  clientAddress: address,
  /** Where it runs: the leader's placement (preferredLeaderRegion) and clients' region preference. */
  region: z.string().max(64).optional(),
  zone: z.string().max(64).optional(),
});

export const nodeConfigSchema = z
  .strictObject({
    nodeId,
    /** Raft log, state machine: one directory per node. */
    dataDir: file,
    listen: z.strictObject({
      /** Clients: mutual TLS with the client CA. */
      client: address,
      /** Peers: mutual TLS with the cluster CA. */
      peer: address,
      /** Plaintext health and metrics (no secret, no path). Absent: not served. */
      http: address.optional(),
    }),
    tls: z.strictObject({
      /** Cluster CA bundle and this node's certificate (for the peer port and for dialing peers). */
      peer: tlsFiles,
      /** Client CA bundle and the certificate this node shows clients. */
      client: tlsFiles,
    }),
    /**
     * The members this node knows at start (itself among them). For a new cluster, the founding
     * members, the same list on every founding node; for a node joining an existing cluster, enough
     * members to reach it (the rest is learned from the replicated state).
     */
    members: z.array(member).min(1).max(7),
    /**
     * "new": this node founds a cluster with `members` (on its first start only, when its data
     * directory is empty). "existing": it joins a cluster that added it (Cluster.AddMember) and
     * waits for the leader to replicate the log to it; it never founds a cluster of its own.
     */
    clusterState: z.enum(["new", "existing"]).default("new"),
    region: z.string().max(64).default(""),
    zone: z.string().max(64).default(""),
    /**
     * The region the leader should be in (docs/multi-region.md): a leader elsewhere hands
     * leadership to a caught-up voter there. The same on every node; empty: anywhere.
     */
    preferredLeaderRegion: z.string().max(64).default(""),
    raft: z
      .strictObject({
        tickMs: z.number().int().min(1).max(1000).default(50),
        electionTicks: z.number().int().min(2).max(1000).default(10),
        heartbeatTicks: z.number().int().min(1).max(100).default(1),
        /**
         * The leader answers linearizable reads without a heartbeat round while a quorum
         * acknowledged one within its lease (docs/raft.md, "Read leases"): sound while the
         * members' monotonic clocks run at rates within leaseClockDrift of each other.
         */
        leaseReads: z.boolean().default(false),
        /** The largest difference of clock rates a read lease allows for, as a fraction. */
        leaseClockDrift: z.number().min(0.001).max(0.5).default(0.1),
        snapshotEveryEntries: z.number().int().min(10).default(10_000),
        /**
         * A snapshot also waits until the entries applied since the last one add up to this many
         * times its size, so that rewriting a large state costs at most 1/ratio of writing the
         * log; whatever their size, at most 10 × snapshotEveryEntries entries pass between two.
         * 0: snapshotEveryEntries alone decides.
         */
        snapshotLogToStateRatio: z.number().min(0).max(100).default(2),
        /**
         * The ratio puts a snapshot off only while the entries since the last one hold under
         * this many bytes of data: a restart reads that part of the log back and checks it.
         */
        snapshotLogBytesMax: z
          .number()
          .int()
          .min(1024 * 1024)
          .max(16 * 1024 * 1024 * 1024)
          .default(128 * 1024 * 1024),
        /** Entries kept behind a snapshot, so a follower that lags by fewer needs no snapshot. */
        retainEntries: z.number().int().min(0).max(1_000_000).default(1000),
        /**
         * While a leader sends a snapshot, it takes no newer one for up to this many entries
         * past it (so the follower finds the entries after it). Absent: 10 × snapshotEveryEntries.
         */
        snapshotTransferHoldEntries: z.number().int().min(0).max(100_000_000).optional(),
        /**
         * Bytes of applied entries the leader keeps in memory for followers that have not
         * acknowledged them; older ones are read back from the Raft log on disk when sent.
         */
        followerCatchUpBytesMax: z
          .number()
          .int()
          .min(0)
          .max(1024 * 1024 * 1024)
          .default(8 * 1024 * 1024),
        /**
         * PromoteLearner makes a learner a voter only while it is within this many entries of
         * the leader's commit index (and replicating, and answering): a voter far behind
         * weakens the quorum until it catches up.
         */
        promoteLagEntriesMax: z.number().int().min(0).max(1_000_000_000).default(1000),
      })
      .default({
        tickMs: 50,
        electionTicks: 10,
        heartbeatTicks: 1,
        leaseReads: false,
        leaseClockDrift: 0.1,
        snapshotEveryEntries: 10_000,
        snapshotLogToStateRatio: 2,
        snapshotLogBytesMax: 128 * 1024 * 1024,
        retainEntries: 1000,
        followerCatchUpBytesMax: 8 * 1024 * 1024,
        promoteLagEntriesMax: 1000,
      }),
    requests: z
      .strictObject({
        /** Longest a request may take; a client deadline shorter than this wins. */
        timeoutMs: z.number().int().min(100).max(600_000).default(10_000),
        /**
         * How long before a call's deadline the node stops waiting (for a leader, a quorum), so
         * that its refusal reaches the client before the deadline ends the call (at most a quarter
         * of the call's time).
         */
        answerReserveMs: z.number().int().min(0).max(10_000).default(100),
        /** The largest request message the client port accepts. */
        messageBytesMax: z
          .number()
          .int()
          .min(4096)
          .max(64 * 1024 * 1024)
          .default(2 * 1024 * 1024),
        /** Calls (HTTP/2 streams) one client connection may have open at once. */
        streamsPerConnectionMax: z.number().int().min(1).max(10_000).default(256),
        /**
         * How often the node pings each client connection (HTTP/2 PING), and how long it waits for
         * the answer before it closes the connection: a client whose host vanished (a crash, a cut
         * link: no FIN, no RST) would otherwise hold its watches, and its identity's share of
         * `watch.watchersPerIdentityMax`, for as long as the node runs.
         */
        keepaliveIntervalMs: z.number().int().min(100).max(3_600_000).default(30_000),
        keepaliveTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
        /** The largest snapshot RestoreSnapshot accepts (staged in <dataDir>/restore until checked). */
        snapshotBytesMax: z
          .number()
          .int()
          .min(1024 * 1024)
          .max(16 * 1024 * 1024 * 1024)
          .default(1024 * 1024 * 1024),
      })
      .default({
        timeoutMs: 10_000,
        answerReserveMs: 100,
        messageBytesMax: 2 * 1024 * 1024,
        streamsPerConnectionMax: 256,
        keepaliveIntervalMs: 30_000,
        keepaliveTimeoutMs: 10_000,
        snapshotBytesMax: 1024 * 1024 * 1024,
      }),
    seal: z
      .strictObject({
        /** The HSM this node unseals with (see docs/seal.md); absent: Shamir shares only. */
        pkcs11: z.record(z.string(), z.unknown()).optional(),
        /** A half-finished unseal attempt is discarded after this long. */
        shareAttemptTimeoutMs: z.number().int().min(1000).default(600_000),
        /**
         * The longest wait between two HSM auto-unseal attempts while the HSM cannot answer (full
         * jitter below it): how long a node may stay sealed after the HSM is back, against how
         * often a cluster's nodes try a shared HSM that is down.
         */
        autoUnsealRetryMaxMs: z.number().int().min(1000).max(3_600_000).default(30_000),
      })
      .default({ shareAttemptTimeoutMs: 600_000, autoUnsealRetryMaxMs: 30_000 }),
    storage: z
      .strictObject({
        /**
         * LevelDB's write buffer for the state machine's store: with large values written often,
         * a larger one saves compactions, for as much more memory (docs/performance.md).
         */
        stateWriteBufferBytes: z
          .number()
          .int()
          .min(1024 * 1024)
          .max(1024 * 1024 * 1024)
          .default(4 * 1024 * 1024),
      })
      .default({ stateWriteBufferBytes: 4 * 1024 * 1024 }),
    threads: z
      .strictObject({
        /**
         * "batch": the process's helper threads (libuv's pool, V8's, LevelDB's) run under Linux's
         * SCHED_BATCH, so that one waking does not preempt the event loop (set with util-linux's
         * `chrt`; docs/performance.md). "inherit": left as started. Linux only; `strongroom
         * server` only (not nodes run inside another program).
         */
        helperPolicy: z.enum(["batch", "inherit"]).default("batch"),
      })
      .default({ helperPolicy: "batch" }),
    watch: z
      .strictObject({
        /** Changes kept so a watcher can resume from a revision. */
        historyMax: z.number().int().min(100).max(1_000_000).default(10_000),
        /** Events queued for a watcher that is not reading before its stream is ended. */
        queueMax: z.number().int().min(10).max(100_000).default(1_000),
        watchersMax: z.number().int().min(1).max(100_000).default(1_000),
        /** Watches one identity may hold open on a node at once. */
        watchersPerIdentityMax: z.number().int().min(1).max(100_000).default(100),
        /**
         * How often a watch that asked for progress (progress_notify) is told the revision it is
         * up to date with, when the cluster moved on without changes under its prefix. Shorter
         * than the time historyMax changes take, so that a quiet watch resumes within the history.
         */
        progressIntervalMs: z.number().int().min(100).max(600_000).default(1000),
      })
      .default({
        historyMax: 10_000,
        queueMax: 1_000,
        watchersMax: 1_000,
        watchersPerIdentityMax: 100,
        progressIntervalMs: 1000,
      }),
    /** The leader's lifecycle sweeps: secrets due to rotate, and expired secrets to erase. */
    rotation: z
      .strictObject({
        /** How often the leader looks for secrets due to rotate (and expired ones to erase). */
        sweepMs: z.number().int().min(100).max(3_600_000).default(1000),
        /** Rotations started per sweep, at most (a backlog drains over several sweeps). */
        perSweepMax: z.number().int().min(1).max(10_000).default(50),
      })
      .default({ sweepMs: 1000, perSweepMax: 50 }),
    /** Leases of dynamic credentials (tokens, issued certificates) and the PKI engine's list. */
    leases: z
      .strictObject({
        /** Live leases one identity may hold: tokens it created plus certificates issued to it. */
        perIdentityMax: z.number().int().min(1).max(1_000_000).default(1000),
        /** Certificate leases the cluster holds at once (every node keeps them in memory). */
        max: z.number().int().min(10).max(10_000_000).default(100_000),
        /** How often the leader removes expired certificate leases. */
        sweepMs: z.number().int().min(100).max(3_600_000).default(1000),
        perSweepMax: z.number().int().min(1).max(100_000).default(500),
        /** How long a served revocation list is valid; consumers fetch it again before that. */
        crlValidityMs: z
          .number()
          .int()
          .min(60_000)
          .max(30 * 24 * 3_600_000)
          .default(3_600_000),
      })
      .default({
        perIdentityMax: 1000,
        max: 100_000,
        sweepMs: 1000,
        perSweepMax: 500,
        crlValidityMs: 3_600_000,
      }),
    audit: z
      .strictObject({
        /** One sink per directory (default: <dataDir>/audit); a call proceeds when one has its entry. */
        directories: z.array(file).min(1).max(8).optional(),
        /**
         * Collectors to stream entries to as well: "unix:<path>" or "tcp:<host>:<port>". A call
         * proceeds when any sink, file or socket, has taken its entry.
         */
        sockets: z
          .array(z.string().refine(isAuditSocketAddress, "must be unix:<path> or tcp:<host>:<port>"))
          .max(8)
          .default([]),
        maxFileBytes: z
          .number()
          .int()
          .min(4096)
          .default(64 * 1024 * 1024),
        checkpointEvery: z.number().int().min(1).max(100_000).default(1000),
        /**
         * When a call may proceed: "disk" once its entry is on disk (outlives a power loss), "os"
         * once the operating system has it (outlives the process, not the machine; each file is
         * synced in the background every `syncIntervalMs` it was written).
         */
        durability: z.enum(auditDurabilities).default("disk"),
        syncIntervalMs: z.number().int().min(10).max(60_000).default(1000),
      })
      .default({
        sockets: [],
        maxFileBytes: 64 * 1024 * 1024,
        checkpointEvery: 1000,
        durability: "disk",
        syncIntervalMs: 1000,
      }),
    auth: z
      .strictObject({
        /**
         * Where a client's identity comes from: its strongroom://client/<name> SAN URI, its
         * subject CN, or the URI if it has one and the CN otherwise.
         */
        identitySource: z.enum(["uri-or-cn", "uri", "cn"]).default("uri-or-cn"),
        /** A new token's lifetime when its creator asks for none. */
        tokenTtlMs: z.number().int().min(1000).default(3_600_000),
        /** The longest any token (but the root token) may live, renewals included. */
        tokenMaxTtlMs: z
          .number()
          .int()
          .min(1000)
          .default(32 * 24 * 3_600_000),
        /** Tokens the cluster holds at once (every node keeps them all in memory). */
        tokensMax: z.number().int().min(10).max(10_000_000).default(100_000),
        policiesMax: z.number().int().min(1).max(100_000).default(1000),
        /** The largest policy document. */
        policyBytesMax: z
          .number()
          .int()
          .min(1024)
          .max(1024 * 1024)
          .default(64 * 1024),
        /** How often the leader removes expired tokens and tokens whose parent was revoked. */
        tidyIntervalMs: z.number().int().min(100).default(60_000),
        /**
         * Per-identity rate limits, by policy path prefix (the longest matching prefix decides;
         * "" covers every call). See server/access/rate-limiter.ts.
         */
        rateLimits: z
          .array(
            z.strictObject({
              prefix: z.string().max(512),
              perSecond: z.number().positive().max(1_000_000),
              burst: z.number().int().min(1).max(10_000_000),
            }),
          )
          .max(64)
          .default([{ prefix: "", perSecond: 10_000, burst: 20_000 }]),
      })
      .default({
        identitySource: "uri-or-cn",
        tokenTtlMs: 3_600_000,
        tokenMaxTtlMs: 32 * 24 * 3_600_000,
        tokensMax: 100_000,
        policiesMax: 1000,
        policyBytesMax: 64 * 1024,
        tidyIntervalMs: 60_000,
        rateLimits: [{ prefix: "", perSecond: 10_000, burst: 20_000 }],
      }),
    log: z
      .strictObject({ level: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info") })
      .default({ level: "info" }),
  })
  .superRefine((config, context) => {
    const ids = config.members.map((entry) => entry.id);
    if (!ids.includes(config.nodeId)) {
      context.addIssue({
        code: "custom",
        path: ["members"],
        message: `must include this node (${config.nodeId})`,
      });
    }
    const duplicate = ids.find((id, index) => ids.indexOf(id) !== index);
    if (duplicate !== undefined) {
      context.addIssue({ code: "custom", path: ["members"], message: `lists ${duplicate} twice` });
    }
    if (config.auth.tokenTtlMs > config.auth.tokenMaxTtlMs) {
      context.addIssue({
        code: "custom",
        path: ["auth", "tokenTtlMs"],
        message: "must not be above tokenMaxTtlMs",
      });
    }
    if (config.raft.heartbeatTicks >= config.raft.electionTicks) {
      context.addIssue({
        code: "custom",
        path: ["raft", "heartbeatTicks"],
        message: "must be below electionTicks",
      });
    }
    if (config.raft.leaseReads) {
      const { tickMs, electionTicks, heartbeatTicks, leaseClockDrift } = config.raft;
      const leaseMs = readLeaseMsFor(tickMs, electionTicks, leaseClockDrift);
      // A lease that ends before the next heartbeat could renew it would never hold a read.
      if (leaseMs <= heartbeatTicks * tickMs) {
        context.addIssue({
          code: "custom",
          path: ["raft", "leaseReads"],
          message: `the lease these ticks allow (${leaseMs} ms) ends before the next heartbeat (${heartbeatTicks * tickMs} ms): raise electionTicks or tickMs`,
        });
      }
    }
  });

export type NodeConfig = z.infer<typeof nodeConfigSchema>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(
    readonly problems: readonly string[],
    source: string,
  ) {
    super(
      `${source} has ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
  }
}

const envPrefix = "STRONGROOM__";

/** Reads, overrides and validates a config file. Relative file paths are taken from the file's directory. */
export function loadNodeConfig(path: string, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError([`cannot be read: ${readFailure(error)}`], path);
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new ConfigError([`is not valid YAML: ${(error as Error).message}`], path);
  }
  const config = parseNodeConfig(applyEnvOverrides(document, env), path);
  return resolvePaths(config, resolve(path, ".."));
}

function readFailure(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EISDIR") return "it is a directory";
  if (code === "EACCES") return "permission denied";
  return code ?? String(error);
}

export function parseNodeConfig(document: unknown, source = "the config"): NodeConfig {
  const { data, problems } = checkDocument(nodeConfigSchema, document);
  if (problems !== null) throw new ConfigError(problems, source);
  return data;
}

function applyEnvOverrides(document: unknown, env: NodeJS.ProcessEnv): unknown {
  const root = (typeof document === "object" && document !== null ? structuredClone(document) : {}) as Record<
    string,
    unknown
  >;
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(envPrefix) || value === undefined) continue;
    const keys = name.slice(envPrefix.length).split("__");
    let target = root;
    for (const key of keys.slice(0, -1)) {
      const next = target[key];
      if (typeof next !== "object" || next === null) target[key] = {};
      target = target[key] as Record<string, unknown>;
    }
    target[keys[keys.length - 1] ?? ""] = parseYaml(value);
  }
  return root;
}

function resolvePaths(config: NodeConfig, base: string): NodeConfig {
  const absolute = (path: string) => (isAbsolute(path) ? path : resolve(base, path));
  const files = (paths: NodeConfig["tls"]["peer"]) => ({
    caFile: absolute(paths.caFile),
    certificateFile: absolute(paths.certificateFile),
    privateKeyFile: absolute(paths.privateKeyFile),
  });
  return {
    ...config,
    audit: {
      ...config.audit,
      directories: (config.audit.directories ?? [join(config.dataDir, "audit")]).map(absolute),
    },
    dataDir: absolute(config.dataDir),
    tls: { peer: files(config.tls.peer), client: files(config.tls.client) },
  };
}
