// Tokens no provider would issue, for Warden's refusal tests.
// Usage: node forge.mjs MODE CLAIMS-JSON [ARG]
//   none             alg "none", no signature
//   hs256 PEM-URL    HS256 with the provider's public key (fetched from its JWKS, as PEM) as the secret
//   stranger         RS256 with a key of our own under kid "stranger"
//   keyed DIR        ES256 with the key in DIR/key.json (made on first use; DIR/jwks.json holds its public half)
//   keyed-rs DIR     RS256 the same way, with DIR/rs-key.json and DIR/rs-jwks.json (kid "rs-key")
import * as jose from 'jose';
import * as fs from 'node:fs';

const [mode, claimsJson, arg] = process.argv.slice(2);
const claims = JSON.parse(claimsJson);
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
let token;
if (mode === 'none') {
  token = `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64(claims)}.`;
} else if (mode === 'hs256') {
  const jwks = await (await fetch(arg)).json();
  const key = await jose.importJWK(jwks.keys[0], 'RS256');
  const pem = await jose.exportSPKI(key);
  token = await new jose.SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: jwks.keys[0].kid }).sign(new TextEncoder().encode(pem));
} else if (mode === 'stranger') {
  const { privateKey } = await jose.generateKeyPair('RS256');
  token = await new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'stranger' }).sign(privateKey);
} else if (mode === 'keyed' || mode === 'keyed-rs') {
  const [alg, kid, prefix] = mode === 'keyed' ? ['ES256', 'file-key', ''] : ['RS256', 'rs-key', 'rs-'];
  const keyFile = `${arg}/${prefix}key.json`;
  if (!fs.existsSync(keyFile)) {
    const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
    fs.writeFileSync(keyFile, JSON.stringify(await jose.exportJWK(privateKey)));
    const pub = { ...(await jose.exportJWK(publicKey)), kid, alg, use: 'sig' };
    fs.writeFileSync(`${arg}/${prefix}jwks.json`, JSON.stringify({ keys: [pub] }));
  }
  const key = await jose.importJWK(JSON.parse(fs.readFileSync(keyFile, 'utf8')), alg);
  token = await new jose.SignJWT(claims).setProtectedHeader({ alg, kid }).sign(key);
} else {
  throw new Error(`unknown mode ${mode}`);
}
console.log(token);
