// {{name}}: a Warden plugin in JavaScript. It denies the tools named in its
// config and forwards everything else. Build: ./build.sh
import { write as log } from 'warden:interceptor/log@0.3.0';

let deny = [];

export function init(config) {
  deny = JSON.parse(config || '{}').deny ?? [];
  return {
    // What reaches onRequest.
    requests: {
      // Exact method names, `prefix*`, or `*`; [] for none.
      methods: ['tools/call'],
      // Which ways: client to server, server to client, or both.
      directions: { clientToServer: true, serverToClient: true },
      // 'context-only': `message` is empty (this plugin reads only ctx.tool);
      // 'whole' if onRequest reads or rewrites the message text.
      body: 'context-only',
    },
    // What reaches onResponse: nothing (no methods, no directions).
    responses: {
      methods: [],
      directions: { clientToServer: false, serverToClient: false },
      body: 'context-only',
    },
  };
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
