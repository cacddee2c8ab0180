// The SDK and the members' channels to each other resolve a node's host name and ask DNS nothing
// else. gRPC's default is to also look
// up a TXT record for a service config: a DNS answer would then choose how a secret store's client
// balances and retries, and where no server answers such queries (a closed network, Docker's DNS
// without an upstream) the lookup stays pending for about 20 s, which kept every CLI command's
// process alive that long after its work was done (seen in deploy/compose). A DNS server of the
// test's own, on loopback, records every question and answers each "no such name".

import { createSocket, type Socket } from "node:dgram";
import dns from "node:dns";
import { Client, credentials } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createClient } from "../../client/index.js";
import { defaultPeerTransportLimits, peerClientChannelOptions } from "../../server/peer/peer-transport.js";
import { TestPki } from "../server/pki-fixture.js";
import { closedPort } from "./stand-in-node.js";

const pki = new TestPki("dns-questions");
const questions: string[] = [];
let server: Socket;
let serversBefore: string[] = [];

/** The question of a DNS query as "name TYPE" (TYPE as a number but for A, AAAA and TXT). */
function question(query: Buffer): { text: string; end: number } {
  const labels: string[] = [];
  let at = 12;
  while (query[at] !== 0 && at < query.length) {
    const length = query[at] ?? 0;
    labels.push(query.subarray(at + 1, at + 1 + length).toString("ascii"));
    at += 1 + length;
  }
  const type = query.readUInt16BE(at + 1);
  const names: Record<number, string> = { 1: "A", 28: "AAAA", 16: "TXT" };
  return { text: `${labels.join(".")} ${names[type] ?? type}`, end: at + 5 };
}

beforeAll(async () => {
  server = createSocket("udp4");
  server.on("message", (query, from) => {
    const { text, end } = question(query);
    questions.push(text);
    // The query's id and question back, as an answer (QR), recursion available, NXDOMAIN.
    const answer = Buffer.from(query.subarray(0, end));
    answer.writeUInt16BE(0x8183 | (query.readUInt16BE(2) & 0x0100), 2);
    answer.writeUInt16BE(1, 4);
    answer.fill(0, 6, 12);
    server.send(answer, from.port, from.address);
  });
  await new Promise<void>((resolve) => server.bind(0, "127.0.0.1", resolve));
  serversBefore = dns.getServers();
  dns.setServers([`127.0.0.1:${server.address().port}`]);
});

afterAll(() => {
  dns.setServers(serversBefore);
  server.close();
  pki.cleanup();
});

it("asks DNS for no service config when it connects to a node by host name", async () => {
  // The server in use answers, and records what it is asked.
  await expect(dns.promises.resolveTxt("_grpc_config.control.test")).rejects.toMatchObject({
    code: "ENOTFOUND",
  });
  expect(questions).toEqual(["_grpc_config.control.test TXT"]);
  questions.length = 0;

  const files = pki.client("caller");
  const client = createClient({
    endpoints: [`localhost:${await closedPort()}`],
    tls: { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile },
  });
  try {
    // Nothing listens there: the call fails, after the channel resolved the name (from /etc/hosts).
    const failure = await client.secrets.get({ path: "app/db" }, { deadlineMs: 500 }).catch((e) => e);
    expect(failure).toBeInstanceOf(Error);
    expect(questions.filter((asked) => asked.endsWith(" TXT"))).toEqual([]);
  } finally {
    client.close();
  }
});

it("a member's channel to a peer asks DNS for no service config either", async () => {
  questions.length = 0;
  const client = new Client(
    `localhost:${await closedPort()}`,
    credentials.createInsecure(),
    peerClientChannelOptions(defaultPeerTransportLimits),
  );
  try {
    // Connecting resolves the name; nothing listens, so it fails at its deadline.
    const failure = await new Promise((resolve) => client.waitForReady(Date.now() + 300, resolve));
    expect(failure).toBeInstanceOf(Error);
    expect(questions.filter((asked) => asked.endsWith(" TXT"))).toEqual([]);
  } finally {
    client.close();
  }
});
