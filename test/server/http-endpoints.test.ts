// The plaintext health port as a load balancer or probe uses it: real HTTP on loopback, the node's
// state given as the view it reads. The status codes by state, Vault's query parameters that change
// them (a bad one is a 400 naming it), a query on any route, HEAD, and other methods refused.

import { request } from "node:http";
import { Registry } from "prom-client";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type HealthView, type HttpEndpoints, startHttpEndpoints } from "../../server/http-endpoints.js";

const follower: HealthView = {
  initialized: true,
  sealed: false,
  leader: false,
  nodeId: "n2",
  term: 3,
  leaderKnown: true,
  removed: false,
  auditSinksFailing: 0,
  auditSinksStalled: 0,
};
let view: HealthView = follower;
let endpoints: HttpEndpoints;
let base = "";

beforeAll(async () => {
  endpoints = await startHttpEndpoints("127.0.0.1:0", () => view, new Registry());
  base = `http://127.0.0.1:${endpoints.port}`;
});

afterAll(() => endpoints.close());

async function statusOf(path: string, method = "GET"): Promise<number> {
  return (await fetch(`${base}${path}`, { method })).status;
}

it("answers health by state, and Vault's query parameters change the codes", async () => {
  const states: [HealthView, number][] = [
    [{ ...follower, leader: true }, 200],
    [follower, 429],
    [{ ...follower, sealed: true }, 503],
    [{ ...follower, initialized: false, sealed: true }, 501],
  ];
  for (const [state, code] of states) {
    view = state;
    expect(await statusOf("/v1/sys/health")).toBe(code);
  }
  view = follower;
  expect(await statusOf("/v1/sys/health?standbyok=true")).toBe(200);
  expect(await statusOf("/v1/sys/health?standbyok=true&activecode=204")).toBe(204);
  expect(await statusOf("/v1/sys/health?standbyok=false")).toBe(429);
  expect(await statusOf("/v1/sys/health?standbycode=200")).toBe(200);
  view = { ...follower, sealed: true };
  expect(await statusOf("/v1/sys/health?standbyok=true")).toBe(503);
  expect(await statusOf("/v1/sys/health?sealedcode=299")).toBe(299);
  view = { ...follower, initialized: false, sealed: true };
  expect(await statusOf("/v1/sys/health?uninitcode=200")).toBe(200);
  // A parameter it does not know (a cache buster) changes nothing.
  view = { ...follower, leader: true };
  expect(await statusOf("/v1/sys/health?t=12345")).toBe(200);
});

it("refuses a bad health parameter with 400 naming it", async () => {
  view = follower;
  const bad = await fetch(`${base}/v1/sys/health?standbyok=yes&sealedcode=42`);
  expect(bad.status).toBe(400);
  expect(await bad.json()).toEqual({
    error:
      'standbyok must be true or false, not "yes"; sealedcode must be an HTTP status code from 200 to 599, not "42"',
  });
  expect(await statusOf("/v1/sys/health?activecode=2000")).toBe(400);
  expect(await statusOf("/v1/sys/health?activecode=600")).toBe(400);
});

it("routes by path whatever the query, answers HEAD without a body, and refuses other methods", async () => {
  view = follower;
  expect(await statusOf("/v1/sys/ready?probe=1")).toBe(200);
  expect(await statusOf("/v1/sys/live?probe=1")).toBe(200);
  expect(await statusOf("/metrics?name[]=x")).toBe(200);
  expect(await statusOf("/v1/sys/nothing")).toBe(404);
  const head = await fetch(`${base}/v1/sys/health`, { method: "HEAD" });
  expect(head.status).toBe(429);
  expect(await head.text()).toBe("");
  expect(await statusOf("/v1/sys/ready", "HEAD")).toBe(200);
  // Request targets a URL parser refuses ("//") are a 404, not a thrown error in the node.
  for (const target of ["//", "http://a:b@", "/v1/sys/health?%zz"]) {
    const code = await new Promise<number | undefined>((resolve, reject) =>
      request({ host: "127.0.0.1", port: endpoints.port, path: target }, (response) => {
        response.resume();
        resolve(response.statusCode);
      })
        .on("error", reject)
        .end(),
    );
    expect(code, target).toBe(target.startsWith("/v1/sys/health") ? 429 : 404);
  }
  const post = await fetch(`${base}/v1/sys/health`, { method: "POST" });
  expect(post.status).toBe(405);
  expect(post.headers.get("allow")).toBe("GET, HEAD");
});
