// deploy/kubernetes: what the manifests promise an operator, checked without a cluster. Every file
// the kustomization lists parses and is listed; the StatefulSet's probes, ports, security settings
// and volumes agree with the node's config; each pod's config (the ConfigMap plus its environment)
// passes the node's own config validation; the TLS Secret script makes the very files the pods
// mount, with certificates that name every address in the members list; the disruption budget
// keeps a quorum; every metric an alert uses is one the nodes export.

import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { loadNodeConfig } from "../../server/config.js";
import { bundledCli } from "../server/process-cluster.js";

const run = promisify(execFile);
const deployDir = new URL("../../deploy/kubernetes/", import.meta.url).pathname;
const root = mkdtempSync(join(tmpdir(), "strongroom-kubernetes-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are checked field by field below.
type Resource = any;

function load(directory: string): { listed: string[]; resources: Resource[] } {
  const kustomization = parseYaml(readFileSync(join(directory, "kustomization.yaml"), "utf8"));
  const listed: string[] = kustomization.resources;
  const resources = listed.flatMap((file) =>
    parseAllDocuments(readFileSync(join(directory, file), "utf8")).map((document) => {
      expect(document.errors, file).toEqual([]);
      return document.toJS();
    }),
  );
  return { listed, resources };
}

const base = load(deployDir);
const monitoring = load(join(deployDir, "monitoring"));
const find = (kind: string, name?: string): Resource => {
  const found = base.resources.find(
    (resource) => resource.kind === kind && (name === undefined || resource.metadata.name === name),
  );
  if (found === undefined) throw new Error(`no ${kind} ${name ?? ""} in deploy/kubernetes`);
  return found;
};
const statefulSet = find("StatefulSet");
const pod = statefulSet.spec.template.spec;
const container = pod.containers[0];
const configText: string = find("ConfigMap", "strongroom-config").data["config.yaml"];
const config = parseYaml(configText);

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}

/** The pod's environment as Kubernetes gives it: fieldRefs filled in, $(VAR) expanded. */
function podEnvironment(podName: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of container.env) {
    if (variable.valueFrom?.fieldRef?.fieldPath === "metadata.name") env[variable.name] = podName;
    else
      env[variable.name] = String(variable.value).replace(/\$\(([A-Z_]+)\)/g, (_, name) => env[name] ?? "");
  }
  return env;
}

describe("deploy/kubernetes", () => {
  it("lists every manifest in its kustomizations, and each parses", () => {
    const files = (directory: string) =>
      readdirSync(directory).filter((file) => file.endsWith(".yaml") && file !== "kustomization.yaml");
    expect(base.listed.sort()).toEqual(files(deployDir).sort());
    expect(monitoring.listed.sort()).toEqual(files(join(deployDir, "monitoring")).sort());
    expect(base.resources.map((resource) => resource.kind).sort()).toEqual([
      "ConfigMap",
      "NetworkPolicy",
      "PodDisruptionBudget",
      "Service",
      "Service",
      "ServiceAccount",
      "StatefulSet",
    ]);
  });

  it("starts pods in parallel behind a headless Service that publishes not-ready pods", () => {
    expect(statefulSet.spec.podManagementPolicy).toBe("Parallel");
    const headless = find("Service", statefulSet.spec.serviceName);
    expect(headless.spec.clusterIP).toBe("None");
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    // Every selector picks the StatefulSet's pods.
    const labels = statefulSet.spec.template.metadata.labels;
    expect(matches(statefulSet.spec.selector.matchLabels, labels)).toBe(true);
    for (const service of base.resources.filter((resource) => resource.kind === "Service"))
      expect(matches(service.spec.selector, labels), service.metadata.name).toBe(true);
    expect(matches(find("PodDisruptionBudget").spec.selector.matchLabels, labels)).toBe(true);
    expect(matches(find("NetworkPolicy").spec.podSelector.matchLabels, labels)).toBe(true);
  });

  it("probes readiness (unsealed and serving) and liveness (not quorum) on the plaintext port", () => {
    const ports = Object.fromEntries(
      container.ports.map((port: { name: string; containerPort: number }) => [port.name, port.containerPort]),
    );
    expect(container.readinessProbe.httpGet).toEqual({ path: "/v1/sys/ready", port: "http" });
    expect(container.livenessProbe.httpGet).toEqual({ path: "/v1/sys/live", port: "http" });
    expect(container.startupProbe.httpGet).toEqual({ path: "/v1/sys/live", port: "http" });
    // The ports the node listens on are the ports the pod declares.
    expect(config.listen).toEqual({
      client: `0.0.0.0:${ports.client}`,
      peer: `0.0.0.0:${ports.peer}`,
      http: `0.0.0.0:${ports.http}`,
    });
    // The liveness probe gives a node more than its graceful stop before it is restarted.
    const probe = container.livenessProbe;
    expect(probe.periodSeconds * probe.failureThreshold).toBeGreaterThan(pod.terminationGracePeriodSeconds);
  });

  it("runs as a non-root user with a read-only root filesystem and no privileges", () => {
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(container.securityContext).toEqual({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
    // The only writable mounts: the data volume and a small /tmp.
    const volumes = new Map(pod.volumes.map((volume: { name: string }) => [volume.name, volume]));
    const writable = container.volumeMounts
      .filter((mount: { readOnly?: boolean }) => mount.readOnly !== true)
      .map((mount: { mountPath: string }) => mount.mountPath);
    expect(writable.sort()).toEqual(["/tmp", "/var/lib/strongroom"]);
    expect(config.dataDir.startsWith("/var/lib/strongroom/")).toBe(true);
    expect(volumes.get("tls")).toMatchObject({ secret: { secretName: "strongroom-tls" } });
  });

  it("keeps a quorum through voluntary disruptions", () => {
    const voters = config.members.length;
    expect(statefulSet.spec.replicas).toBe(voters);
    const budget = find("PodDisruptionBudget").spec;
    expect(budget.maxUnavailable).toBeLessThanOrEqual(Math.floor((voters - 1) / 2));
    expect(budget.maxUnavailable).toBeGreaterThanOrEqual(1);
  });

  describe("each pod's config and certificates", () => {
    let tlsDir = "";
    let secret: Resource;

    beforeAll(async () => {
      const pki = join(root, "pki");
      const { stdout } = await run(join(deployDir, "make-tls-secret.sh"), ["vault-ns", "3", pki], {
        env: { ...process.env, STRONGROOM: `${process.execPath} ${await bundledCli()}` },
      });
      secret = parseYaml(stdout);
      // The Secret as the pod sees it: one file per key, where the StatefulSet mounts it.
      tlsDir = join(root, "etc-strongroom-tls");
      rmSync(tlsDir, { recursive: true, force: true });
      const { mkdirSync } = await import("node:fs");
      mkdirSync(tlsDir);
      for (const [name, value] of Object.entries(secret.data as Record<string, string>))
        writeFileSync(join(tlsDir, name), Buffer.from(value, "base64"));
    }, 120_000);

    it("the Secret holds the CA certificates and each node's pair, never a CA key", () => {
      expect(secret).toMatchObject({
        kind: "Secret",
        metadata: { name: "strongroom-tls", namespace: "vault-ns" },
      });
      expect(Object.keys(secret.data).sort()).toEqual([
        "client-ca.pem",
        "cluster-ca.pem",
        "strongroom-0-key.pem",
        "strongroom-0.pem",
        "strongroom-1-key.pem",
        "strongroom-1.pem",
        "strongroom-2-key.pem",
        "strongroom-2.pem",
      ]);
    });

    it("passes the node's config validation, names itself, and finds its files", () => {
      const tlsMount = container.volumeMounts.find(
        (mount: { name: string }) => mount.name === "tls",
      ).mountPath;
      const configMount = container.volumeMounts.find(
        (mount: { name: string }) => mount.name === "config",
      ).mountPath;
      expect(container.args).toEqual(["server", "--config", `${configMount}/config.yaml`]);
      const configFile = join(root, "config.yaml");
      writeFileSync(configFile, configText);
      for (let ordinal = 0; ordinal < statefulSet.spec.replicas; ordinal++) {
        const podName = `${statefulSet.metadata.name}-${ordinal}`;
        const loaded = loadNodeConfig(configFile, podEnvironment(podName));
        expect(loaded.nodeId).toBe(podName);
        const self = loaded.members.find((member) => member.id === podName);
        expect(self?.peerAddress).toBe(`${podName}.${statefulSet.spec.serviceName}:8201`);
        for (const files of [loaded.tls.peer, loaded.tls.client]) {
          for (const path of [files.caFile, files.certificateFile, files.privateKeyFile]) {
            expect(path.startsWith(`${tlsMount}/`), path).toBe(true);
            // The file the config names is one the Secret provides.
            expect(readFileSync(join(tlsDir, path.slice(tlsMount.length + 1)), "utf8")).toMatch(
              /^-----BEGIN/,
            );
          }
        }
        // The certificate names the node and every name it is reached at.
        const certificate = new X509Certificate(
          readFileSync(join(tlsDir, loaded.tls.peer.certificateFile.slice(tlsMount.length + 1))),
        );
        expect(certificate.subjectAltName).toContain(`URI:strongroom://node/${podName}`);
        for (const address of [self?.peerAddress, self?.clientAddress]) {
          const host = String(address).slice(0, String(address).lastIndexOf(":"));
          expect(certificate.checkHost(host), host).toBe(host);
        }
        expect(certificate.checkHost(`${podName}.strongroom-peer.vault-ns.svc.cluster.local`)).toBeDefined();
        const ca = new X509Certificate(readFileSync(join(tlsDir, "cluster-ca.pem")));
        expect(certificate.verify(ca.publicKey)).toBe(true);
      }
    });

    it("refuses a bad replica count or namespace with exit code 2", async () => {
      for (const args of [
        ["vault-ns", "9", join(root, "other")],
        ["Not_A_Namespace", "3", join(root, "other")],
      ]) {
        const failure = await run(join(deployDir, "make-tls-secret.sh"), args).catch(
          (error: { code: number; stderr: string }) => error,
        );
        expect(failure).toMatchObject({ code: 2 });
        expect((failure as { stderr: string }).stderr).toMatch(
          /REPLICAS must be 1 to 7|not a Kubernetes namespace/,
        );
      }
    });
  });

  it("alerts only on metrics the nodes export, and scrapes the port that serves them", () => {
    const rules = monitoring.resources.find((resource) => resource.kind === "PrometheusRule");
    const used = new Set<string>();
    for (const group of rules.spec.groups) {
      for (const rule of group.rules) {
        expect(rule.alert).toMatch(/^Strongroom[A-Za-z]+$/);
        expect(["page", "ticket"]).toContain(rule.labels.severity);
        for (const [name] of String(rule.expr).matchAll(/strongroom_[a-z_]+/g))
          used.add(name.replace(/_(bucket|count|sum)$/, ""));
      }
    }
    const exported = exportedMetricNames();
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
    expect(used.size).toBeGreaterThan(8);
    const monitor = monitoring.resources.find((resource) => resource.kind === "ServiceMonitor");
    const metricsService = monitoring.resources.find((resource) => resource.kind === "Service");
    expect(
      matches(monitor.spec.selector.matchLabels, {
        ...metricsService.metadata.labels,
        "app.kubernetes.io/name": "strongroom",
      }),
    ).toBe(true);
    expect(monitor.spec.endpoints[0]).toMatchObject({ port: "http", path: "/metrics" });
    expect(metricsService.spec.publishNotReadyAddresses).toBe(true);
  });
});

/** The names the nodes register with prom-client: the "strongroom_..." string literals of the sources. */
function exportedMetricNames(): Set<string> {
  const names = new Set<string>();
  const walk = (directory: string) => {
    for (const entry of readdirSync(directory, { withFileTypes: true })) {
      const path = join(directory, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ts"))
        for (const [, name] of readFileSync(path, "utf8").matchAll(/"(strongroom_[a-z_]+)"/g))
          names.add(name as string);
    }
  };
  for (const folder of ["server", "storage", "raft", "hsm"])
    walk(new URL(`../../${folder}`, import.meta.url).pathname);
  return names;
}
