// pii-redact (JavaScript): masks e-mail addresses, phone numbers and payment
// card numbers (Luhn-checked) in what tools, resources and prompts return,
// and optionally in tool arguments. Built with componentize-js (build.mjs).

import { write as log } from 'warden:interceptor/log@0.3.0';
import { emit } from 'warden:interceptor/audit@0.3.0';

const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g;
// 13 to 19 digits, optionally grouped by spaces or dashes.
const CARD = /\b\d(?:[ -]?\d){12,18}\b/g;
// An optional +country code, then 8 to 15 digits with the usual separators.
const PHONE = /(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d(?:[ .-]?\d){7,14}\b/g;

let settings = {
  responses: ['tools/call', 'resources/read', 'prompts/get'],
  arguments: false,
  email: true,
  phone: true,
  card: true,
};

/** The Luhn checksum every payment card number passes. */
function luhn(digits) {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

function redactText(text, counts) {
  let out = text;
  if (settings.card) {
    out = out.replace(CARD, (match) => {
      const digits = match.replace(/[ -]/g, '');
      if (!luhn(digits)) return match;
      counts.card++;
      return '[CARD]';
    });
  }
  if (settings.email) {
    out = out.replace(EMAIL, () => {
      counts.email++;
      return '[EMAIL]';
    });
  }
  if (settings.phone) {
    out = out.replace(PHONE, (match, offset, whole) => {
      const digits = match.replace(/\D/g, '');
      // Part of a longer run of digit groups (e.g. a number that failed the card check): not a phone.
      const before = whole.slice(Math.max(0, offset - 2), offset);
      const after = whole.slice(offset + match.length, offset + match.length + 2);
      if (/\d[ .-]?$/.test(before) || /^[ .-]?\d/.test(after)) return match;
      if (digits.length < 8 || digits.length > 15) return match;
      counts.phone++;
      return '[PHONE]';
    });
  }
  return out;
}

/** Redacts every string inside `value`, in place where it can. */
function walk(value, counts) {
  if (typeof value === 'string') return redactText(value, counts);
  if (Array.isArray(value)) return value.map((v) => walk(v, counts));
  if (value && typeof value === 'object') {
    for (const key of Object.keys(value)) value[key] = walk(value[key], counts);
  }
  return value;
}

// Anything that could be masked: an @, or eight digits in a row with separators.
const CANDIDATE = /@|\d[\d ().+-]{6,}\d/;

function redact(ctx, message, field) {
  // Cheap test first: most messages carry nothing to mask.
  if (!CANDIDATE.test(message)) return { tag: 'forward' };
  let parsed;
  try {
    parsed = JSON.parse(message);
  } catch {
    return { tag: 'forward' };
  }
  const counts = { email: 0, phone: 0, card: 0 };
  const target = field(parsed);
  if (target === undefined) return { tag: 'forward' };
  const redacted = walk(target.holder[target.key], counts);
  const total = counts.email + counts.phone + counts.card;
  if (total === 0) return { tag: 'forward' };
  target.holder[target.key] = redacted;
  log('info', `masked ${total} item(s) in ${ctx.method}`);
  emit(JSON.stringify({ type: 'redaction', method: ctx.method, tool: ctx.tool ?? null, ...counts }));
  return { tag: 'modify', val: JSON.stringify(parsed) };
}

export function init(config) {
  const cfg = JSON.parse(config || '{}');
  for (const key of Object.keys(cfg)) {
    if (!(key in settings)) throw `unknown setting "${key}" (known: ${Object.keys(settings).join(', ')})`;
  }
  settings = { ...settings, ...cfg };
  return {
    // Tool arguments travel with `tools/call` requests, client to server; only with
    // `arguments = true`. The body is read (and rewritten), so `whole`.
    requests: {
      methods: settings.arguments ? ['tools/call'] : [],
      directions: { clientToServer: true, serverToClient: false },
      body: 'whole',
    },
    // What tools, resources and prompts return travels server to client; masked in
    // the message text, so `whole`.
    responses: {
      methods: settings.responses,
      directions: { clientToServer: false, serverToClient: true },
      body: 'whole',
    },
  };
}

export function onRequest(ctx, message) {
  return redact(ctx, message, (m) => (m.params && 'arguments' in m.params ? { holder: m.params, key: 'arguments' } : undefined));
}

export function onResponse(ctx, message) {
  return redact(ctx, message, (m) => ('result' in m ? { holder: m, key: 'result' } : undefined));
}
