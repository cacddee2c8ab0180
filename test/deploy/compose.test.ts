// deploy/compose: each node's config (node.yaml plus its service's environment) passes the node's
// own validation and names itself; make-pki.sh (run here as the `pki` service runs it) makes every
// file the nodes and the CLI mount, with certificates that name each member's address, CA keys
// kept from the node user; the services run unprivileged on a read-only filesystem.

import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { loadNodeConfig } from "../../server/config.js";
import { bundledCli } from "../server/process-cluster.js";

const run = promisify(execFile);
const composeDir = new URL("../../deploy/compose/", import.meta.url).pathname;
// biome-ignore lint/suspicious/noExplicitAny: the compose file is checked field by field below.
const compose: any = parseYaml(readFileSync(join(composeDir, "compose.yaml"), "utf8"), { merge: true });
const nodeNames = ["strongroom-1", "strongroom-2", "strongroom-3"];
const root = mkdtempSync(join(tmpdir(), "strongroom-compose-"));
const pki = join(root, "pki");
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  await run("sh", [join(composeDir, "make-pki.sh")], {
    env: { ...process.env, PKI_DIR: pki, STRONGROOM: `${process.execPath} ${await bundledCli()}` },
  });
}, 120_000);

/** Where a service mounts a volume or file, as [source, target]. */
function mounts(service: { volumes: string[] }): Map<string, string> {
  return new Map(service.volumes.map((volume) => volume.split(":").slice(0, 2) as [string, string]));
}

it("gives each node a valid config naming itself, its files in the pki volume", () => {
  const configFile = join(root, "node.yaml");
  writeFileSync(configFile, readFileSync(join(composeDir, "node.yaml")));
  for (const name of nodeNames) {
    const service = compose.services[name];
    expect(service.hostname).toBe(name);
    const config = loadNodeConfig(configFile, service.environment);
    expect(config.nodeId).toBe(name);
    expect(config.members.map((member) => member.id)).toEqual(nodeNames);
    const tlsMount = [...mounts(service)].find(([source]) => source === "pki")?.[1];
    expect(tlsMount).toBe("/etc/strongroom/tls");
    for (const files of [config.tls.peer, config.tls.client]) {
      for (const path of [files.caFile, files.certificateFile, files.privateKeyFile]) {
        expect(path.startsWith(`${tlsMount}/`), path).toBe(true);
        const local = join(pki, path.slice(`${tlsMount}/`.length));
        expect(readFileSync(local, "utf8")).toMatch(/^-----BEGIN/);
        // Readable by the node's user (uid 10001), which is not root.
        expect(statSync(local).uid, local).toBe(10001);
      }
    }
    const certificate = new X509Certificate(readFileSync(join(pki, `${name}.pem`)));
    expect(certificate.subjectAltName).toContain(`URI:strongroom://node/${name}`);
    for (const member of config.members.filter((entry) => entry.id === name)) {
      for (const address of [member.peerAddress, member.clientAddress]) {
        const host = address.slice(0, address.lastIndexOf(":"));
        expect(certificate.checkHost(host), host).toBe(host);
      }
    }
    // Node 1 is published on localhost: its certificate names localhost too.
    expect(certificate.checkHost("localhost")).toBe("localhost");
  }
});

it("keeps the CA keys from the node user, and gives the CLI the operator's certificate", () => {
  for (const key of ["cluster-ca-key.pem", "client-ca-key.pem"]) {
    const stat = statSync(join(pki, key));
    expect(stat.uid, key).toBe(0);
    expect(stat.mode & 0o077, key).toBe(0);
  }
  const cli = compose.services.cli;
  const tlsMount = mounts(cli).get("pki");
  for (const variable of ["STRONGROOM_CACERT", "STRONGROOM_CLIENT_CERT", "STRONGROOM_CLIENT_KEY"]) {
    const path: string = cli.environment[variable];
    expect(path.startsWith(`${tlsMount}/`), variable).toBe(true);
    expect(readFileSync(join(pki, path.slice(`${tlsMount}/`.length)), "utf8")).toMatch(/^-----BEGIN/);
  }
  const admin = new X509Certificate(readFileSync(join(pki, "admin.pem")));
  expect(admin.subjectAltName).toContain("URI:strongroom://client/admin");
  expect(cli.environment.STRONGROOM_ADDR).toBe(nodeNames.map((name) => `${name}:8200`).join(","));
});

it("runs every node unprivileged on a read-only filesystem, after the pki service", () => {
  for (const name of nodeNames) {
    const service = compose.services[name];
    expect(service).toMatchObject({
      user: "10001:10001",
      read_only: true,
      cap_drop: ["ALL"],
      security_opt: ["no-new-privileges:true"],
      depends_on: { pki: { condition: "service_completed_successfully" } },
    });
    // Its data on its own volume, where the image's data directory is.
    expect(mounts(service).get(`data-${name.slice(-1)}`)).toBe("/var/lib/strongroom");
  }
});

it("makes the pki once: a second run keeps the same CA", async () => {
  const before = readFileSync(join(pki, "cluster-ca.pem"), "utf8");
  await run("sh", [join(composeDir, "make-pki.sh")], {
    env: { ...process.env, PKI_DIR: pki, STRONGROOM: `${process.execPath} ${await bundledCli()}` },
  });
  expect(readFileSync(join(pki, "cluster-ca.pem"), "utf8")).toBe(before);
}, 60_000);

it("names its project in .env, not with a top-level name that docker-compose 1.x refuses", () => {
  expect(Object.keys(compose)).not.toContain("name");
  expect(readFileSync(join(composeDir, ".env"), "utf8")).toMatch(/^COMPOSE_PROJECT_NAME=strongroom$/m);
  // Every service runs one image, which STRONGROOM_IMAGE can replace.
  const images = new Set(
    Object.values(compose.services).map((service) => (service as { image: string }).image),
  );
  // biome-ignore lint/suspicious/noTemplateCurlyInString: compose's variable with a default.
  expect([...images]).toEqual(["${STRONGROOM_IMAGE:-strongroom:0.1.0}"]);
});
