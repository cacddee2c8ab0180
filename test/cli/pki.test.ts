// `strongroom pki`: the two CAs, a node certificate and a client certificate, checked with Node's
// own X.509 code: who signed them, the identities they name, key file modes; and what it refuses.

import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bundledCli } from "../server/process-cluster.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-pki-"));
let cli = "";
beforeAll(async () => {
  cli = await bundledCli();
}, 60_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

function strongroom(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), stdout, stderr }),
    );
  });
}

const certificate = (file: string) => new X509Certificate(readFileSync(join(root, file)));

it("makes two CAs, a node certificate and a client certificate that name their identities", async () => {
  expect((await strongroom(["pki", "ca", "--dir", root])).code).toBe(0);
  const node = await strongroom([
    "pki",
    "node",
    "n1",
    "--dir",
    root,
    "--host",
    "10.0.0.1",
    "--host",
    "node1.example",
  ]);
  expect(node).toMatchObject({ code: 0, stdout: `${join(root, "n1.pem")}\n${join(root, "n1-key.pem")}\n` });
  expect((await strongroom(["pki", "client", "alice", "--dir", root])).code).toBe(0);

  const clusterCa = certificate("cluster-ca.pem");
  const clientCa = certificate("client-ca.pem");
  expect(clusterCa.ca).toBe(true);
  const n1 = certificate("n1.pem");
  expect(n1.verify(clusterCa.publicKey)).toBe(true);
  expect(n1.verify(clientCa.publicKey)).toBe(false);
  expect(n1.subjectAltName).toContain("URI:strongroom://node/n1");
  expect(n1.subjectAltName).toContain("IP Address:10.0.0.1");
  expect(n1.subjectAltName).toContain("DNS:node1.example");
  const alice = certificate("alice.pem");
  expect(alice.verify(clientCa.publicKey)).toBe(true);
  expect(alice.subjectAltName).toBe("URI:strongroom://client/alice");
  for (const key of ["cluster-ca-key.pem", "client-ca-key.pem", "n1-key.pem", "alice-key.pem"])
    expect(statSync(join(root, key)).mode & 0o777, key).toBe(0o600);
});

it("refuses to overwrite CAs, a missing CA, a node without hosts, and a bad name (exit 2)", async () => {
  expect(await strongroom(["pki", "ca", "--dir", root])).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("already has CAs"),
  });
  const empty = join(root, "empty");
  expect(await strongroom(["pki", "client", "bob", "--dir", empty])).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("run strongroom pki ca first"),
  });
  expect((await strongroom(["pki", "node", "n2", "--dir", root])).code).toBe(2);
  expect(await strongroom(["pki", "client", "bad name", "--dir", root])).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("a client name is 1 to 63 letters"),
  });
  // A host that is neither an IP address nor a DNS name would go into the certificate as a name
  // no TLS client can match.
  expect(await strongroom(["pki", "node", "n3", "--dir", root, "--host", "node 3!"])).toMatchObject({
    code: 2,
    stderr:
      'strongroom: "node 3!" is not a DNS name (labels of letters, digits and inner hyphens, separated by dots)\n',
  });
  expect(existsSync(join(root, "n3.pem"))).toBe(false);
});
