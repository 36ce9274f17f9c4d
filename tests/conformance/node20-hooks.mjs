// Module resolve hook for node20-shim.mjs: `fs` and `node:fs`, imported from
// anywhere but fs-with-glob.mjs itself, resolve to fs-with-glob.mjs.
const shim = new URL('./fs-with-glob.mjs', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if ((specifier === 'fs' || specifier === 'node:fs') && context.parentURL !== shim) {
    return { url: shim, shortCircuit: true };
  }
  return next(specifier, context);
}
