// Lets @modelcontextprotocol/conformance (which imports `globSync` from `fs`,
// new in Node 22) run on Node 20: `node --import ./node20-shim.mjs ...`.
// Registers a resolve hook that hands the package a `fs` with `globSync` added.
import { register } from 'node:module';

register('./node20-hooks.mjs', import.meta.url);
