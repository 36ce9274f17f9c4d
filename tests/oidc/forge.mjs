// Tokens no provider would issue, for Warden's refusal tests.
// Usage: node forge.mjs MODE CLAIMS-JSON [ARG]
//   none             alg "none", no signature
//   hs256 PEM-URL    HS256 with the provider's public key (fetched from its JWKS, as PEM) as the secret
//   stranger         RS256 with a key of our own under kid "stranger"
//   keyed DIR        ES256 with the key in DIR/key.json (made on first use; DIR/jwks.json holds its public half)
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
} else if (mode === 'keyed') {
  const keyFile = `${arg}/key.json`;
  if (!fs.existsSync(keyFile)) {
    const { privateKey, publicKey } = await jose.generateKeyPair('ES256', { extractable: true });
    fs.writeFileSync(keyFile, JSON.stringify(await jose.exportJWK(privateKey)));
    const pub = { ...(await jose.exportJWK(publicKey)), kid: 'file-key', alg: 'ES256', use: 'sig' };
    fs.writeFileSync(`${arg}/jwks.json`, JSON.stringify({ keys: [pub] }));
  }
  const key = await jose.importJWK(JSON.parse(fs.readFileSync(keyFile, 'utf8')), 'ES256');
  token = await new jose.SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'file-key' }).sign(key);
} else {
  throw new Error(`unknown mode ${mode}`);
}
console.log(token);
