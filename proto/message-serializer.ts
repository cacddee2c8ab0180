// How the generated gRPC definitions (proto/gen) serialize a message: `npm run proto` rewrites
// ts-proto's `Buffer.from(Type.encode(value).finish())` into `serializeMessage(Type, value)`
// (scripts/proto-serializers.mjs). ts-proto's form makes a new writer for every message, whose
// buffer starts at 128 bytes and is copied into one twice as large each time it fills (five times
// for a Raft append of eight 450 B entries, nine for eight of 4 KiB), then copies the bytes out
// twice (finish(), Buffer.from). Here one writer is kept between messages, so its buffer is already
// large enough, and the bytes finish() copies out are what is sent, without a second copy. 2-3x
// faster per message (a PutRequest of 256 B 3.9 against 1.9 µs; a Raft append of 8 entries 18.8
// against 5.5), 3-8% more writes of 4 KiB values on the cluster (docs/performance.md, sixty-fourth
// session).

import { BinaryWriter } from "@bufbuild/protobuf/wire";

/** What ts-proto generates for each message type. */
interface MessageEncoder<Message> {
  encode(message: Message, writer?: BinaryWriter): BinaryWriter;
}

/**
 * After a message this large, the writer is replaced: its buffer (up to twice the message) is not
 * held for the life of the process because of one large message (a snapshot chunk, a full batch of
 * forwarded requests). Below it are a Raft append of 64 entries of 4 KiB (256 KiB) and the
 * forwarded batches of 64 clients' writes: up to 2 MiB kept, little beside a node's 150-250 MiB.
 */
const keptWriterBytesMax = 1024 * 1024;

/** The writer every message is encoded into. Encoding is synchronous, so one per thread serves all. */
let writer = new BinaryWriter();

/** `message` serialized as `type`, in a Buffer of its own. */
export function serializeMessage<Message>(type: MessageEncoder<Message>, message: Message): Buffer {
  let bytes: Uint8Array;
  try {
    bytes = type.encode(message, writer).finish();
  } catch (error) {
    // A message that failed half-way (a field of the wrong type) left its first fields in the
    // writer, and the next message would follow them.
    writer = new BinaryWriter();
    throw error;
  }
  if (bytes.byteLength > keptWriterBytesMax) writer = new BinaryWriter();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
