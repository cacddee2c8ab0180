import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  type ForwardRequest,
  ForwardRequest as ForwardRequestType,
  MessageBatch,
  PeerService,
} from "../../proto/gen/strongroom/raft/v1/peer.gen.js";
import { PutRequest, SecretsService } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { serializeMessage } from "../../proto/message-serializer.js";

function appendBatch(entries: number, bytes: number): MessageBatch {
  return {
    messages: [
      {
        from: "n1",
        to: "n2",
        term: 7,
        body: {
          $case: "append",
          value: {
            prevIndex: 41,
            prevTerm: 7,
            entries: Array.from({ length: entries }, (_, i) => ({
              index: 42 + i,
              term: 7,
              type: 1,
              data: new Uint8Array(bytes).fill(i + 1),
            })),
            commit: 40,
            commitOnly: false,
          },
        },
      },
    ],
    features: 1,
    declinesLeadership: false,
  };
}

const put = (path: string, valueBytes: number): PutRequest => ({
  path,
  value: new Uint8Array(valueBytes).fill(9),
});

describe("serializeMessage", () => {
  it("gives the bytes ts-proto's own encoding gives, message after message, each in a buffer of its own", () => {
    // Large, then small, then large again: the kept writer must not leak one message into the next.
    const messages = [appendBatch(8, 4200), put("app/db", 256), appendBatch(1, 10), put("a", 0)];
    const serialized = messages.map((message) =>
      "messages" in message ? serializeMessage(MessageBatch, message) : serializeMessage(PutRequest, message),
    );
    const expected = messages.map((message) =>
      "messages" in message ? MessageBatch.encode(message).finish() : PutRequest.encode(message).finish(),
    );
    for (const [i, bytes] of serialized.entries()) {
      expect(Buffer.isBuffer(bytes)).toBe(true);
      expect(bytes.equals(expected[i] as Uint8Array)).toBe(true);
    }
    // Each result owns its bytes (checked above after all four were made), in a buffer of its own.
    expect(new Set(serialized.map((bytes) => bytes.buffer)).size).toBe(serialized.length);
  });

  it("after a message that fails half-way, the next one carries none of its fields", () => {
    const broken: ForwardRequest = {
      method: "/strongroom.v1.Secrets/Put",
      request: new Uint8Array(300).fill(5),
      clientIdentity: "app-1",
      // uint64 is refused a fraction, after the fields above are written.
      deadlineMs: 1.5,
      clientToken: "",
      tokenUseSpent: false,
    };
    expect(() => serializeMessage(ForwardRequestType, broken)).toThrow(/1\.5/);
    const next = serializeMessage(PutRequest, put("app/next", 16));
    expect(next.equals(PutRequest.encode(put("app/next", 16)).finish())).toBe(true);
    expect(PutRequest.decode(next).path).toBe("app/next");
  });

  it("serializes a message larger than the writer keeps, and the ones after it", () => {
    const large = put("app/large", 1536 * 1024);
    const bytes = serializeMessage(PutRequest, large);
    expect(bytes.equals(PutRequest.encode(large).finish())).toBe(true);
    const small = serializeMessage(PutRequest, put("app/small", 3));
    expect(small.equals(PutRequest.encode(put("app/small", 3)).finish())).toBe(true);
  });

  it("is what the generated gRPC definitions serialize with, both ways", () => {
    const request = put("app/through-definition", 100);
    const wire = SecretsService.put.requestSerialize(request);
    expect(wire.equals(PutRequest.encode(request).finish())).toBe(true);
    const decoded = SecretsService.put.requestDeserialize(wire);
    expect([decoded.path, Buffer.from(decoded.value).equals(request.value)]).toEqual([request.path, true]);
    const batch = appendBatch(3, 50);
    const batchWire = PeerService.stream.requestSerialize(batch);
    expect(batchWire.equals(MessageBatch.encode(batch).finish())).toBe(true);
  });

  it("every generated definition was rewritten (npm run proto runs scripts/proto-serializers.mjs)", () => {
    const generated = join(import.meta.dirname, "..", "..", "proto", "gen");
    const files = readdirSync(generated, { recursive: true, encoding: "utf8" }).filter((file) =>
      file.endsWith(".gen.ts"),
    );
    let serializers = 0;
    for (const file of files) {
      const source = readFileSync(join(generated, file), "utf8");
      expect(source, file).not.toMatch(/Buffer\.from\(\w+\.encode\(value\)\.finish\(\)\)/);
      serializers +=
        source.match(/Serialize: \(value: \w+\): Buffer => serializeMessage\(\w+, value\)/g)?.length ?? 0;
    }
    expect(serializers).toBeGreaterThan(100);
  });
});
