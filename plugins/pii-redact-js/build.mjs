// Builds pii-redact.wasm: `node build.mjs [OUT]` (after `npm ci`).
// The WASI HTTP features are off, so the component imports no `wasi:http`.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const out = process.argv[2] ?? here('./pii-redact.wasm');
const { component } = await componentize({
  sourcePath: here('./pii-redact.js'),
  witPath: here('../../wit'),
  worldName: 'interceptor',
  disableFeatures: ['http', 'fetch-event', 'random', 'clocks', 'stdio'],
});
await writeFile(out, component);
console.error(`wrote ${out} (${component.length} bytes)`);
