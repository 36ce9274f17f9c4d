// {{name}}: a Warden plugin in JavaScript. It denies the tools named in its
// config and forwards everything else. Build: ./build.sh
import { write as log } from 'warden:interceptor/log@0.2.0';

let deny = [];

export function init(config) {
  deny = JSON.parse(config || '{}').deny ?? [];
  return { requests: ['tools/call'], responses: [] };
}

export function onRequest(ctx, message) {
  if (ctx.tool && deny.includes(ctx.tool)) {
    log('info', `denied ${ctx.tool}`);
    return { tag: 'reject', val: { code: -32001, message: `${ctx.tool} is denied by {{name}}`, data: undefined } };
  }
  return { tag: 'forward' };
}

export function onResponse(ctx, message) {
  return { tag: 'forward' };
}
