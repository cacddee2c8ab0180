// A node's config file: every problem is reported at once, one line each, naming the field; the
// environment overrides a field (STRONGROOM__a__b=value); relative paths are taken from the
// file's directory; defaults are filled in.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { ConfigError, loadNodeConfig } from "../../server/config.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-config-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const valid = {
  nodeId: "n1",
  dataDir: "data/n1",
  listen: { client: "127.0.0.1:8200", peer: "127.0.0.1:8201", http: "127.0.0.1:8202" },
  tls: {
    peer: { caFile: "tls/cluster-ca.pem", certificateFile: "tls/n1.pem", privateKeyFile: "tls/n1-key.pem" },
    client: { caFile: "tls/client-ca.pem", certificateFile: "tls/n1.pem", privateKeyFile: "tls/n1-key.pem" },
  },
  members: [
    { id: "n1", peerAddress: "127.0.0.1:8201", clientAddress: "127.0.0.1:8200" },
    { id: "n2", peerAddress: "127.0.0.2:8201", clientAddress: "127.0.0.2:8200" },
  ],
};

function write(name: string, document: unknown): string {
  const file = join(root, name);
  writeFileSync(file, typeof document === "string" ? document : stringify(document));
  return file;
}

function problemsOf(file: string, env: NodeJS.ProcessEnv = {}): readonly string[] {
  try {
    loadNodeConfig(file, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error("the config was accepted");
}

describe("node config", () => {
  it("fills in defaults and resolves relative paths from the file's directory", () => {
    const config = loadNodeConfig(write("valid.yaml", valid), {});
    expect(config.dataDir).toBe(join(root, "data/n1"));
    expect(config.tls.peer.caFile).toBe(join(root, "tls/cluster-ca.pem"));
    expect(config.raft).toEqual({
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
    });
    expect(config.clusterState).toBe("new");
    expect(config.requests).toEqual({
      timeoutMs: 10_000,
      answerReserveMs: 100,
      messageBytesMax: 2 * 1024 * 1024,
      streamsPerConnectionMax: 256,
      keepaliveIntervalMs: 30_000,
      keepaliveTimeoutMs: 10_000,
      snapshotBytesMax: 1024 * 1024 * 1024,
    });
    expect(config.storage).toEqual({ stateWriteBufferBytes: 4 * 1024 * 1024 });
    expect(config.seal).toEqual({ shareAttemptTimeoutMs: 600_000, autoUnsealRetryMaxMs: 30_000 });
    // An audit entry is on disk before its call goes on, unless the operator says otherwise.
    expect(config.audit).toMatchObject({ durability: "disk", syncIntervalMs: 1000 });
    expect(config.auth).toMatchObject({
      identitySource: "uri-or-cn",
      tokenTtlMs: 3_600_000,
      rateLimits: [{ prefix: "", perSecond: 10_000, burst: 20_000 }],
    });
  });

  it("reports every problem at once, one per line, naming the field", () => {
    const file = write("bad.yaml", {
      ...valid,
      nodeId: "n 1",
      listen: { client: "localhost", peer: "127.0.0.1:70000" },
      members: [
        ...valid.members,
        { id: "n2", peerAddress: "127.0.0.3:8201", clientAddress: "127.0.0.3:8200" },
      ],
      raft: {
        tickMs: 0,
        electionTicks: 5,
        heartbeatTicks: 5,
        snapshotLogToStateRatio: -1,
        snapshotLogBytesMax: 1000,
      },
      seal: { shareAttemptTimeoutMs: 5, autoUnsealRetryMaxMs: 500 },
      auth: { identitySource: "san", rateLimits: [{ prefix: "", perSecond: 0, burst: 1 }] },
      audit: { sockets: ["syslog://localhost"], durability: "none", syncIntervalMs: 5 },
      storage: { stateWriteBufferBytes: 1000 },
      requests: { keepaliveIntervalMs: 0, keepaliveTimeoutMs: 50 },
      colour: "blue",
    });
    const problems = problemsOf(file);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^nodeId: 1 to 63 letters/),
        expect.stringMatching(/^listen\.client: must be host:port/),
        expect.stringMatching(/^listen\.peer: the port must be at most 65535/),
        expect.stringMatching(/^raft\.tickMs: /),
        expect.stringMatching(/^raft\.snapshotLogToStateRatio: Too small: expected number to be >=0/),
        expect.stringMatching(/^raft\.snapshotLogBytesMax: Too small: expected number to be >=1048576/),
        expect.stringMatching(/^seal\.shareAttemptTimeoutMs: /),
        expect.stringMatching(/^seal\.autoUnsealRetryMaxMs: Too small: expected number to be >=1000/),
        expect.stringMatching(/colour/),
        expect.stringMatching(
          /^auth\.identitySource: Invalid option: expected one of "uri-or-cn"\|"uri"\|"cn"/,
        ),
        expect.stringMatching(/^auth\.rateLimits\.0\.perSecond: /),
        "audit.sockets.0: must be unix:<path> or tcp:<host>:<port>",
        expect.stringMatching(/^audit\.durability: Invalid option: expected one of "disk"\|"os"/),
        expect.stringMatching(/^audit\.syncIntervalMs: /),
        expect.stringMatching(/^storage\.stateWriteBufferBytes: Too small: expected number to be >=1048576/),
        expect.stringMatching(/^requests\.keepaliveIntervalMs: Too small: expected number to be >=100/),
        expect.stringMatching(/^requests\.keepaliveTimeoutMs: Too small: expected number to be >=100/),
      ]),
    );
    expect(problems.length).toBeGreaterThanOrEqual(12);
    expect(() => loadNodeConfig(file, {})).toThrow(
      new RegExp(`^${file.replaceAll("/", "\\/")} has \\d+ problems:\\n  - `),
    );
  });

  it("catches what the fields cannot say alone: this node missing from members, a duplicate, heartbeat not below election", () => {
    const problems = problemsOf(
      write("cross.yaml", {
        ...valid,
        nodeId: "n9",
        members: [valid.members[0], valid.members[0]],
        raft: { tickMs: 50, electionTicks: 5, heartbeatTicks: 5, snapshotEveryEntries: 100 },
      }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        "members: must include this node (n9)",
        "members: lists n1 twice",
        "raft.heartbeatTicks: must be below electionTicks",
      ]),
    );
    const ttl = problemsOf(
      write("ttl.yaml", { ...valid, auth: { tokenTtlMs: 7_200_000, tokenMaxTtlMs: 3_600_000 } }),
    );
    expect(ttl).toEqual(["auth.tokenTtlMs: must not be above tokenMaxTtlMs"]);
    // A read lease shorter than the heartbeat interval would never hold a read.
    const lease = problemsOf(
      write("lease.yaml", {
        ...valid,
        raft: { tickMs: 10, electionTicks: 3, heartbeatTicks: 2, leaseReads: true },
      }),
    );
    expect(lease).toEqual([
      "raft.leaseReads: the lease these ticks allow (16 ms) ends before the next heartbeat (20 ms): raise electionTicks or tickMs",
    ]);
    const drift = problemsOf(
      write("drift.yaml", { ...valid, raft: { leaseReads: true, leaseClockDrift: 0.6 } }),
    );
    expect(drift).toEqual([expect.stringMatching(/^raft\.leaseClockDrift: /)]);
    const leased = loadNodeConfig(
      write("leased.yaml", {
        ...valid,
        raft: { tickMs: 10, electionTicks: 3, heartbeatTicks: 1, leaseReads: true },
      }),
      {},
    );
    expect(leased.raft).toMatchObject({ leaseReads: true, leaseClockDrift: 0.1 });
  });

  it("says a field left out is missing, in YAML's words, and a wrong one what it got", () => {
    expect(problemsOf(write("sparse.yaml", { nodeId: "n1", dataDir: 5 }))).toEqual([
      "dataDir: Invalid input: expected string, received number",
      "listen: missing (a mapping is required)",
      "tls: missing (a mapping is required)",
      "members: missing (a list is required)",
    ]);
  });

  it("takes overrides from the environment, and names a file that is missing or not YAML", () => {
    const config = loadNodeConfig(write("env.yaml", valid), {
      STRONGROOM__listen__client: "0.0.0.0:9200",
      STRONGROOM__raft__tickMs: "25",
      STRONGROOM__region: "eu-west",
    });
    expect(config.listen.client).toBe("0.0.0.0:9200");
    expect(config.raft.tickMs).toBe(25);
    expect(config.region).toBe("eu-west");
    expect(problemsOf(join(root, "absent.yaml"))).toEqual(["cannot be read: no such file"]);
    expect(problemsOf(root)).toEqual(["cannot be read: it is a directory"]);
    expect(problemsOf(write("broken.yaml", "nodeId: [unclosed"))[0]).toMatch(/^is not valid YAML/);
  });
});
