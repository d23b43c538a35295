#!/usr/bin/env node
// gen.mjs writes proto/descriptor.json, the protos in protobufjs's JSON
// form, which the SDK loads at every start instead of parsing the .proto
// files (parsing, and the loader that does it, were a third of a plugin's
// start-up). Run it after changing a proto: npm run gen. The tests check
// the file is current.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

import protobuf from 'protobufjs';

export const protoFiles = ['verifier.proto', 'goplugin.proto', 'health.proto'];

/** descriptor returns the JSON the protos make, as written to descriptor.json. */
export function descriptor() {
  const dir = fileURLToPath(new URL('proto/', import.meta.url));
  const root = new protobuf.Root().loadSync(protoFiles.map((f) => dir + f), { keepCase: false });
  root.resolveAll();
  return `${JSON.stringify(root.toJSON(), null, 1)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  fs.writeFileSync(new URL('proto/descriptor.json', import.meta.url), descriptor());
}
