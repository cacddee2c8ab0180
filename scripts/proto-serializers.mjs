// `node scripts/proto-serializers.mjs [DIR]`, run after `buf generate` (npm run proto): has the
// generated gRPC definitions in DIR (proto/gen) serialize messages with proto/message-serializer.ts
// (one writer kept between messages) instead of ts-proto's new writer per message. Stops and
// writes nothing if a file's serializers are not all in the one form it rewrites (a ts-proto that
// generates them otherwise needs this script looked at again).

import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const protoDirectory = join(dirname(fileURLToPath(import.meta.url)), "..", "proto");
const generatedDirectory = process.argv[2] ?? join(protoDirectory, "gen");
const serializerModule = join(protoDirectory, "message-serializer.js");

/** ts-proto's serializer body: `Buffer.from(PutRequest.encode(value).finish())`. */
const generatedForm = /Buffer\.from\(([A-Za-z_$][\w$.]*)\.encode\(value\)\.finish\(\)\)/g;
/** Every serializer ts-proto writes, in whatever form. */
const serializerStart = /Serialize: \(value: [^)]*\): Buffer =>/g;
/** A serializer this script rewrote already (the script ran twice after one `buf generate`). */
const rewrittenForm = /serializeMessage\([A-Za-z_$][\w$.]*, value\)/g;
/** The import every generated file with messages has; ours goes after it. */
const wireImport = 'import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";\n';

// Every file is checked before any is written: a refusal leaves them all as generated.
const rewrites = [];
for (const file of generatedFiles(generatedDirectory)) {
  const source = readFileSync(file, "utf8");
  const serializers = source.match(serializerStart)?.length ?? 0;
  if (serializers === 0) continue;
  const inForm = source.match(generatedForm)?.length ?? 0;
  if (inForm === 0 && source.match(rewrittenForm)?.length === serializers) continue;
  if (inForm !== serializers || !source.includes(wireImport)) {
    throw new Error(
      `${relative(generatedDirectory, file)}: ${serializers} serializers, ${inForm} in the form this script rewrites`,
    );
  }
  let specifier = relative(dirname(file), serializerModule);
  if (!specifier.startsWith(".")) specifier = `./${specifier}`;
  const result = source
    .replace(generatedForm, "serializeMessage($1, value)")
    .replace(wireImport, `${wireImport}import { serializeMessage } from "${specifier}";\n`);
  rewrites.push({ file, result, serializers });
}
let rewritten = 0;
for (const { file, result, serializers } of rewrites) {
  writeFileSync(file, result);
  rewritten += serializers;
}
process.stdout.write(`proto-serializers: ${rewritten} serializers rewritten to use serializeMessage\n`);

function generatedFiles(directory) {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return generatedFiles(path);
    return entry.name.endsWith(".gen.ts") ? [path] : [];
  });
}
